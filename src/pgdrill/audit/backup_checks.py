"""The audit's judgement of base backups: each one graded (PITR-capable, consistent, waiting
for WAL, not consistent, failed, in progress, unreadable), then staleness, failures in a row
and a drop in size."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone

from pgdrill.archive.catalog import BaseBackup
from pgdrill.audit import codes
from pgdrill.audit.context import DETECTOR, ArchiveMetadata, Context
from pgdrill.audit.formatting import (
    age,
    human_bytes,
    human_duration,
    none_value,
    parse_time,
    time_from_backup_id,
)
from pgdrill.audit.report import BackupAudit, Grade
from pgdrill.findings import BACKUP_WAL_PENDING, Finding
from pgdrill.postgres.wal import SegmentName

#: barman-cloud statuses of a backup that may still finish.
_RUNNING = ("STARTED", "WAITING_FOR_WALS", "SYNCING")


@dataclass(frozen=True)
class BackupsJudgement:
    audits: list[BackupAudit]
    findings: list[Finding]
    consecutive_failures: int
    newest_done: BackupAudit | None
    backup_age: float | None


def audit_backups(ctx: Context, location: str) -> BackupsJudgement:
    """Grade every backup (after ``audit_wal``: grading needs ``ctx.uploading``)."""
    now, thresholds = ctx.now, ctx.thresholds
    out: list[Finding] = []
    audits = grade_backups(ctx, out)
    completed = [b for b in audits if b.status == "DONE" and b.end_time is not None]
    newest_done = max(completed, key=lambda b: b.end_time, default=None)  # type: ignore[arg-type,return-value]
    backup_age = (now - newest_done.end_time).total_seconds() if newest_done and newest_done.end_time else None
    # A newer backup.info that could not be read may be the newest completed backup: the age
    # is then unknown (already reported as METADATA_UNREADABLE), not stale.
    age_known = not any(
        b.grade == "unreadable" and b.begin_time is not None
        and (newest_done is None or newest_done.end_time is None or b.begin_time > newest_done.end_time)
        for b in audits)
    if not age_known:
        backup_age = None
    elif newest_done is None:
        out.append(Finding(codes.BACKUP_STALE, f"no completed base backup under {location}", DETECTOR,
                           {"backups": len(audits)}))
    elif backup_age is not None and backup_age > thresholds.backup_max_age_seconds:
        out.append(Finding(codes.BACKUP_STALE, (
            f"newest completed base backup {newest_done.backup_id} ended {human_duration(backup_age)} ago "
            f"(limit {human_duration(thresholds.backup_max_age_seconds)})"), DETECTOR,
            {"backup_id": newest_done.backup_id, "age_seconds": round(backup_age, 1),
             "limit_seconds": thresholds.backup_max_age_seconds}))
    recent_failures = _consecutive_failures(audits)
    consecutive = len(recent_failures)
    for failed in recent_failures:
        out.append(Finding(codes.BACKUP_FAILED, (
            f"base backup {failed.backup_id} did not complete (status {failed.status}"
            + (f": {failed.error}" if failed.error else "") + ")"), DETECTOR,
            {"backup_id": failed.backup_id, "status": failed.status, "error": failed.error}))
    if consecutive >= thresholds.backup_consecutive_failures:
        out.append(Finding(codes.BACKUP_CONSECUTIVE_FAILURES, (
            f"the last {consecutive} base backups failed in a row "
            f"(limit {thresholds.backup_consecutive_failures})"), DETECTOR,
            {"consecutive_failures": consecutive, "limit": thresholds.backup_consecutive_failures,
             "backup_ids": [b.backup_id for b in recent_failures]}))
    if newest_done is not None and newest_done.size_ratio is not None \
            and newest_done.size_ratio < thresholds.size_drop_ratio:
        out.append(Finding(codes.BACKUP_SIZE_DROP, (
            f"base backup {newest_done.backup_id} stores {human_bytes(newest_done.stored_bytes)}, "
            f"{newest_done.size_ratio:.0%} of the median of the previous ones "
            f"(limit {thresholds.size_drop_ratio:.0%})"), DETECTOR,
            {"backup_id": newest_done.backup_id, "stored_bytes": newest_done.stored_bytes,
             "ratio": round(newest_done.size_ratio, 3), "compression": newest_done.compression}))
    return BackupsJudgement(audits, out, consecutive, newest_done, backup_age)


def grade_backups(ctx: Context, found: list[Finding]) -> list[BackupAudit]:
    meta = ctx.meta
    rows: list[tuple[datetime | None, str, BackupAudit]] = []
    done_sizes: list[tuple[str | None, int]] = []
    for backup_id in _ordered_ids(meta):
        info = meta.backups.get(backup_id)
        stored = meta.stored_bytes.get(backup_id, 0)
        if info is None:
            unreadable = backup_id in meta.unreadable_backups
            when = time_from_backup_id(backup_id)
            rows.append((when, backup_id, BackupAudit(
                backup_id, "UNREADABLE" if unreadable else "NO_INFO",
                "unreadable" if unreadable else "failed", None, None, None, when, None,
                age(ctx.now, when), stored, None, None, None, None, None,
                meta.unreadable_backups.get(backup_id, "no backup.info: barman-cloud cannot restore it"))))
            continue
        audit = grade_backup(ctx, found, info, stored, done_sizes)
        if info.done:
            done_sizes.append((audit.compression, stored))
        rows.append((audit.begin_time, backup_id, audit))
    return [row[2] for row in rows]


def grade_backup(ctx: Context, found: list[Finding], info: BaseBackup, stored: int,
                 earlier: list[tuple[str | None, int]]) -> BackupAudit:
    begin = parse_time(info.begin_time) or time_from_backup_id(info.backup_id)
    end = parse_time(info.end_time)
    compression = none_value(info.fields.get("compression"))
    cluster = info.fields.get("cluster_size", "")
    error = none_value(info.fields.get("error"))
    reaches = first_missing = None
    ratio = None
    grade: Grade
    if info.status in _RUNNING:
        grade = "in_progress"
        if begin is None or age(ctx.now, begin) > ctx.thresholds.backup_max_age_seconds:  # type: ignore[operator]
            # barman-cloud uploads backup.info as STARTED first; still STARTED a day
            # later means the process was killed before it could write FAILED.
            grade = "failed"
            error = error or "still STARTED after the backup age limit: the backup process died"
    elif not info.done:
        grade = "failed"
    elif info.begin_wal is None or info.end_wal is None or end is None:
        grade = "unreadable"
        found.append(Finding(codes.METADATA_UNREADABLE, (
            f"backup.info of {info.backup_id} is DONE but lacks begin_wal/end_wal/end_time"), DETECTOR,
            {"key": info.info_key}))
    else:
        grade, reaches, first_missing = grade_done(ctx, found, info, end)
        same = [size for comp, size in earlier if comp == compression and size > 0]
        window = same[-ctx.thresholds.size_trend_window:]
        if window and stored > 0:
            ratio = stored / statistics.median(window)
    return BackupAudit(
        info.backup_id, info.status, grade, info.timeline,
        info.begin_wal.name if info.begin_wal else None, info.end_wal.name if info.end_wal else None,
        begin, end, age(ctx.now, end or begin), stored, int(cluster) if cluster.isdigit() else None,
        compression, ratio, reaches, first_missing, error,
    )


def grade_done(ctx: Context, found: list[Finding], info: BaseBackup,
               end: datetime) -> tuple[Grade, str | None, str | None]:
    assert info.begin_wal is not None and info.end_wal is not None
    chain = ctx.chain(info.begin_wal)
    reach = ctx.index.walk(chain)
    size = ctx.index.segment_size
    reaches = SegmentName(reach[0], reach[1], size).name if reach else None
    stop = reach[1] if reach else info.begin_wal.number - 1
    later = ctx.index.next_on_chain(chain, stop)
    first_missing = None
    if later is not None:
        missing_tli = next((link.timeline for link in chain
                            if link.first <= stop + 1 and (link.last is None or stop + 1 <= link.last)),
                           chain[-1].timeline)
        first_missing = SegmentName(missing_tli, stop + 1, size).name
    if reach is not None and reach[1] >= info.end_wal.number:
        # PITR-capable means reaching the newest WAL of the whole archive: a chain that
        # cannot switch timelines (missing .history) stops short of it.
        return ("pitr_capable" if reach == ctx.newest else "consistent"), reaches, first_missing
    # WAL between begin and end is missing.
    if later is None:
        # Nothing after it: the end WAL was not archived yet. On an idle database it may
        # never be (plugin-barman-cloud#652); give it the WAL grace period.
        if (ctx.now - end).total_seconds() <= ctx.thresholds.wal_max_age_seconds:
            found.append(_pending(info, reaches, None, f"end WAL {info.end_wal.name} is not archived yet"))
            return "waiting_for_wal", reaches, None
        why = (f"end WAL {info.end_wal.name} was never archived (idle database? "
               f"plugin-barman-cloud#652)")
    else:
        if any(g.timeline == missing_tli and g.first.number <= stop + 1 <= g.last.number
               for g in ctx.uploading):
            found.append(_pending(info, reaches, first_missing, f"segment {first_missing} is still uploading"))
            return "waiting_for_wal", reaches, first_missing
        why = f"segment {first_missing} is missing"
    found.append(Finding(codes.BACKUP_NOT_CONSISTENT, (
        f"base backup {info.backup_id} ({info.begin_wal.name}..{info.end_wal.name}) cannot be restored: {why}"),
        DETECTOR, {"backup_id": info.backup_id, "begin_wal": info.begin_wal.name,
                   "end_wal": info.end_wal.name, "reaches": reaches, "first_missing": first_missing}))
    return "not_consistent", reaches, first_missing


def _pending(info: BaseBackup, reaches: str | None, first_missing: str | None, why: str) -> Finding:
    """A backup that a disaster right now could not use, within the WAL grace period."""
    return Finding(BACKUP_WAL_PENDING, (
        f"base backup {info.backup_id} ({info.begin_wal.name}..{info.end_wal.name}) cannot be restored yet: {why}"),
        DETECTOR, {"backup_id": info.backup_id, "begin_wal": info.begin_wal.name, "end_wal": info.end_wal.name,
                   "reaches": reaches, "first_missing": first_missing})


def _consecutive_failures(audits: list[BackupAudit]) -> list[BackupAudit]:
    """The most recent backups that did not complete, newest first, up to the newest DONE one."""
    run: list[BackupAudit] = []
    for audit in reversed(audits):
        if audit.grade in ("in_progress", "unreadable"):
            continue  # may still finish / unknown (reported as METADATA_UNREADABLE)
        if audit.status == "DONE":
            break
        run.append(audit)
    return run


def _ordered_ids(meta: ArchiveMetadata) -> list[str]:
    def key(backup_id: str) -> tuple[datetime, str]:
        info = meta.backups.get(backup_id)
        when = (parse_time(info.begin_time) if info else None) or time_from_backup_id(backup_id)
        return (when or datetime.min.replace(tzinfo=timezone.utc), backup_id)

    return sorted(meta.archive.backup_ids, key=key)
