"""Writes as faults: UPDATE-only batches after the backup, each alone in its WAL segment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgdrill.errors import UsageError
from pgdrill.faults.base import FaultContext, FaultRecord


@dataclass(frozen=True)
class UpdateRowsParams:
    database: str
    table: str
    first_id: int
    """First key to update; each batch updates the next ``rows_per_batch`` keys."""
    batches: int = 2
    rows_per_batch: int = 8
    key: str = "id"
    set: str = "reason = reason || ' (revised by pgdrill)'"
    """SQL SET clause (scenario authors' SQL, like fixtures)."""


def _ident(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def update_rows(ctx: FaultContext, params: UpdateRowsParams) -> FaultRecord:
    table = params.table.rsplit(".", 1)[-1]
    workload = ctx.workload
    if workload is None or table not in workload.fixture.tables:
        raise UsageError(f"update_rows: table {params.table!r} is not a ledger table of the workload's fixture")
    if params.database != workload.fixture.database:
        raise UsageError(f"update_rows: database {params.database!r} is not the fixture's "
                         f"({workload.fixture.database!r}); ledger writes go to the fixture's database")
    version = workload.fixture.tables[table].version_column
    if not version:
        raise UsageError(f"update_rows: fixture table {table!r} has no version_column, so the effect of an "
                         "update could not be verified")
    statement = (f"UPDATE {_ident(params.table)} SET {params.set}, {_ident(version)} = %(version)s "
                 f"WHERE {_ident(params.key)} = %(id)s")
    batches: list[dict[str, Any]] = []
    next_id = params.first_id
    for _ in range(params.batches):
        ids = list(range(next_id, next_id + params.rows_per_batch))
        next_id += params.rows_per_batch
        entries = workload.modify(ids, "update", "after_backup", table, switch_wal_after=True, statement=statement)
        batches.append({"ids": [ids[0], ids[-1]], "segments": sorted({e.walfile for e in entries}),
                        "last_lsn": entries[-1].lsn})
    return FaultRecord("update_rows", f"committed {params.batches} batch(es) of {params.rows_per_batch} UPDATEs to "
                       f"{params.table}, each batch alone in its WAL segment", evidence={"batches": batches})
