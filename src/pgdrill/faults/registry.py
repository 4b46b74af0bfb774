"""The one table of fault kinds scenarios may name, on every backend.

An explicit table, not registration by import side effect: reading this file tells every kind,
its parameters and what it does.  An injector uses only the ``Backend`` protocol and its
optional capabilities (``pgdrill.backends.base``), so the same kind runs on the local backend and
on Kubernetes; a backend that lacks a capability makes the fault a one-line ``UsageError``.
"""

from __future__ import annotations

from typing import Any

from pgdrill import strict
from pgdrill.errors import ConfigError
from pgdrill.faults.backups import (
    LoseLatestBackupParams,
    lose_latest_backup,
    occupy_recovery_server_name,
)
from pgdrill.faults.base import (
    FaultContext,
    FaultRecord,
    FaultSpec,
    FaultType,
    NoParams,
)
from pgdrill.faults.cluster import S3OutageParams, lose_cluster, s3_outage
from pgdrill.faults.pages import (
    CorruptHeapPageParams,
    CorruptIndexPageParams,
    corrupt_heap_page,
    corrupt_index_page,
)
from pgdrill.faults.wal import (
    CorruptWalParams,
    DeleteWalParams,
    corrupt_wal,
    delete_wal,
)
from pgdrill.faults.writes import UpdateRowsParams, update_rows

FAULT_TYPES: dict[str, FaultType] = {fault.kind: fault for fault in (
    FaultType("delete_wal", DeleteWalParams, delete_wal,
              "delete the WAL segment object(s) holding post-backup writes (position or index)"),
    FaultType("corrupt_wal", CorruptWalParams, corrupt_wal,
              "flip bytes inside a WAL record, or truncate the object, in the bucket"),
    FaultType("lose_cluster", NoParams, lose_cluster,
              "SIGKILL the source cluster and destroy its data directory"),
    FaultType("s3_outage", S3OutageParams, s3_outage,
              "take the object store down while writes continue, then bring it back and wait for catch-up"),
    FaultType("lose_latest_backup", LoseLatestBackupParams, lose_latest_backup,
              "delete or corrupt the newest base backup"),
    FaultType("occupy_recovery_server_name", NoParams, occupy_recovery_server_name,
              "put WAL under the recovery cluster's serverName (Expected empty archive)"),
    FaultType("corrupt_heap_page", CorruptHeapPageParams, corrupt_heap_page,
              "flip bytes in one heap block of a table inside the newest base backup object (a block no "
              "later WAL touches)"),
    FaultType("corrupt_index_page", CorruptIndexPageParams, corrupt_index_page,
              "flip bytes in one B-tree leaf block of an index inside the newest base backup object"),
    FaultType("update_rows", UpdateRowsParams, update_rows,
              "commit UPDATE-only batches after the backup, each alone in its WAL segment (ledger op=update)"),
)}


def inject(ctx: FaultContext, spec: FaultSpec) -> FaultRecord:
    return FAULT_TYPES[spec.kind].injector(ctx, spec.params)  # type: ignore[no-any-return]


def load_faults(raw: Any, where: str) -> list[FaultSpec]:
    """A scenario's ``faults:`` list, each item loaded strictly into its kind's parameters."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: faults must be a list")
    specs = []
    for index, item in enumerate(raw):
        path = f"faults[{index}]"
        if not isinstance(item, dict) or "kind" not in item:
            raise ConfigError(f"{where}: {path} needs a kind (allowed: {', '.join(sorted(FAULT_TYPES))})")
        kind = item["kind"]
        if kind not in FAULT_TYPES:
            raise ConfigError(f"{where}: {path}.kind = {kind!r} is not allowed "
                              f"(allowed: {', '.join(map(repr, sorted(FAULT_TYPES)))})")
        params = strict.load(FAULT_TYPES[kind].params, {k: v for k, v in item.items() if k != "kind"},
                             where, path)
        specs.append(FaultSpec(kind, params))
    return specs
