"""Which backup a restore-test restores, where its recovery must end, and which PostgreSQL
major it needs: a pure function of the audit's analysis of the source archive.

The audit already graded every backup (consistent or not, how far it reaches) and knows the
WAL chain; the restore-test takes those answers instead of reading the archive a second way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgdrill.archive.catalog import ArchiveCatalog, BaseBackup
from pgdrill.archive.continuity import ChainLink, Gap, find_gaps, recovery_chain
from pgdrill.audit.formatting import parse_time
from pgdrill.audit.report import AuditReport, BackupAudit
from pgdrill.errors import UsageError
from pgdrill.postgres.wal import Lsn, SegmentName
from pgdrill.restoretest.spec import RestoreTestSpec


@dataclass(frozen=True)
class Candidate:
    """A backup the restore-test may restore, with where a recovery from it must end."""

    backup: BaseBackup
    audit: BackupAudit
    chain: tuple[ChainLink, ...]
    end_segment: SegmentName | None
    """Newest archived segment along the chain (past any hole): where "the end" is."""
    gaps: tuple[Gap, ...]
    """Holes along the chain after the backup's begin WAL: recovery stops at the first."""
    wal_segments: int
    """Archived segments a recovery to the end reads (present ones, begin WAL to end)."""
    wal_bytes: int
    """Their stored (possibly compressed) size."""

    @property
    def pg_major(self) -> int | None:
        return pg_major(self.backup)

    def to_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup.backup_id, "grade": self.audit.grade,
                "begin_wal": self.audit.begin_wal, "end_wal": self.audit.end_wal,
                "end_time": self.backup.end_time, "stored_bytes": self.audit.stored_bytes,
                "cluster_bytes": self.audit.cluster_bytes, "pg_major": self.pg_major,
                "end_of_archive": self.end_segment.name if self.end_segment else None,
                "gaps": [g.to_dict() for g in self.gaps], "wal_segments": self.wal_segments,
                "wal_stored_bytes": self.wal_bytes}


@dataclass(frozen=True)
class Skipped:
    """A newer backup the restore-test did not take, and why (BACKUP_UNUSABLE when a disaster
    would have reached for it: DONE but not restorable)."""

    audit: BackupAudit
    reason: str
    unusable: bool


@dataclass(frozen=True)
class RestorePlan:
    candidates: tuple[Candidate, ...]
    """Newest first: the first is restored; the next ones are the fallbacks."""
    skipped: tuple[Skipped, ...] = ()
    target_lsn: Lsn | None = None
    target_time: str | None = None
    target_name: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def pitr(self) -> bool:
        return any(x is not None for x in (self.target_lsn, self.target_time, self.target_name))


def pg_major(backup: BaseBackup) -> int | None:
    """PostgreSQL major version from backup.info's ``version`` (server_version_num, e.g. 180006)."""
    raw = backup.fields.get("version", "")
    try:
        number = int(raw)
    except ValueError:
        return None
    return number // 10000 if number >= 100000 else number // 100


