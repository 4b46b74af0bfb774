"""The ledger's event log: what it records at each step of a write, and how it reads back."""

from __future__ import annotations

import json

from pgdrill.workload.ledger import Ledger


def test_a_write_is_owed_only_once_acknowledged(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    first = ledger.sent("t", 1, "insert", "baseline", True, "2026-12-01T00:00:00+00:00")
    assert first.seq == 1 and first.version == 1 and first.state == "in_doubt"
    assert ledger.entries == [] and [e.seq for e in ledger.in_doubt] == [1]
    ledger.acked(1, "750", "0/3000028", "2026-12-01T00:00:00.01+00:00")
    assert [e.seq for e in ledger.entries] == [1] and ledger.in_doubt == []
    assert ledger.acked_through() == 1
    ledger.detail(1, "2026-12-01T00:00:00.005+00:00", "0/3000100", "000000010000000000000003", True)
    entry = ledger.get(1)
    assert (entry.lsn_lo, entry.lsn, entry.walfile, entry.walfile_exact) == \
        ("0/3000028", "0/3000100", "000000010000000000000003", True)
    assert entry.position.value == 0x3000100


def test_in_doubt_and_failed_writes_survive_a_reload(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    for row in (1, 2, 3):
        ledger.sent("t", row, "insert", "load", True, "now")
    ledger.acked(1, "1", "0/1", "now")
    ledger.failed(2, "duplicate key")
    # write 3 was sent, never acknowledged: the process died here
    again = Ledger(path)
    assert [e.seq for e in again.entries] == [1]
    assert [e.seq for e in again.in_doubt] == [3]
    assert [e.seq for e in again.all_writes] == [1, 3]
    assert again.next_seq() == 4 and again.max_row_id() == 3
    assert again.acked_through() == 1


def test_every_event_is_on_disk_before_the_call_returns(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.sent("t", 1, "update", "after_backup", False, "now")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert events == [{"event": "sent", "seq": 1, "table": "t", "row_id": 1, "op": "update",
                       "phase": "after_backup", "version": 0, "sent_at": "now"}]


def test_a_ledger_written_before_events_still_reads(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({"table": "t", "row_id": 5, "committed_at": "2026-11-25T12:00:00+00:00",
                                "lsn": "0/5000000", "walfile": "000000010000000000000005",
                                "phase": "after_backup"}) + "\n")
    (entry,) = Ledger(path).entries
    assert entry.seq == 1 and entry.op == "insert" and entry.acknowledged


def test_an_event_for_an_unknown_write_is_an_error(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text(json.dumps({"event": "acked", "seq": 9, "xid": "1", "lsn_lo": "0/1", "acked_at": "x"}) + "\n")
    try:
        Ledger(path)
    except ValueError as exc:
        assert "unknown write 9" in str(exc)
    else:
        raise AssertionError("a dangling event must not be ignored")
