"""The definitions of docs/measures.md, each checked both ways on hand-built ledgers (pure logic).

Every test names the issue-12 defect it pins: the code before that change computed these wrong.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from pgdrill.drill.measures import (
    CommitClock,
    RtoClock,
    effects_present,
    measure_path,
    rpo_findings,
    rto_findings,
    worst_path,
)
from pgdrill.workload.ledger import LedgerEntry

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def write(seq: int, row_id: int, seconds: float, op: str = "insert", state: str = "acked",
          skew: float = 0.0) -> LedgerEntry:
    """A ledger write committed ``seconds`` after T0 on the server (whose clock runs ``skew`` s
    ahead of the client's) and acknowledged 5 ms later on the client."""
    committed = T0 + timedelta(seconds=seconds + skew)
    acked = T0 + timedelta(seconds=seconds + 0.005)
    return LedgerEntry("t", row_id, committed.isoformat() if state == "acked" else None,
                       f"0/{seq:X}000000" if state == "acked" else None, f"0000000100000000000000{seq:02X}",
                       "after_backup", op=op, seq=seq, version=seq, state=state,
                       acked_at=acked.isoformat() if state == "acked" else None)


def state(rows: dict[int, int]) -> dict[str, dict[int, int | None]]:
    """Recovered rows of table t: key → version."""
    return {"t": dict(rows)}


# The ADR's shape: 24 baseline rows (one write each), then rows 25, 26, 27 ten seconds apart.
BASE = [write(i, i, 0.01 * i) for i in range(1, 25)]
ADR = BASE + [write(25, 25, 100), write(26, 26, 110), write(27, 27, 120)]
ALL_BACK = {i: i for i in range(1, 28)}


def test_nothing_lost_means_rpo_zero():
    m = measure_path("recovery", "archive", "v2", ADR, state(ALL_BACK), bound_seq=27)
    assert (m.lost_writes, m.rpo_seconds, m.expected, m.present) == (0, 0.0, 27, 27)
    assert rpo_findings(m, 300) == []


def test_adr_gap_rpo_is_last_acknowledged_minus_end_of_unbroken_prefix():
    m = measure_path("recovery", "archive", "v2", ADR, state({i: i for i in range(1, 26)}), bound_seq=27)
    assert m.lost_writes == 2 and [w["row_id"] for w in m.lost] == [26, 27]
    assert m.rpo_seconds == pytest.approx(20.0)
    assert m.prefix_end["row_id"] == 25 and m.last_acknowledged["row_id"] == 27
    assert m.rows_expected == 27 and m.rows_present == 25


def test_issue12_item6_a_surviving_later_write_does_not_shorten_the_rpo():
    # Lose row 26, keep row 27: the recovered state is not "as of row 27".
    rows = {i: i for i in range(1, 28) if i != 26}
    m = measure_path("recovery", "archive", "v2", ADR, state(rows), bound_seq=27)
    assert m.lost_writes == 1
    assert m.rpo_seconds == pytest.approx(20.0)  # 27 − 25, not 0
    assert [w["row_id"] for w in m.survivors_after_first_loss] == [27]


def test_issue12_item1_lost_updates_count_and_have_an_rpo():
    # 24 rows, then updates of rows 1..16 after the backup; the recovery kept the first 8.
    updates = [write(24 + i, i, 100 + i, op="update") for i in range(1, 17)]
    rows = {i: i for i in range(1, 25)} | {i: 24 + i for i in range(1, 9)}
    m = measure_path("recovery", "archive", "v2", BASE + updates, state(rows), bound_seq=40)
    assert m.lost_writes == 8 and {w["op"] for w in m.lost} == {"update"}
    assert m.rpo_seconds == pytest.approx(8.0)  # update 16 (116 s) − update 8 (108 s)
    assert m.rows_expected == m.rows_present == 24  # the row count alone could not tell


def test_deletes_are_writes_too():
    history = BASE + [write(25, 3, 100, op="delete"), write(26, 4, 110, op="delete")]
    applied = {i: i for i in range(1, 25) if i not in (3, 4)}
    assert measure_path("r", "archive", None, history, state(applied), 26).lost_writes == 0
    only_first = {i: i for i in range(1, 25) if i != 3}
    m = measure_path("r", "archive", None, history, state(only_first), 26)
    assert [(w["op"], w["row_id"]) for w in m.lost] == [("delete", 4)]
    assert m.rpo_seconds == pytest.approx(10.0)


def test_effects_follow_the_per_key_prefix():
    history = [write(1, 7, 0), write(2, 7, 1, op="update"), write(3, 7, 2, op="update")]
    assert effects_present(history, state({7: 2})) == {1: True, 2: True, 3: False}
    assert effects_present(history, state({})) == {1: False, 2: False, 3: False}
    # Without a version column an update's effect cannot be read back: "unknown", never "present".
    assert effects_present(history, {"t": {7: None}}, versioned=False)[2] is None


def test_unverifiable_updates_are_listed():
    history = BASE + [write(25, 1, 100, op="update")]
    m = measure_path("r", "archive", None, history, {"t": {i: None for i in range(1, 25)}}, 25, versioned=False)
    assert [w["seq"] for w in m.unverifiable] == [25]


def test_issue12_item3_in_doubt_writes_are_neither_lost_nor_safe():
    in_flight = write(28, 28, 130, state="in_doubt")
    present = measure_path("failover", "failover", "r", ADR + [in_flight], state(ALL_BACK | {28: 28}), 27)
    absent = measure_path("failover", "failover", "r", ADR + [in_flight], state(ALL_BACK), 27)
    assert present.lost_writes == absent.lost_writes == 0 and present.expected == absent.expected == 27
    assert [(w["seq"], w["present"]) for w in present.in_doubt] == [(28, True)]
    assert [(w["seq"], w["present"]) for w in absent.in_doubt] == [(28, False)]


def test_issue12_item3_an_acknowledged_write_lost_at_the_kill_is_counted():
    # The old workload wrote the ledger line after a second round trip: a kill in between
    # dropped the acknowledged write from the ledger.  Now it is there, without its detail.
    last = replace(write(27, 27, 120), committed_at=None, lsn=None)
    m = measure_path("failover", "failover", "r", ADR[:-1] + [last], state({i: i for i in range(1, 27)}), 27)
    assert m.lost_writes == 1 and m.lost[0]["row_id"] == 27
    assert m.rpo_basis == "estimated_from_ack"
    assert m.rpo_seconds == pytest.approx(10.0, abs=0.01)  # 120 s estimated from its ack − 110 s


def test_issue12_item4_the_cut_off_is_the_client_sequence_not_a_clock():
    # The server clock runs 2 s ahead of the client.  Before, "committed before the disaster"
    # compared server commit times with a client timestamp and dropped the last writes.
    skewed = [replace(w, committed_at=(w.committed + timedelta(seconds=2)).isoformat()) for w in ADR]
    plain = measure_path("recovery", "archive", "v2", ADR, state({i: i for i in range(1, 26)}), 27)
    shifted = measure_path("recovery", "archive", "v2", skewed, state({i: i for i in range(1, 26)}), 27)
    assert (shifted.lost_writes, shifted.rpo_seconds) == (plain.lost_writes, plain.rpo_seconds) == (2, 20.0)


def test_writes_after_the_bound_are_not_owed():
    m = measure_path("recovery", "archive", "v2", ADR, state({i: i for i in range(1, 26)}), bound_seq=25)
    assert (m.expected, m.lost_writes, m.rpo_seconds) == (25, 0, 0.0)


def test_issue12_item7_pitr_owes_only_the_writes_up_to_its_target():
    rows = {i: i for i in range(1, 27)}  # target after row 26; row 27 must be absent
    m = measure_path("pitr", "archive", "v2", ADR, state(rows), bound_seq=27, target_seq=26)
    assert (m.expected, m.present, m.lost_writes, m.rows_expected, m.rows_present) == (26, 26, 0, 26, 26)
    assert m.after_target_present == []
    overshot = measure_path("pitr", "archive", "v2", ADR, state(ALL_BACK), bound_seq=27, target_seq=26)
    assert [w["row_id"] for w in overshot.after_target_present] == [27]


def test_nothing_survived_is_a_lower_bound():
    m = measure_path("r", "archive", None, ADR, state({}), 27)
    assert m.lost_writes == 27 and m.rpo_lower_bound and m.prefix_end is None
    assert m.rpo_seconds == pytest.approx(120.0 - 0.01)


def test_commit_clock_cancels_skew():
    writes = [write(i, i, i, skew=2.0) for i in range(1, 5)]
    clock = CommitClock.from_writes(writes)
    estimated, basis = clock.time(replace(writes[-1], committed_at=None))
    assert basis == "estimated_from_ack"
    assert abs((estimated - writes[-1].committed).total_seconds()) < 1e-6


def test_worst_path_is_the_headline():
    clean = measure_path("failover", "failover", "r", ADR, state(ALL_BACK), 27)
    lossy = measure_path("s3_recovery", "archive", "v2", ADR, state({i: i for i in range(1, 26)}), 27)
    assert worst_path([clean, lossy]) is lossy
    assert worst_path([]) is None


def test_issue12_item8_rto_phases_are_contiguous_and_harness_waits_excluded():
    clock = RtoClock("failover", declared_mono=100.0, declared_at=T0.isoformat())
    clock.exclude("kill", 100.9)  # SIGKILL, then the harness waits for the process to be reaped
    clock.mark("elect", 101.0)
    clock.mark("promote", 101.3)
    clock.mark("first_write", 101.35)
    assert clock.total == pytest.approx(0.45)
    assert clock.excluded == {"kill": pytest.approx(0.9)}
    assert clock.wall == pytest.approx(1.35)  # from the disaster to the first write
    data = clock.to_dict()
    assert sum(data["phases_s"].values()) == pytest.approx(data["total_s"], abs=0.002)


def test_rto_add_phases_excludes_the_gap_before_the_backend_started():
    clock = RtoClock("archive", 10.0, T0.isoformat())
    clock.exclude("stop_source", 10.2)
    clock.add_phases({"preflight": 0.3, "restore": 1.0, "replay": 2.0, "promote": 0.5, "first_write": 0.01}, 10.5)
    assert clock.excluded == {"stop_source": pytest.approx(0.2), "harness": pytest.approx(0.3)}
    assert clock.total == pytest.approx(3.81)
    clock2 = RtoClock("crash", 0.0, T0.isoformat())
    clock2.add_phases({"reap": 0.9, "start_retries": 0.5, "start": 0.01, "crash_recovery": 0.06}, 0.0,
                      excluded=("reap", "start_retries"))
    assert clock2.total == pytest.approx(0.07) and clock2.excluded["reap"] == pytest.approx(0.9)


def test_rpo_and_rto_findings():
    lossy = measure_path("s3", "archive", "v2", ADR, state({i: i for i in range(1, 26)}), 27)
    assert [f.code for f in rpo_findings(lossy, 5)] == ["RPO_EXCEEDED"]
    assert rpo_findings(lossy, 300) == []
    assert rto_findings("p", None, 300) == [] and rto_findings("p", {"total_s": 10.0}, 300) == []
    assert [f.code for f in rto_findings("p", {"total_s": 400.0}, 300)] == ["RTO_EXCEEDED"]


def test_a_version_no_write_set_makes_the_key_unverifiable():
    history = [write(1, 7, 0), write(2, 7, 1, op="update"), write(3, 7, 2, op="update")]
    assert effects_present(history, state({7: 999})) == {1: None, 2: None, 3: None}


def test_lower_bound_only_when_nothing_survived():
    # The first write is lost but later ones survived: measured from the first lost write, no flag.
    m = measure_path("r", "archive", None, ADR, state({i: i for i in range(2, 28)}), 27)
    assert m.lost_writes == 1 and m.prefix_end is None and not m.rpo_lower_bound
    assert m.rpo_seconds == pytest.approx(120.0 - 0.01)
