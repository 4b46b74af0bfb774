"""The ledger writer on real PostgreSQL: what it records is what the server did (issue 12 item 1, 3, 5)."""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

import pytest

from pgdrill.backends.local.backend import LocalBackend
from pgdrill.config import Config
from pgdrill.detectors.ledger import read_state
from pgdrill.workload.fixture import load_fixture
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload, WriteInDoubt

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def backend():
    backend = LocalBackend(Config(), f"wl-{secrets.token_hex(4)}")
    try:
        yield backend
    finally:
        backend.close()


def test_each_write_carries_the_servers_commit_time_and_its_commit_record(backend, tmp_path):
    source = backend.create_source("wl-source")
    fixture = load_fixture("moderation_event", FIXTURES)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    workload = Workload(backend, source, fixture, ledger)
    workload.seed()
    written = workload.write(3, "baseline")
    updated = workload.modify([2], "update", switch_wal_after=False)
    deleted = workload.modify([3], "delete", switch_wal_after=False)
    workload.close()
    backend.sql(source, "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    for entry in written + updated + deleted:
        assert entry.acknowledged and entry.committed_at and entry.walfile_exact
        # The commit timestamp is the server's own for that transaction.
        (server_time,) = backend.sql(source, "SELECT pg_xact_commit_timestamp(%s::xid8::xid)", (entry.xid,))[0]
        assert server_time == entry.committed
        # The commit record lies between the two positions, in the segment the ledger names.
        records = backend.sql(source, "SELECT start_lsn::text, end_lsn::text, pg_walfile_name(end_lsn) "
                                      "FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) "
                                      "WHERE record_type = 'COMMIT' AND xid = %s::xid8::xid",
                              (entry.lsn_lo, entry.lsn, entry.xid))
        assert len(records) == 1, (entry, records)
        assert records[0][2] == entry.walfile
    state, owners = read_state(backend, source, ledger, fixture)
    # Versions say which write each row holds: row 2 the update's, row 3 is gone.
    assert state["moderation_event"] == {1: written[0].seq, 2: updated[0].seq}
    assert owners["moderation_event"] == "ozone_user"


def test_a_write_in_flight_at_the_kill_is_in_doubt(backend, tmp_path):
    source = backend.create_source("wl-killed")
    fixture = load_fixture("moderation_event", FIXTURES)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    workload = Workload(backend, source, fixture, ledger)
    workload.seed()
    workload.write(2, "baseline")
    # Make the next INSERT hang inside the server, then kill the server under it.
    backend.sql(source, "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$BEGIN PERFORM pg_sleep(30); RETURN NEW; END$$", dbname="ozone")
    backend.sql(source, "CREATE TRIGGER slow BEFORE INSERT ON moderation_event FOR EACH ROW EXECUTE FUNCTION slow()",
                dbname="ozone")
    raised: list[BaseException] = []

    def write() -> None:
        try:
            workload.write(1, "load")
        except BaseException as exc:
            raised.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 20
    while not ledger.in_doubt and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    backend.lose(source, destroy_data=False)
    writer.join(timeout=30)
    assert raised and isinstance(raised[0], WriteInDoubt), raised
    reread = Ledger(tmp_path / "ledger.jsonl")
    assert [e.seq for e in reread.entries] == [1, 2]
    assert [(e.seq, e.row_id) for e in reread.in_doubt] == [(3, 3)]
