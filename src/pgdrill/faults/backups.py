"""Base backup faults: lose or damage the newest backup; occupy the recovery's serverName."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Literal

from pgdrill.errors import UsageError
from pgdrill.faults.base import FaultContext, FaultRecord, NoParams


@dataclass(frozen=True)
class LoseLatestBackupParams:
    mode: Literal["delete", "corrupt"] = "delete"
    """delete: the newest backup's objects vanish (backup.info too); corrupt: its data.tar is
    truncated while backup.info still says DONE, so only restoring it reveals the damage."""


def lose_latest_backup(ctx: FaultContext, params: LoseLatestBackupParams) -> FaultRecord:
    store = ctx.backend.store
    root = ctx.backend.destination.key(ctx.source.server_name, "base") + "/"
    # Backups are the folders holding a backup.info, not every common prefix: SeaweedFS keeps an
    # emptied folder (a backup deleted by retention or an earlier fault) as a prefix, moto and
    # AWS do not, and a "newest backup" that is an empty folder would make this fault a no-op.
    ids = sorted({o.key[len(root):].split("/", 1)[0] for o in store.list(root) if o.key.endswith("/backup.info")})
    if len(ids) < 2:
        raise UsageError("lose_latest_backup needs at least two base backups (workload.base_backups: 2)")
    newest = ids[-1]
    touched = []
    for obj in store.list(f"{root}{newest}/"):
        if params.mode == "delete":
            store.delete(obj.key)
            touched.append({"key": obj.key, "action": "deleted", "size": obj.size})
        elif obj.key.rsplit("/", 1)[-1].startswith("data.tar"):
            body = store.get(obj.key)
            store.put(obj.key, body[: len(body) // 3])
            touched.append({"key": obj.key, "action": "truncated", "size_before": len(body),
                            "size_after": len(body) // 3})
    return FaultRecord("lose_latest_backup", f"{params.mode}d the newest base backup {newest}; "
                       f"previous: {ids[-2]}", evidence={"backup_id": newest, "previous": ids[-2],
                                                         "objects": touched})


def occupy_recovery_server_name(ctx: FaultContext, params: NoParams) -> FaultRecord:
    """Someone already archived under the name the operator is about to recover into."""
    if ctx.recovery_name is None:
        raise UsageError("occupy_recovery_server_name needs recovery.cluster_name in the scenario")
    name = "000000010000000000000001"
    key = ctx.backend.destination.key(ctx.recovery_name, "wals", name[:16], name + ".gz")
    body = gzip.compress(b"\0" * 1024)
    ctx.backend.store.put(key, body)
    return FaultRecord("occupy_recovery_server_name",
                       f"placed WAL under serverName {ctx.recovery_name!r} before the recovery",
                       evidence={"key": key, "sha256": hashlib.sha256(body).hexdigest()})
