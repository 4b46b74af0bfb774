"""Seed data and the ledger workload: committed writes, each recorded with time, LSN and segment."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import strict
from .backends.base import Backend, ClusterHandle
from .errors import ConfigError
from .ledger import Ledger, LedgerEntry


@dataclass(frozen=True)
class TableSpec:
    insert: str
    """One ledger write; ``%(id)s`` is bound to the row id."""
    update: str = ""
    """Optional: change one existing row (``%(id)s``) without changing the row count."""


@dataclass(frozen=True)
class Fixture:
    database: str
    owner: str
    setup: str
    schema: str
    tables: dict[str, TableSpec] = field(default_factory=dict)


def load_fixture(name: str, directory: Path) -> Fixture:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise ConfigError(f"fixture {name!r} not found in {directory} (available: {available})")
    return strict.load(Fixture, yaml.safe_load(path.read_text()), str(path))


class Workload:
    """Writes rows through a backend and records each committed one in the ledger."""

    def __init__(self, backend: Backend, cluster: ClusterHandle, fixture: Fixture, ledger: Ledger):
        self.backend = backend
        self.cluster = cluster
        self.fixture = fixture
        self.ledger = ledger
        self._next_id = max((e.row_id for e in ledger.entries), default=0) + 1

    def seed(self) -> None:
        self.backend.run_script(self.cluster, self.fixture.setup)
        self.backend.run_script(self.cluster, self.fixture.schema, dbname=self.fixture.database)

    def write(self, count: int, phase: str, switch_wal_each: bool = False,
              table: str | None = None, wait_archived: bool = True,
              interval_seconds: float = 0.0) -> list[LedgerEntry]:
        """Commit ``count`` rows, one transaction each; with ``switch_wal_each`` every row ends
        its segment and pgdrill waits until that segment is archived."""
        table = table or next(iter(self.fixture.tables))
        spec = self.fixture.tables[table]
        written = []
        for _ in range(count):
            row_id = self._next_id
            self._next_id += 1
            # Autocommit: the INSERT is committed when sql() returns; the position read
            # right after is at or past the end of its commit record.
            self.backend.sql(self.cluster, spec.insert, {"id": row_id}, dbname=self.fixture.database)  # type: ignore[arg-type]
            lsn, walfile, at = self.backend.sql(
                self.cluster,
                "SELECT pg_current_wal_insert_lsn()::text, pg_walfile_name(pg_current_wal_insert_lsn()),"
                " to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')",
            )[0]
            entry = LedgerEntry(table, row_id, at, lsn, walfile, phase)
            self.ledger.append(entry)
            written.append(entry)
            if switch_wal_each:
                self.backend.sql(self.cluster, "SELECT pg_switch_wal()")
                if wait_archived:
                    self.backend.wait_archived(self.cluster, walfile)
            if interval_seconds:
                time.sleep(interval_seconds)
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

    def write_baseline(self, count: int) -> None:
        self.write(count, "baseline")

    def close_segment(self) -> str:
        """End the current segment and wait until it is archived; returns its name."""
        walfile = self.backend.sql(self.cluster, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
        self.backend.sql(self.cluster, "SELECT pg_switch_wal()")
        self.backend.wait_archived(self.cluster, walfile)
        return walfile

    def update(self, ids: list[int], phase: str = "after_backup", table: str | None = None,
               switch_wal_after: bool = True) -> list[LedgerEntry]:
        """Commit one UPDATE per id with the fixture's ``update`` statement (ledger ``op=update``)."""
        table = table or next(iter(self.fixture.tables))
        statement = self.fixture.tables[table].update
        if not statement:
            raise ConfigError(f"fixture table {table!r} has no update statement")
        return commit_updates(self.backend, self.cluster, self.ledger, self.fixture.database, table, statement,
                              ids, phase, switch_wal_after)


def commit_updates(backend: Backend, cluster: ClusterHandle, ledger: Ledger, database: str, table: str,
                   statement: str, ids: list[int], phase: str, switch_wal_after: bool) -> list[LedgerEntry]:
    """UPDATEs only, one transaction per row, each recorded in the ledger with ``op=update``.

    With ``switch_wal_after`` the batch ends its segment and is archived, so a segment can hold
    nothing but these updates (the row count of the table cannot show whether it was replayed).
    """
    written = []
    for row_id in ids:
        rows = backend.sql(cluster, statement + " RETURNING 1", {"id": row_id}, dbname=database)  # type: ignore[arg-type]
        if not rows:
            raise ConfigError(f"update of {table} id {row_id} changed no row (is the id in the table?)")
        lsn, walfile, at = backend.sql(
            cluster,
            "SELECT pg_current_wal_insert_lsn()::text, pg_walfile_name(pg_current_wal_insert_lsn()),"
            " to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')",
        )[0]
        entry = LedgerEntry(table, row_id, at, lsn, walfile, phase, op="update")
        ledger.append(entry)
        written.append(entry)
    if switch_wal_after and written:
        backend.sql(cluster, "SELECT pg_switch_wal()")
        backend.wait_archived(cluster, written[-1].walfile)
    return written
