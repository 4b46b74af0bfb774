"""What ``pgdrill audit`` found: one frozen report that every output renders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pgdrill.archive.continuity import Gap
from pgdrill.archive.growth import ArchiveGrowth
from pgdrill.audit.codes import UNVERIFIED_CODES
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.findings import Finding, Severity

if TYPE_CHECKING:  # replica.py builds on this module; the report only holds its result
    from pgdrill.audit.replica import ReplicaReport

Grade = Literal[
    "pitr_capable",  # consistent, and every segment from its begin WAL to the newest WAL is there
    "consistent",  # restorable, but a hole stops replay before the newest WAL
    "waiting_for_wal",  # end WAL not archived yet, still within the grace period
    "not_consistent",  # WAL between begin and end is missing: cannot be restored
    "in_progress",  # STARTED recently (barman-cloud uploads backup.info as STARTED first)
    "failed",  # FAILED, or STARTED long ago (killed), or no backup.info
    "unreadable",  # backup.info could not be read
]

#: Statuses that mean "this backup did not complete" for the consecutive-failure count.
FAILED_GRADES = ("failed",)


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class BackupAudit:
    """One base backup (``base/<backup_id>/``) and its grade."""

    backup_id: str
    status: str
    """``status`` from backup.info (DONE, FAILED, STARTED ...), ``NO_INFO`` or ``UNREADABLE``."""
    grade: Grade
    timeline: int | None
    begin_wal: str | None
    end_wal: str | None
    begin_time: datetime | None
    end_time: datetime | None
    age_seconds: float | None
    """Since ``end_time`` (or ``begin_time`` for backups that did not end)."""
    stored_bytes: int
    """Sum of the objects under ``base/<backup_id>/`` in the listing. barman-cloud leaves
    ``size`` empty in backup.info, so this is the size the ADR says to compare."""
    cluster_bytes: int | None
    compression: str | None
    size_ratio: float | None
    """``stored_bytes`` over the median of the earlier completed backups (same compression)."""
    reaches: str | None
    """Last segment a recovery from this backup replays without a hole (``None``: not even the begin WAL)."""
    first_missing: str | None
    """First segment that recovery from this backup would miss, when it exists later in the archive."""
    error: str | None = None

    @property
    def consistent(self) -> bool:
        return self.grade in ("pitr_capable", "consistent")

    @property
    def pitr_capable(self) -> bool:
        return self.grade == "pitr_capable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id, "status": self.status, "grade": self.grade,
            "consistent": self.consistent, "pitr_capable": self.pitr_capable,
            "timeline": self.timeline, "begin_wal": self.begin_wal, "end_wal": self.end_wal,
            "begin_time": iso(self.begin_time), "end_time": iso(self.end_time),
            "age_seconds": _round(self.age_seconds), "stored_bytes": self.stored_bytes,
            "cluster_bytes": self.cluster_bytes, "compression": self.compression,
            "size_ratio": _round(self.size_ratio), "reaches": self.reaches,
            "first_missing": self.first_missing, "error": self.error,
        }


@dataclass(frozen=True)
class WalAudit:
    segments: int
    timelines: tuple[int, ...]
    newest_segment: str | None
    newest_modified: datetime | None
    age_seconds: float | None
    history_files: tuple[str, ...]
    partial_files: tuple[str, ...]
    checked_from: str | None
    """First segment of the gap check: the oldest completed backup's begin WAL."""
    gaps: tuple[Gap, ...]
    """Missing segments with later WAL present: lost."""
    uploading: tuple[Gap, ...]
    """Missing segments among the newest ones, with recent WAL after them: probably still uploading."""

    @property
    def missing_segments(self) -> int:
        return sum(g.count for g in self.gaps)

    @property
    def uploading_segments(self) -> int:
        return sum(g.count for g in self.uploading)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segments": self.segments, "timelines": list(self.timelines),
            "newest_segment": self.newest_segment, "newest_modified": iso(self.newest_modified),
            "age_seconds": _round(self.age_seconds), "history_files": list(self.history_files),
            "partial_files": list(self.partial_files), "checked_from": self.checked_from,
            "gaps": [g.to_dict() for g in self.gaps], "missing_segments": self.missing_segments,
            "uploading": [g.to_dict() for g in self.uploading], "uploading_segments": self.uploading_segments,
        }


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"start": iso(self.start), "end": iso(self.end)}


