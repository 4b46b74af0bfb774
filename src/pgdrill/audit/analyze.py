"""The audit's judgement, as a pure function of what was read from the bucket.

No I/O here: ``run_audit`` lists and reads, ``analyze`` decides.  Everything is linear in
the number of listed objects (one index of segment runs per timeline, binary search per
question), so 100,000 WAL objects cost less than listing them.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..archive import ArchivedWal, BaseBackup, ChainLink, Gap, ServerArchive, find_gaps, recovery_chain
from ..findings import WAL_GAP, Finding
from ..wal import SegmentName, TimelineSwitch
from . import codes
from .report import AuditReport, BackupAudit, Grade, Period, Recoverability, WalAudit
from .thresholds import AuditThresholds

DETECTOR = "audit"
#: barman-cloud statuses of a backup that may still finish.
_RUNNING = ("STARTED", "WAITING_FOR_WALS", "SYNCING")


@dataclass(frozen=True)
class ArchiveMetadata:
    """What ``run_audit`` read: the listing plus the small metadata objects."""

    archive: ServerArchive
    backups: Mapping[str, BaseBackup] = field(default_factory=dict)
    """backup_id -> parsed backup.info."""
    unreadable_backups: Mapping[str, str] = field(default_factory=dict)
    """backup_id -> why its backup.info could not be read (already reported)."""
    histories: Mapping[int, list[TimelineSwitch]] = field(default_factory=dict)
    unreadable_histories: frozenset[int] = frozenset()
    stored_bytes: Mapping[str, int] = field(default_factory=dict)
    """backup_id -> sum of the sizes of its objects in the listing."""
    objects_listed: int = 0


def parse_time(text: str | None) -> datetime | None:
    """barman writes ``2026-11-25 04:34:26.120519+00:00``; naive times are taken as UTC."""
    if not text or text == "None":
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def time_from_backup_id(backup_id: str) -> datetime | None:
    try:
        return datetime.strptime(backup_id, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


class WalIndex:
    """Archived complete segments per timeline, as sorted contiguous runs."""

    def __init__(self, archive: ServerArchive):
        self.segment_size = archive.segment_size
        self.objects: dict[int, dict[int, ArchivedWal]] = {}
        for wal in archive.wal:
            if wal.name.kind == "segment" and wal.name.segment is not None:
                self.objects.setdefault(wal.name.timeline, {})[wal.name.segment.number] = wal
        self.numbers: dict[int, list[int]] = {t: sorted(o) for t, o in self.objects.items()}
        self._runs: dict[int, tuple[list[int], list[int]]] = {}
        for tli, numbers in self.numbers.items():
            starts: list[int] = []
            ends: list[int] = []
            for n in numbers:
                if ends and n == ends[-1] + 1:
                    ends[-1] = n
                else:
                    starts.append(n)
                    ends.append(n)
            self._runs[tli] = (starts, ends)

    def count(self) -> int:
        return sum(len(n) for n in self.numbers.values())

    def run_end(self, timeline: int, number: int) -> int | None:
        """Last number of the contiguous run holding ``number``; ``None`` if it is missing."""
        starts, ends = self._runs.get(timeline, ([], []))
        i = bisect.bisect_right(starts, number) - 1
        return ends[i] if i >= 0 and ends[i] >= number else None

    def _newest_in(self, timeline: int, low: int, high: int | None) -> int | None:
        numbers = self.numbers.get(timeline, [])
        i = bisect.bisect_right(numbers, high) if high is not None else len(numbers)
        return numbers[i - 1] if i > 0 and numbers[i - 1] >= low else None

    def _oldest_in(self, timeline: int, low: int, high: int | None) -> int | None:
        numbers = self.numbers.get(timeline, [])
        i = bisect.bisect_left(numbers, low)
        if i < len(numbers) and (high is None or numbers[i] <= high):
            return numbers[i]
        return None

    def walk(self, chain: list[ChainLink]) -> tuple[int, int] | None:
        """(timeline, number) of the last segment replayed from the chain's start without a hole."""
        last: tuple[int, int] | None = None
        for link in chain:
            end = self.run_end(link.timeline, link.first)
            if end is None:
                return last
            if link.last is None or end < link.last:
                return link.timeline, end if link.last is None else min(end, link.last)
            last = (link.timeline, link.last)
        return last

    def newest_on_chain(self, chain: list[ChainLink]) -> tuple[int, int] | None:
        for link in reversed(chain):
            found = self._newest_in(link.timeline, link.first, link.last)
            if found is not None:
                return link.timeline, found
        return None

    def next_on_chain(self, chain: list[ChainLink], after: int) -> tuple[int, int] | None:
        """First archived segment of the chain with a number greater than ``after``."""
        for link in chain:
            if link.last is not None and link.last <= after:
                continue
            found = self._oldest_in(link.timeline, max(link.first, after + 1), link.last)
            if found is not None:
                return link.timeline, found
        return None

    def wal(self, timeline: int, number: int) -> ArchivedWal:
        return self.objects[timeline][number]


