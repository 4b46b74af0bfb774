"""The ledger writer: every write recorded at its acknowledgement (docs/measures.md, "The ledger")."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from pgdrill.backends.base import Backend, ClusterHandle
from pgdrill.errors import ConfigError, CouldNotVerify
from pgdrill.workload.fixture import Fixture
from pgdrill.workload.ledger import Ledger, LedgerEntry

_WRAP = ("WITH pgdrill_write AS ({statement} RETURNING 1) "
         "SELECT count(*), pg_current_xact_id()::text, pg_current_wal_insert_lsn()::text FROM pgdrill_write")


_DETAIL = ("SELECT pg_xact_commit_timestamp(%(xid)s::xid8::xid), after::text, pg_walfile_name(%(lo)s::pg_lsn), "
           "pg_walfile_name(after) FROM (SELECT pg_current_wal_insert_lsn() AS after) AS position")


_COMMIT_RECORD = ("SELECT end_lsn::text, pg_walfile_name(end_lsn) FROM pg_get_wal_records_info(%(lo)s::pg_lsn, "
                  "%(hi)s::pg_lsn) WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%%' "
                  "AND xid = %(xid)s::xid8::xid")


class WriteInDoubt(CouldNotVerify):
    """The connection broke while a write was in flight: it may or may not have committed."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _connection_lost(exc: Exception) -> bool:
    """True when the error says nothing about the statement's own outcome (the link broke)."""
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state.startswith("57P")