@dataclass(frozen=True)
class Recoverability:
    """Which points in time a recovery can reach without a hole.

    Times of WAL are upload times (object LastModified): the data in a segment was written
    at or before its upload, so ``latest`` is an upper bound, accurate to ``archive_timeout``.
    """

    earliest: datetime | None
    """End of the oldest consistent backup: no recovery can stop before that."""
    latest: datetime | None
    latest_segment: str | None
    latest_lsn: str | None
    periods: tuple[Period, ...]
    retention_start: datetime
    retention_covered: bool
    uncovered: tuple[Period, ...]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "earliest": iso(self.earliest), "latest": iso(self.latest),
            "latest_segment": self.latest_segment, "latest_lsn": self.latest_lsn,
            "periods": [p.to_dict() for p in self.periods], "retention_start": iso(self.retention_start),
            "retention_covered": self.retention_covered, "uncovered": [p.to_dict() for p in self.uncovered],
            "note": self.note,
        }


@dataclass(frozen=True)
class AuditReport:
    location: str
    server_name: str
    endpoint_url: str | None
    audited_at: datetime
    thresholds: AuditThresholds
    findings: tuple[Finding, ...]
    objects_listed: int = 0
    backups: tuple[BackupAudit, ...] = ()
    consecutive_failures: int | None = None
    newest_completed: str | None = None
    backup_age_seconds: float | None = None
    wal: WalAudit | None = None
    recoverability: Recoverability | None = None
    growth: ArchiveGrowth | None = None
    """Sizes, WAL rates and the storage projection (docs/audit.md, "Growth and rate")."""
    replica: ReplicaReport | None = None
    """The replica bucket's comparison with this archive (``--replica``; docs/audit.md, "Replica bucket")."""
    duration_seconds: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """Everything the audit checks could be checked (no S3 or metadata error)."""
        return not any(f.code in UNVERIFIED_CODES for f in self.findings)

    @property
    def alerting(self) -> tuple[Finding, ...]:
        """Verified problems: warning or critical findings that are not "could not verify"."""
        return tuple(f for f in self.findings
                     if f.severity is not Severity.INFO and f.code not in UNVERIFIED_CODES)

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def status(self) -> Literal["healthy", "alert", "could_not_verify"]:
        # A verified problem wins over an unverified part: it is actionable now, and the
        # unverified part still shows (pgdrill_audit_success 0, the findings).
        if self.alerting:
            return "alert"
        return "healthy" if self.verified else "could_not_verify"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "pgdrill-audit/v1",
            "location": self.location, "server_name": self.server_name,
            "endpoint_url": self.endpoint_url, "audited_at": iso(self.audited_at),
            "status": self.status, "verified": self.verified,
            "thresholds": self.thresholds.to_dict(),
            "objects_listed": self.objects_listed, "duration_seconds": round(self.duration_seconds, 3),
            "base_backups": {
                "count": len(self.backups),
                "by_status": _count(b.status for b in self.backups),
                "newest_completed": self.newest_completed,
                "newest_completed_age_seconds": _round(self.backup_age_seconds),
                "consecutive_failures": self.consecutive_failures,
                "items": [b.to_dict() for b in self.backups],
            },
            "wal": None if self.wal is None else self.wal.to_dict(),
            "recoverability": None if self.recoverability is None else self.recoverability.to_dict(),
            "growth": None if self.growth is None else self.growth.to_dict(),
            "replica": None if self.replica is None else self.replica.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "notes": list(self.notes),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts
