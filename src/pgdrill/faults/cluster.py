"""Faults that take the source away: lose the whole cluster, take the object store down."""

from __future__ import annotations

import time
from dataclasses import dataclass

from pgdrill.backends.base import ObjectStoreOutage
from pgdrill.errors import CouldNotVerify, UsageError
from pgdrill.faults.base import FaultContext, FaultRecord, NoParams


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
    """Take the backend's own object store down (``ObjectStoreOutage``: the local SeaweedFS, the
    in-namespace MinIO on kind/k8s) while the workload writes, then measure the catch-up."""
    backend = ctx.backend
    workload = ctx.workload
    if not isinstance(backend, ObjectStoreOutage) or workload is None:
        raise UsageError(f"backend {backend.name!r} cannot take its object store down (s3_outage)")

    def archiver() -> tuple[int, int, str | None]:
        archived, failed, last = backend.sql(
            ctx.source, "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver")[0]
        return int(archived), int(failed), last

    before = archiver()
    down_at = time.monotonic()
    backend.set_object_store_available(False)
    try:
        written = workload.write(params.writes, "after_backup", switch_wal_each=True, wait_archived=False)
        time.sleep(max(params.seconds - (time.monotonic() - down_at), 0.0))
        pending = backend.sql(ctx.source, "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE right(name, 6) = '.ready'")[0][0]
        during = archiver()
    finally:
        backend.set_object_store_available(True)
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