def analyze(meta: ArchiveMetadata, thresholds: AuditThresholds, now: datetime, *,
            location: str, endpoint_url: str | None = None,
            findings: tuple[Finding, ...] = ()) -> AuditReport:
    """Grade backups, find gaps and compute the recoverability window.

    :param findings: findings already made while reading (unreadable metadata)
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    archive = meta.archive
    index = WalIndex(archive)
    out: list[Finding] = list(findings)
    ctx = _Context(meta, index, thresholds, now)

    # -- WAL -------------------------------------------------------------------------
    chains = ctx.chains_for_gap_check()
    gaps: dict[tuple[int, int], Gap] = {}
    for chain in chains:
        for gap in find_gaps(archive, chain):
            gaps.setdefault((gap.timeline, gap.first.number), gap)
    lost, uploading = [], []
    for gap in sorted(gaps.values(), key=lambda g: (g.first.number, g.timeline)):
        (uploading if ctx.is_uploading(gap, chains) else lost).append(gap)
    ctx.uploading = uploading
    newest = ctx.newest
    newest_wal = index.wal(*newest) if newest else None
    wal_age = (now - newest_wal.last_modified).total_seconds() if newest_wal else None
    wal = WalAudit(
        segments=index.count(),
        timelines=tuple(archive.timelines()),
        newest_segment=newest_wal.name.segment.name if newest_wal and newest_wal.name.segment else None,
        newest_modified=newest_wal.last_modified if newest_wal else None,
        age_seconds=wal_age,
        history_files=tuple(sorted(w.key.rsplit("/", 1)[-1] for w in archive.wal if w.name.kind == "history")),
        partial_files=tuple(sorted(w.key.rsplit("/", 1)[-1] for w in archive.partials())),
        checked_from=ctx.checked_from.name if ctx.checked_from else None,
        gaps=tuple(lost),
        uploading=tuple(uploading),
    )
    for gap in lost:
        out.append(Finding(WAL_GAP, (
            f"timeline {gap.timeline}: {gap.count} segment(s) {gap.first.name}..{gap.last.name} missing "
            f"with later WAL in the archive; recovery stops before {gap.first.name}"),
            DETECTOR, {"gap": gap.to_dict()}))
    if newest_wal is None:
        out.append(Finding(codes.WAL_STALE, f"no WAL segment archived under {location}", DETECTOR, {}))
    elif wal_age is not None and wal_age > thresholds.wal_max_age_seconds:
        out.append(Finding(codes.WAL_STALE, (
            f"newest WAL segment {wal.newest_segment} was archived {_human(wal_age)} ago "
            f"(limit {_human(thresholds.wal_max_age_seconds)})"), DETECTOR,
            {"newest_segment": wal.newest_segment, "age_seconds": round(wal_age, 1),
             "limit_seconds": thresholds.wal_max_age_seconds}))
    out.extend(ctx.missing_histories())

    # -- base backups ----------------------------------------------------------------
    audits = ctx.grade_backups()
    out.extend(ctx.findings)
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
            f"newest completed base backup {newest_done.backup_id} ended {_human(backup_age)} ago "
            f"(limit {_human(thresholds.backup_max_age_seconds)})"), DETECTOR,
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
            f"base backup {newest_done.backup_id} stores {_bytes(newest_done.stored_bytes)}, "
            f"{newest_done.size_ratio:.0%} of the median of the previous ones "
            f"(limit {thresholds.size_drop_ratio:.0%})"), DETECTOR,
            {"backup_id": newest_done.backup_id, "stored_bytes": newest_done.stored_bytes,
             "ratio": round(newest_done.size_ratio, 3), "compression": newest_done.compression}))

    # -- recoverability ----------------------------------------------------------------
    recoverability = ctx.recoverability(audits)
    if not recoverability.retention_covered:
        out.append(Finding(codes.RETENTION_NOT_COVERED, (
            f"the last {thresholds.retention_days:g} days are not all recoverable: "
            + (", ".join(f"{_t(p.start)} .. {_t(p.end)}" for p in recoverability.uncovered)
               or "no consistent base backup")), DETECTOR,
            {"uncovered": [p.to_dict() for p in recoverability.uncovered],
             "retention_days": thresholds.retention_days}))

    return AuditReport(
        location=location, server_name=archive.server_name, endpoint_url=endpoint_url,
        audited_at=now, thresholds=thresholds, findings=tuple(out),
        objects_listed=meta.objects_listed, backups=tuple(audits), consecutive_failures=consecutive,
        newest_completed=newest_done.backup_id if newest_done else None, backup_age_seconds=backup_age,
        wal=wal, recoverability=recoverability,
    )


class _Context:
    """The shared state of one analysis (index, chains, grace rules)."""

    def __init__(self, meta: ArchiveMetadata, index: WalIndex, thresholds: AuditThresholds, now: datetime):
        self.meta = meta
        self.index = index
        self.thresholds = thresholds
        self.now = now
        self.findings: list[Finding] = []
        self.uploading: list[Gap] = []
        self.checked_from: SegmentName | None = None
        self.newest: tuple[int, int] | None = max(
            ((t, n[-1]) for t, n in index.numbers.items() if n), default=None)

    # -- chains ------------------------------------------------------------------------

    def chain(self, start: SegmentName) -> list[ChainLink]:
        try:
            return recovery_chain(start, dict(self.meta.histories))
        except ValueError:
            # Cannot follow a switch without its history (reported separately): stay on
            # the start's timeline, which is what PostgreSQL would do too.
            return [ChainLink(start.timeline, start.number, None)]

    def completed(self) -> list[BaseBackup]:
        return sorted((b for b in self.meta.backups.values() if b.done and b.begin_wal is not None),
                      key=lambda b: (b.begin_wal.timeline, b.begin_wal.number))  # type: ignore[union-attr]

    def chains_for_gap_check(self) -> list[list[ChainLink]]:
        """From the oldest completed backup to the newest WAL, per timeline a recovery can end on."""
        starts: dict[int, SegmentName] = {}
        for backup in self.completed():
            assert backup.begin_wal is not None
            chain = self.chain(backup.begin_wal)
            target = chain[-1].timeline
            if target not in starts or backup.begin_wal.number < starts[target].number:
                starts[target] = backup.begin_wal
        if not starts and self.index.numbers:
            # No usable backup: still check the WAL that is there, from its oldest segment.
            tli = min(self.index.numbers)
            starts[tli] = SegmentName(tli, self.index.numbers[tli][0], self.index.segment_size)
        firsts = list(starts.values())
        self.checked_from = min(firsts, key=lambda s: (s.number, s.timeline)) if firsts else None
        return [self.chain(s) for s in firsts]

    def is_uploading(self, gap: Gap, chains: list[list[ChainLink]]) -> bool:
        """WAL-G's missing-uploading: a hole near the head with freshly uploaded WAL after it."""
        for chain in chains:
            if not any(link.timeline == gap.timeline for link in chain):
                continue
            head = self.index.newest_on_chain(chain)
            after = self.index.next_on_chain(chain, gap.last.number)
            if head is None or after is None:
                continue
            if head[1] - gap.last.number > self.thresholds.wal_grace_segments:
                return False
            age = (self.now - self.index.wal(*after).last_modified).total_seconds()
            return age <= self.thresholds.wal_max_age_seconds
        return False

    def missing_histories(self) -> list[Finding]:
        completed = self.completed()
        base = min((b.begin_wal.timeline for b in completed if b.begin_wal),
                   default=min(self.index.numbers, default=1))
        found = []
        for tli in sorted(self.index.numbers):
            if tli > base and tli not in self.meta.histories and tli not in self.meta.unreadable_histories:
                found.append(Finding(codes.TIMELINE_HISTORY_MISSING, (
                    f"timeline {tli} has {len(self.index.numbers[tli])} archived segment(s) but no "
                    f"{tli:08X}.history: recovery from timeline {base} cannot switch to it"), DETECTOR,
                    {"timeline": tli}))
        return found

    # -- backups -----------------------------------------------------------------------

    def grade_backups(self) -> list[BackupAudit]:
        meta = self.meta
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
                    _age(self.now, when), stored, None, None, None, None, None,
                    meta.unreadable_backups.get(backup_id, "no backup.info: barman-cloud cannot restore it"))))
                continue
            audit = self.grade(info, stored, done_sizes)
            if info.done:
                done_sizes.append((audit.compression, stored))
            rows.append((audit.begin_time, backup_id, audit))
        return [row[2] for row in rows]

    def grade(self, info: BaseBackup, stored: int, earlier: list[tuple[str | None, int]]) -> BackupAudit:
        begin = parse_time(info.begin_time) or time_from_backup_id(info.backup_id)
        end = parse_time(info.end_time)
        compression = _none(info.fields.get("compression"))
        cluster = info.fields.get("cluster_size", "")
        error = _none(info.fields.get("error"))
        reaches = first_missing = None
        ratio = None
        grade: Grade
        if info.status in _RUNNING:
            grade = "in_progress"
            if begin is None or _age(self.now, begin) > self.thresholds.backup_max_age_seconds:  # type: ignore[operator]
                # barman-cloud uploads backup.info as STARTED first; still STARTED a day
                # later means the process was killed before it could write FAILED.
                grade = "failed"
                error = error or "still STARTED after the backup age limit: the backup process died"
        elif not info.done:
            grade = "failed"
        elif info.begin_wal is None or info.end_wal is None or end is None:
            grade = "unreadable"
            self.findings.append(Finding(codes.METADATA_UNREADABLE, (
                f"backup.info of {info.backup_id} is DONE but lacks begin_wal/end_wal/end_time"), DETECTOR,
                {"key": info.info_key}))
        else:
            grade, reaches, first_missing = self.grade_done(info, end)
            same = [size for comp, size in earlier if comp == compression and size > 0]
            window = same[-self.thresholds.size_trend_window:]
            if window and stored > 0:
                ratio = stored / statistics.median(window)
        return BackupAudit(
            info.backup_id, info.status, grade, info.timeline,
            info.begin_wal.name if info.begin_wal else None, info.end_wal.name if info.end_wal else None,
            begin, end, _age(self.now, end or begin), stored, int(cluster) if cluster.isdigit() else None,
            compression, ratio, reaches, first_missing, error,
        )

    def grade_done(self, info: BaseBackup, end: datetime) -> tuple[Grade, str | None, str | None]:
        assert info.begin_wal is not None and info.end_wal is not None
        chain = self.chain(info.begin_wal)
        reach = self.index.walk(chain)
        size = self.index.segment_size
        reaches = SegmentName(reach[0], reach[1], size).name if reach else None
        stop = reach[1] if reach else info.begin_wal.number - 1
        later = self.index.next_on_chain(chain, stop)
        first_missing = None
        if later is not None:
            missing_tli = next((link.timeline for link in chain
                                if link.first <= stop + 1 and (link.last is None or stop + 1 <= link.last)),
                               chain[-1].timeline)
            first_missing = SegmentName(missing_tli, stop + 1, size).name
        if reach is not None and reach[1] >= info.end_wal.number:
            # PITR-capable means reaching the newest WAL of the whole archive: a chain that
            # cannot switch timelines (missing .history) stops short of it.
            return ("pitr_capable" if reach == self.newest else "consistent"), reaches, first_missing
        # WAL between begin and end is missing.
        if later is None:
            # Nothing after it: the end WAL was not archived yet. On an idle database it may
            # never be (plugin-barman-cloud#652); give it the WAL grace period.
            if (self.now - end).total_seconds() <= self.thresholds.wal_max_age_seconds:
                return "waiting_for_wal", reaches, None
            why = (f"end WAL {info.end_wal.name} was never archived (idle database? "
                   f"plugin-barman-cloud#652)")
        else:
            if any(g.timeline == missing_tli and g.first.number <= stop + 1 <= g.last.number
                   for g in self.uploading):
                return "waiting_for_wal", reaches, first_missing
            why = f"segment {first_missing} is missing"
        self.findings.append(Finding(codes.BACKUP_NOT_CONSISTENT, (
            f"base backup {info.backup_id} ({info.begin_wal.name}..{info.end_wal.name}) cannot be restored: {why}"),
            DETECTOR, {"backup_id": info.backup_id, "begin_wal": info.begin_wal.name,
                       "end_wal": info.end_wal.name, "reaches": reaches, "first_missing": first_missing}))
        return "not_consistent", reaches, first_missing

    # -- recoverability ----------------------------------------------------------------

    def recoverability(self, audits: list[BackupAudit]) -> Recoverability:
        size = self.index.segment_size
        window_start = self.now - timedelta(seconds=self.thresholds.retention_seconds)
        periods: list[Period] = []
        latest: SegmentName | None = None
        for audit in audits:
            if not audit.consistent or audit.reaches is None or audit.end_time is None:
                continue
            reach = SegmentName.parse(audit.reaches, size)
            reached_at = self.index.wal(reach.timeline, reach.number).last_modified
            periods.append(Period(audit.end_time, max(audit.end_time, reached_at)))
            if latest is None or (reach.number, reach.timeline) > (latest.number, latest.timeline):
                latest = reach
        merged = _merge(periods)
        if not merged:
            return Recoverability(None, None, None, None, (), window_start, False,
                                  (Period(window_start, self.now),), "no consistent base backup")
        end = max(p.end for p in merged)
        oldest_known = min(
            [b.begin_time for b in audits if b.begin_time is not None]
            + [w.last_modified for w in self.meta.archive.wal], default=merged[0].start)
        note = None
        start = window_start
        if oldest_known > window_start:
            # A young archive cannot cover the whole window yet; judge it from its first
            # recoverable point instead of alerting for its first 30 days.
            start = merged[0].start
            note = f"archive younger than the retention window: judged from {_t(start)}"
        uncovered = _complement(merged, start, end)
        assert latest is not None
        return Recoverability(
            earliest=merged[0].start, latest=end, latest_segment=latest.name,
            latest_lsn=str(latest.end_lsn), periods=tuple(merged), retention_start=window_start,
            retention_covered=not uncovered, uncovered=tuple(uncovered), note=note,
        )


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


def _age(now: datetime, when: datetime | None) -> float | None:
    return None if when is None else (now - when).total_seconds()


def _none(value: str | None) -> str | None:
    return None if value in (None, "", "None") else value


def _human(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def _t(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


human_duration = _human
human_bytes = _bytes
format_time = _t
