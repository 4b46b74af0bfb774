"""The audit's recoverability judgement: which points in time a consistent base backup and
the unbroken WAL after it can restore, and whether they cover the retention window."""

from __future__ import annotations

from datetime import datetime, timedelta

from pgdrill.audit import codes
from pgdrill.audit.context import DETECTOR, Context
from pgdrill.audit.formatting import format_time
from pgdrill.audit.report import BackupAudit, Period, Recoverability
from pgdrill.findings import Finding
from pgdrill.postgres.wal import SegmentName


def audit_recoverability(ctx: Context, audits: list[BackupAudit]) -> tuple[Recoverability, list[Finding]]:
    thresholds = ctx.thresholds
    out: list[Finding] = []
    found = recoverability(ctx, audits)
    if not found.retention_covered:
        out.append(Finding(codes.RETENTION_NOT_COVERED, (
            f"the last {thresholds.retention_days:g} days are not all recoverable: "
            + (", ".join(f"{format_time(p.start)} .. {format_time(p.end)}" for p in found.uncovered)
               or "no consistent base backup")), DETECTOR,
            {"uncovered": [p.to_dict() for p in found.uncovered],
             "retention_days": thresholds.retention_days}))
    return found, out


def recoverability(ctx: Context, audits: list[BackupAudit]) -> Recoverability:
    """The periods a consistent backup plus the WAL after it can restore to, against the window."""
    size = ctx.index.segment_size
    window_start = ctx.now - timedelta(seconds=ctx.thresholds.retention_seconds)
    periods: list[Period] = []
    latest: SegmentName | None = None
    for audit in audits:
        if not audit.consistent or audit.reaches is None or audit.end_time is None:
            continue
        reach = SegmentName.parse(audit.reaches, size)
        reached_at = ctx.index.wal(reach.timeline, reach.number).last_modified
        periods.append(Period(audit.end_time, max(audit.end_time, reached_at)))
        if latest is None or (reach.number, reach.timeline) > (latest.number, latest.timeline):
            latest = reach
    merged = _merge(periods)
    if not merged:
        return Recoverability(None, None, None, None, (), window_start, False,
                              (Period(window_start, ctx.now),), "no consistent base backup")
    end = max(p.end for p in merged)
    oldest_known = min(
        [b.begin_time for b in audits if b.begin_time is not None]
        + [w.last_modified for w in ctx.meta.archive.wal], default=merged[0].start)
    note = None
    start = window_start
    if oldest_known > window_start:
        # A young archive cannot cover the whole window yet; judge it from its first
        # recoverable point instead of alerting for its first 30 days.
        start = merged[0].start
        note = f"archive younger than the retention window: judged from {format_time(start)}"
    uncovered = _complement(merged, start, end)
    assert latest is not None
    return Recoverability(
        earliest=merged[0].start, latest=end, latest_segment=latest.name,
        latest_lsn=str(latest.end_lsn), periods=tuple(merged), retention_start=window_start,
        retention_covered=not uncovered, uncovered=tuple(uncovered), note=note,
    )


def _merge(periods: list[Period]) -> list[Period]:
    merged: list[Period] = []
    for period in sorted(periods, key=lambda p: p.start):
        if merged and period.start <= merged[-1].end:
            if period.end > merged[-1].end:
                merged[-1] = Period(merged[-1].start, period.end)
        else:
            merged.append(period)
    return merged


def _complement(merged: list[Period], start: datetime, end: datetime) -> list[Period]:
    holes: list[Period] = []
    cursor = start
    for period in merged:
        if period.end <= cursor:
            continue
        if period.start > cursor:
            holes.append(Period(cursor, min(period.start, end)))
        cursor = max(cursor, period.end)
        if cursor >= end:
            break
    if cursor < end:
        holes.append(Period(cursor, end))
    return [h for h in holes if h.end > h.start]
