"""Fault injectors: small, composable, each recording exactly what it did as evidence.

They only touch the drill's own clusters and the drill's own S3 prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from .backends.base import Backend, ClusterHandle
from .errors import UsageError
from .ledger import Ledger
from .scenario import FAULT_TYPES, FaultSpec, register_fault
from .wal import SegmentName


@dataclass
class FaultRecord:
    kind: str
    description: str
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "at": self.at, "evidence": self.evidence}


@dataclass
class FaultContext:
    backend: Backend
    source: ClusterHandle
    ledger: Ledger
    segment_size: int


def pick_segments(segments: list[str], position: str) -> list[str]:
    """The ADR's "segment 9 of 8, 9, A" is ``middle`` of the post-backup write segments."""
    if not segments:
        raise UsageError("delete_wal: no WAL segments hold post-backup writes (workload.writes_after_backup = 0?)")
    if position == "first":
        return [segments[0]]
    if position == "last":
        return [segments[-1]]
    if position == "middle":
        if len(segments) < 3:
            raise UsageError("delete_wal position 'middle' needs at least 3 post-backup write segments")
        return [segments[len(segments) // 2]]
    raise UsageError(f"delete_wal: unknown position {position!r} (allowed: first, middle, last)")


@dataclass(frozen=True)
class DeleteWalParams:
    position: Literal["first", "middle", "last"]
    """Which of the segments holding post-backup writes to delete (ADR: the middle one)."""


def delete_wal(ctx: FaultContext, params: DeleteWalParams) -> FaultRecord:
    segments = sorted({e.walfile for e in ctx.ledger.after_backup()})
    chosen = pick_segments(segments, params.position)
    store = ctx.backend.store
    root = ctx.backend.destination.key(ctx.source.server_name, "wals")
    deleted = []
    for name in chosen:
        seg = SegmentName.parse(name, ctx.segment_size)
        prefix = f"{root}/{seg.directory}/{seg.name}"
        # By prefix, so the fault works for any compression suffix (.gz, .bz2, none).
        matches = [o for o in store.list(prefix) if o.key.rsplit("/", 1)[-1].split(".")[0] == seg.name
                   and ".partial" not in o.key and ".backup" not in o.key]
        if not matches:
            raise UsageError(f"delete_wal: segment {name} is not in the archive under {prefix}")
        for obj in matches:
            store.delete(obj.key)
            deleted.append({"segment": name, "key": obj.key, "size": obj.size})
    rows = [e.row_id for e in ctx.ledger.after_backup() if e.walfile in chosen]
    return FaultRecord("delete_wal", f"deleted WAL segment {', '.join(chosen)} ({params.position} of "
                       f"{len(segments)} post-backup write segments) from the bucket",
                       evidence={"deleted": deleted, "write_segments": segments, "rows_in_deleted_segments": rows})


@dataclass(frozen=True)
class NoParams:
    pass


def lose_cluster(ctx: FaultContext, params: NoParams) -> FaultRecord:
    ctx.backend.lose(ctx.source, destroy_data=True)
    return FaultRecord("lose_cluster", f"killed every process of {ctx.source.name} (SIGKILL) and destroyed its data",
                       evidence={"cluster": ctx.source.name, "details": ctx.source.details})


register_fault("delete_wal", DeleteWalParams, delete_wal,
               "delete the WAL segment object holding a post-backup write (first, middle or last)")
register_fault("lose_cluster", NoParams, lose_cluster,
               "SIGKILL the source cluster and destroy its data directory")


def inject(ctx: FaultContext, spec: FaultSpec) -> FaultRecord:
    return FAULT_TYPES[spec.kind].injector(ctx, spec.params)  # type: ignore[no-any-return]