class Workload:
    """Writes through a backend on one open session per cluster; the ledger records each write."""

    def __init__(self, backend: Backend, cluster: ClusterHandle, fixture: Fixture, ledger: Ledger):
        self.backend = backend
        self.fixture = fixture
        self.ledger = ledger
        self._cluster = cluster
        self._conn: Any = None
        self._inspect: Any = None
        self._next_id = ledger.max_row_id() + 1
        self.last_ack_monotonic: float | None = None
        """When the last write's COMMIT returned: an RTO's first write ends here, before the ledger's
        own bookkeeping (fsyncs, the follow-up read)."""

    @property
    def cluster(self) -> ClusterHandle:
        return self._cluster

    @cluster.setter
    def cluster(self, cluster: ClusterHandle) -> None:
        """Write to another cluster from now on (after a failover): same ledger, same id sequence."""
        self.close()
        self._cluster = cluster

    def close(self) -> None:
        for conn in (self._conn, self._inspect):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # a connection to a killed server: nothing left to release
                    pass
        self._conn = self._inspect = None

    def _session(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.backend.connect(self._cluster, self.fixture.database)
        return self._conn

    def seed(self) -> None:
        self.backend.run_script(self.cluster, self.fixture.setup)
        self.backend.run_script(self.cluster, self.fixture.schema, dbname=self.fixture.database)

    # -- one write ----------------------------------------------------------------------

    def commit(self, table: str, row_id: int, op: str, phase: str, statement: str | None = None) -> LedgerEntry:
        """Send one write, record it at acknowledgement; raises ``WriteInDoubt`` if the link broke."""
        import psycopg

        spec = self.fixture.tables[table]
        statement = (statement or getattr(spec, op)).strip().rstrip(";")
        if not statement:
            raise ConfigError(f"fixture table {table!r} has no {op} statement")
        entry = self.ledger.sent(table, row_id, op, phase, bool(spec.version_column), _now())
        params = {"id": row_id, "version": entry.version}
        try:
            conn = self._session()
            count, xid, lo = conn.execute(_WRAP.format(statement=statement), params).fetchone()
            self.last_ack_monotonic = time.monotonic()
        except (psycopg.Error, CouldNotVerify) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, psycopg.Error) and not _connection_lost(exc):
                self.ledger.failed(entry.seq, message)  # the server rolled the statement back
                raise CouldNotVerify(f"{self.cluster.name}: ledger {op} of {table} id {row_id} failed: "
                                     f"{message}") from None
            self.close()
            raise WriteInDoubt(f"{self.cluster.name}: connection lost during {op} of {table} id {row_id} "
                               f"(write {entry.seq} is in doubt): {message}") from None
        acked_at = _now()
        if count != 1:
            # Committed, but it changed no row: nothing is owed, and the drill is misconfigured.
            self.ledger.failed(entry.seq, f"changed {count} rows")
            raise ConfigError(f"ledger {op} of {table} id {row_id} changed {count} rows, expected 1 "
                              "(is the id in the table?)")
        self.ledger.acked(entry.seq, xid, lo, acked_at)
        try:
            committed, hi, file_lo, file_hi = conn.execute(_DETAIL, {"xid": xid, "lo": lo}).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise WriteInDoubt(f"{self.cluster.name}: connection lost right after write {entry.seq} was "
                               f"acknowledged: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                               ) from None
        walfile, exact = file_hi, file_lo == file_hi
        if not exact:
            walfile, exact = self._commit_segment(xid, lo, hi, file_hi)
        committed_at = committed.astimezone(timezone.utc).isoformat(timespec="microseconds") if committed else None
        self.ledger.detail(entry.seq, committed_at, hi, walfile, exact)
        return self.ledger.get(entry.seq)

    def _commit_segment(self, xid: str, lo: str, hi: str, fallback: str) -> tuple[str, bool]:
        """The bracket spans a segment boundary: read the commit record itself (pg_walinspect)."""
        import psycopg

        try:
            if self._inspect is None or self._inspect.closed:
                self._inspect = self.backend.connect(self._cluster, "postgres")
                self._inspect.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            row = self._inspect.execute(_COMMIT_RECORD, {"xid": xid, "lo": lo, "hi": hi}).fetchone()
        except (psycopg.Error, CouldNotVerify):
            return fallback, False
        return (row[1], True) if row else (fallback, False)

    # -- workload shapes ----------------------------------------------------------------

    def write(self, count: int, phase: str, switch_wal_each: bool = False,
              table: str | None = None, wait_archived: bool = True,
              interval_seconds: float = 0.0) -> list[LedgerEntry]:
        """Insert ``count`` rows, one transaction each; with ``switch_wal_each`` every row ends
        its segment and pgdrill waits until that segment is archived."""
        table = table or next(iter(self.fixture.tables))
        written = []
        for _ in range(count):
            row_id = self._next_id
            self._next_id += 1
            entry = self.commit(table, row_id, "insert", phase)
            written.append(entry)
            if switch_wal_each:
                self.backend.sql(self.cluster, "SELECT pg_switch_wal()")
                if wait_archived and entry.walfile:
                    self.backend.wait_archived(self.cluster, entry.walfile)
            if interval_seconds:
                time.sleep(interval_seconds)
        return written

    def modify(self, ids: list[int], op: str, phase: str = "after_backup", table: str | None = None,
               switch_wal_after: bool = True, statement: str | None = None) -> list[LedgerEntry]:
        """One UPDATE or DELETE per id (ledger ``op=update``/``delete``); with ``switch_wal_after``
        the batch ends its segment and is archived, so a segment can hold nothing but these writes."""
        table = table or next(iter(self.fixture.tables))
        written = [self.commit(table, row_id, op, phase, statement) for row_id in ids]
        if switch_wal_after and written:
            self.backend.sql(self.cluster, "SELECT pg_switch_wal()")
            last = written[-1].walfile
            if last:
                self.backend.wait_archived(self.cluster, last)
        return written

    def steady(self, seconds: float, interval_seconds: float, phase: str = "after_backup") -> list[LedgerEntry]:
        """One row every ``interval_seconds`` for ``seconds``, no forced switch: the archive gets
        the WAL only when a segment fills or archive_timeout fires, as in production."""
        written: list[LedgerEntry] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            written += self.write(1, phase, interval_seconds=interval_seconds)
        return written

    def restore_point(self, name: str) -> str:
        """``pg_create_restore_point``: a named recovery target; returns its LSN."""
        return str(self.backend.sql(self.cluster, "SELECT pg_create_restore_point(%s)::text", (name,))[0][0])

    def close_segment(self) -> str:
        """End the current segment and wait until it is archived; returns its name."""
        walfile = self.backend.sql(self.cluster, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
        self.backend.sql(self.cluster, "SELECT pg_switch_wal()")
        self.backend.wait_archived(self.cluster, walfile)
        return walfile
