"""Fault injectors: small, composable, each recording exactly what it did as evidence.

They only touch the drill's own clusters and the drill's own S3 prefix.  Each kind is
registered with the dataclass of its parameters, which scenarios fill strictly.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from .backends.base import Backend, ClusterHandle
from .errors import CouldNotVerify, UsageError
from .ledger import Ledger
from .s3 import ObjectInfo
from .scenario import FAULT_TYPES, FaultSpec, register_fault
from .wal import SegmentName
from .workload import Workload

Position = Literal["first", "middle", "last"]


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
    workload: Workload | None = None
    recovery_name: str | None = None
    """The cluster/serverName the drill will recover into."""


def pick_segments(segments: list[str], position: str | None = None, index: list[int] | None = None) -> list[str]:
    """The ADR's "segment 9 of 8, 9, A" is ``middle`` (or ``index: [2]``) of the post-backup
    write segments; ``index`` is 1-based and may name several (several gaps)."""
    if not segments:
        raise UsageError("no WAL segments hold post-backup writes (workload.writes_after_backup = 0?)")
    if index:
        bad = [i for i in index if not 1 <= i <= len(segments)]
        if bad:
            raise UsageError(f"segment index {bad} out of range: {len(segments)} post-backup write segments")
        return [segments[i - 1] for i in sorted(set(index))]
    if position == "first":
        return [segments[0]]
    if position == "last":
        return [segments[-1]]
    if position == "middle":
        if len(segments) < 3:
            raise UsageError("position 'middle' needs at least 3 post-backup write segments")
        return [segments[len(segments) // 2]]
    raise UsageError(f"unknown segment position {position!r} (allowed: first, middle, last, or index)")


def _write_segments(ctx: FaultContext) -> list[str]:
    return sorted({e.walfile for e in ctx.ledger.after_backup() if e.walfile})


def _segment_objects(ctx: FaultContext, name: str) -> list[ObjectInfo]:
    seg = SegmentName.parse(name, ctx.segment_size)
    prefix = ctx.backend.destination.key(ctx.source.server_name, "wals", seg.directory, seg.name)
    # By prefix, so it works for any compression suffix (.gz, .bz2, none); never a .partial.
    found = [o for o in ctx.backend.store.list(prefix)
             if o.key.rsplit("/", 1)[-1].split(".")[0] == seg.name and ".partial" not in o.key
             and ".backup" not in o.key]
    if not found:
        raise UsageError(f"segment {name} is not in the archive under {prefix}")
    return found


@dataclass(frozen=True)
class DeleteWalParams:
    position: Position | None = None
    """Which post-backup write segment to delete (ADR: the middle one)."""
    index: list[int] | None = None
    """Or 1-based indexes among the post-backup write segments, e.g. [2, 4] for two gaps."""


def delete_wal(ctx: FaultContext, params: DeleteWalParams) -> FaultRecord:
    segments = _write_segments(ctx)
    chosen = pick_segments(segments, params.position, params.index)
    deleted = []
    for name in chosen:
        for obj in _segment_objects(ctx, name):
            ctx.backend.store.delete(obj.key)
            deleted.append({"segment": name, "key": obj.key, "size": obj.size})
    rows = [e.row_id for e in ctx.ledger.after_backup() if e.walfile in chosen]
    which = params.position or f"index {params.index}"
    return FaultRecord("delete_wal", f"deleted WAL segment {', '.join(chosen)} ({which} of "
                       f"{len(segments)} post-backup write segments) from the bucket",
                       evidence={"deleted": deleted, "write_segments": segments, "rows_in_deleted_segments": rows})


@dataclass(frozen=True)
class CorruptWalParams:
    position: Position | None = None
    index: list[int] | None = None
    mode: Literal["flip", "truncate"] = "flip"
    """flip: flip bytes inside the segment's first WAL record (CRC mismatch); truncate: cut the
    stored object in half."""


# Inside the first record after the 40-byte long page header of a segment.
_FLIP_OFFSET, _FLIP_LENGTH = 48, 8


def corrupt_wal(ctx: FaultContext, params: CorruptWalParams) -> FaultRecord:
    segments = _write_segments(ctx)
    chosen = pick_segments(segments, params.position, params.index)
    touched = []
    for name in chosen:
        for obj in _segment_objects(ctx, name):
            original = ctx.backend.store.get(obj.key)
            compressed = obj.key.endswith(".gz")
            if params.mode == "truncate":
                damaged = original[: len(original) // 2]
            else:
                if not compressed and "." in obj.key.rsplit("/", 1)[-1]:
                    raise UsageError(f"corrupt_wal flip supports gzip or uncompressed WAL, not {obj.key}")
                raw = bytearray(gzip.decompress(original) if compressed else original)
                for i in range(_FLIP_OFFSET, _FLIP_OFFSET + _FLIP_LENGTH):
                    raw[i] ^= 0xFF
                damaged = gzip.compress(bytes(raw)) if compressed else bytes(raw)
            ctx.backend.store.put(obj.key, damaged)
            touched.append({"segment": name, "key": obj.key, "mode": params.mode,
                            "sha256_before": hashlib.sha256(original).hexdigest(),
                            "sha256_after": hashlib.sha256(damaged).hexdigest(),
                            "size_before": len(original), "size_after": len(damaged),
                            "offset": None if params.mode == "truncate" else _FLIP_OFFSET})
    rows = [e.row_id for e in ctx.ledger.after_backup() if e.walfile in chosen]
    return FaultRecord("corrupt_wal", f"corrupted WAL segment {', '.join(chosen)} in the bucket ({params.mode})",
                       evidence={"corrupted": touched, "write_segments": segments, "rows_in_corrupted_segments": rows})


@dataclass(frozen=True)
class NoParams:
    pass


def lose_cluster(ctx: FaultContext, params: NoParams) -> FaultRecord:
    ctx.backend.lose(ctx.source, destroy_data=True)
    return FaultRecord("lose_cluster", f"killed every process of {ctx.source.name} (SIGKILL) and destroyed its data",
                       evidence={"cluster": ctx.source.name, "details": ctx.source.details})


@dataclass(frozen=True)
class S3OutageParams:
    seconds: float = 10.0
    """How long the object store is down."""
    writes: int = 3
    """Rows written (each in its own segment) while it is down."""
    catch_up_timeout_seconds: float = 120.0


def s3_outage(ctx: FaultContext, params: S3OutageParams) -> FaultRecord:
    backend = ctx.backend
    if not hasattr(backend, "set_object_store_available") or ctx.workload is None:
        raise UsageError(f"backend {backend.name!r} cannot take its object store down (s3_outage)")
    def archiver() -> tuple[int, int, str | None]:
        rows = backend.sql(ctx.source, "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver")
        return rows[0]  # type: ignore[return-value]

    before = archiver()
    down_at = time.monotonic()
    backend.set_object_store_available(False)  # type: ignore[attr-defined]
    try:
        written = ctx.workload.write(params.writes, "after_backup", switch_wal_each=True, wait_archived=False)
        time.sleep(max(params.seconds - (time.monotonic() - down_at), 0.0))
        pending = backend.sql(ctx.source, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE right(name, 6) = '.ready'")[0][0]
        during = archiver()
    finally:
        backend.set_object_store_available(True)  # type: ignore[attr-defined]
    up_at = time.monotonic()
    last = written[-1].walfile if written else None
    if last:
        try:
            backend.wait_archived(ctx.source, last, timeout=params.catch_up_timeout_seconds)
        except CouldNotVerify as exc:
            raise CouldNotVerify(f"archive did not catch up after the S3 outage: {exc}") from None
    caught_up = time.monotonic()
    after = archiver()
    return FaultRecord(
        "s3_outage",
        f"object store down for {up_at - down_at:.1f}s while {len(written)} segments were written; "
        f"{during[1] - before[1]} failed archive attempts; caught up {caught_up - up_at:.1f}s after it returned",
        evidence={"outage_s": round(up_at - down_at, 3), "catch_up_s": round(caught_up - up_at, 3),
                  "rpo_exposure_s": round(caught_up - down_at, 3),
                  "failed_archive_attempts": during[1] - before[1], "segments_pending_at_peak": pending,
                  "segments_written": [e.walfile for e in written], "last_archived_after": after[2],
                  "rows_written_during_outage": [e.row_id for e in written]})


@dataclass(frozen=True)
class LoseLatestBackupParams:
    mode: Literal["delete", "corrupt"] = "delete"
    """delete: the newest backup's objects vanish (backup.info too); corrupt: its data.tar is
    truncated while backup.info still says DONE, so only restoring it reveals the damage."""


def lose_latest_backup(ctx: FaultContext, params: LoseLatestBackupParams) -> FaultRecord:
    store = ctx.backend.store
    root = ctx.backend.destination.key(ctx.source.server_name, "base") + "/"
    ids = sorted(p[len(root):].strip("/") for p in store.list_prefixes(root))
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


register_fault("delete_wal", DeleteWalParams, delete_wal,
               "delete the WAL segment object(s) holding post-backup writes (position or index)")
register_fault("corrupt_wal", CorruptWalParams, corrupt_wal,
               "flip bytes inside a WAL record, or truncate the object, in the bucket")
register_fault("lose_cluster", NoParams, lose_cluster,
               "SIGKILL the source cluster and destroy its data directory")
register_fault("s3_outage", S3OutageParams, s3_outage,
               "take the object store down while writes continue, then bring it back and wait for catch-up")
register_fault("lose_latest_backup", LoseLatestBackupParams, lose_latest_backup,
               "delete or corrupt the newest base backup")
register_fault("occupy_recovery_server_name", NoParams, occupy_recovery_server_name,
               "put WAL under the recovery cluster's serverName (Expected empty archive)")


def inject(ctx: FaultContext, spec: FaultSpec) -> FaultRecord:
    return FAULT_TYPES[spec.kind].injector(ctx, spec.params)  # type: ignore[no-any-return]
