"""WAL faults in the bucket: delete or damage the segment objects that hold post-backup writes."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from typing import Literal

from pgdrill.archive.store import ObjectInfo
from pgdrill.errors import UsageError
from pgdrill.faults.base import FaultContext, FaultRecord, Position
from pgdrill.postgres.wal import SegmentName


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