def plan_restore(catalog: ArchiveCatalog, report: AuditReport, spec: RestoreTestSpec) -> RestorePlan:
    """Raise a one-line ``UsageError`` when nothing can be restored as asked (no completed backup,
    an unknown backup id, a target outside the recoverable window)."""
    location = spec.location
    audits = {a.backup_id: a for a in report.backups}
    done = [a for a in report.backups if a.status == "DONE" and a.backup_id in catalog.backups]
    if not done:
        raise UsageError(f"{location} has no completed base backup ({len(report.backups)} backup(s) listed): "
                         "check the serverName, or take a backup first")
    target_lsn = Lsn.parse(spec.target_lsn) if spec.target_lsn else None
    target_time = _parse_target_time(spec.target_time) if spec.target_time else None
    if spec.backup_id is not None:
        audit = audits.get(spec.backup_id)
        if audit is None or spec.backup_id not in catalog.backups:
            known = ", ".join(a.backup_id for a in done[-5:])
            raise UsageError(f"backup {spec.backup_id!r} does not exist in {location} (completed: {known})")
        if audit.status != "DONE":
            raise UsageError(f"backup {spec.backup_id!r} in {location} is {audit.status}, not DONE: pick another "
                             "with --backup-id")
        ordered = [audit]
    else:
        ordered = sorted(done, key=_end_key, reverse=True)
    if target_lsn is not None:
        ordered = [a for a in ordered if _backup(catalog, a).end_lsn is None
                   or _backup(catalog, a).end_lsn <= target_lsn]  # type: ignore[operator]
    if target_time is not None:
        ordered = [a for a in ordered if a.end_time is None or a.end_time <= target_time]
    if not ordered:
        raise UsageError(f"no completed backup of {location} ends before the target "
                         f"{spec.target_lsn or spec.target_time}: the target is before the recoverable window")
    _check_target_window(report, spec, target_time, target_lsn)

    skipped: list[Skipped] = []
    candidates: list[Candidate] = []
    for audit in ordered:
        backup = _backup(catalog, audit)
        if not audit.consistent:
            # A disaster would take this backup first (CNPG picks the newest completed one).
            skipped.append(Skipped(audit, f"{audit.backup_id} is DONE but not restorable: grade {audit.grade}"
                                   + (f", first missing WAL {audit.first_missing}" if audit.first_missing else
                                      f", its end WAL {audit.end_wal} is not archived"), True))
            continue
        candidates.append(_candidate(catalog, backup, audit))
    newest = candidates[0].audit if candidates else None
    for audit in report.backups:  # newer attempts that never completed: noted, not unusable
        if audit.status != "DONE" and newest is not None and _end_key(audit) > _end_key(newest):
            skipped.append(Skipped(audit, f"{audit.backup_id} is {audit.status}", False))
    if not candidates:
        raise UsageError(f"no consistent base backup in {location}: "
                         + "; ".join(s.reason for s in skipped[:3]))
    return RestorePlan(tuple(candidates), tuple(skipped), target_lsn, spec.target_time, spec.target_name)


def _candidate(catalog: ArchiveCatalog, backup: BaseBackup, audit: BackupAudit) -> Candidate:
    archive = catalog.archive
    begin = backup.begin_wal
    assert begin is not None  # consistent backups have one
    try:
        chain = recovery_chain(begin, dict(catalog.histories))
    except ValueError:
        chain = [ChainLink(begin.timeline, begin.number, None)]
    end: SegmentName | None = None
    segments = stored = 0
    for link in chain:
        present = archive.segments(link.timeline)
        numbers = [n for n in present if n >= link.first and (link.last is None or n <= link.last)]
        if numbers:
            end = SegmentName(link.timeline, max(numbers), archive.segment_size)
            segments += len(numbers)
            stored += sum(present[n].size for n in numbers)
    return Candidate(backup, audit, tuple(chain), end, tuple(find_gaps(archive, chain)), segments, stored)


def _backup(catalog: ArchiveCatalog, audit: BackupAudit) -> BaseBackup:
    return catalog.backups[audit.backup_id]


def _end_key(audit: BackupAudit) -> tuple[float, str]:
    when = audit.end_time or audit.begin_time
    return (when.timestamp() if when else 0.0, audit.backup_id)


def _parse_target_time(text: str) -> datetime:
    when = parse_time(text)
    if when is None:
        raise UsageError(f"--target-time {text!r} is not a timestamp with a time zone "
                         "(e.g. 2026-12-01T10:00:00Z)")
    return when


def _check_target_window(report: AuditReport, spec: RestoreTestSpec, target_time: datetime | None,
                         target_lsn: Lsn | None) -> None:
    window = report.recoverability
    if window is None or window.latest is None:
        return
    if target_time is not None and target_time > window.latest:
        raise UsageError(f"--target-time {spec.target_time} is after the end of the recoverable window "
                         f"({window.latest.isoformat()}, {window.latest_segment}): pick an earlier time")
    if target_lsn is not None and window.latest_lsn is not None and target_lsn > Lsn.parse(window.latest_lsn):
        raise UsageError(f"--target-lsn {spec.target_lsn} is beyond the end of the recoverable window "
                         f"(LSN {window.latest_lsn}): pick an earlier LSN")
