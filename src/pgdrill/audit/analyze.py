"""The audit's judgement, as a pure function of what was read from the bucket.

No I/O here: ``run_audit`` reads (``pgdrill.archive.catalog.read_catalog``), ``analyze``
decides, in three parts: WAL (``wal_checks``), base backups (``backup_checks``) and
recoverability (``recoverability``), sharing one ``Context``; it also measures growth and rate
(``pgdrill.archive.growth``).  Everything is linear in the number of listed objects (one index
of segment runs per timeline, binary search per question), so 100,000 WAL objects cost less
than listing them.
"""

from __future__ import annotations

from datetime import datetime

from pgdrill.archive.growth import archive_growth
from pgdrill.audit.backup_checks import audit_backups
from pgdrill.audit.context import ArchiveMetadata, Context
from pgdrill.audit.recoverability import audit_recoverability
from pgdrill.audit.report import AuditReport
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.audit.wal_checks import audit_wal
from pgdrill.audit.walindex import WalIndex
from pgdrill.findings import Finding

__all__ = ["ArchiveMetadata", "analyze"]


def analyze(meta: ArchiveMetadata, thresholds: AuditThresholds, now: datetime, *,
            location: str, endpoint_url: str | None = None,
            findings: tuple[Finding, ...] = ()) -> AuditReport:
    """Grade backups, find gaps and compute the recoverability window.

    :param findings: findings already made while reading (unreadable metadata)
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = Context(meta, WalIndex(meta.archive), thresholds, now)
    out: list[Finding] = list(findings)
    wal, wal_findings = audit_wal(ctx, location)
    out.extend(wal_findings)
    backups = audit_backups(ctx, location)
    out.extend(backups.findings)
    recoverability, retention_findings = audit_recoverability(ctx, backups.audits)
    out.extend(retention_findings)
    newest_done = backups.newest_done
    return AuditReport(
        location=location, server_name=meta.archive.server_name, endpoint_url=endpoint_url,
        audited_at=now, thresholds=thresholds, findings=tuple(out),
        objects_listed=meta.objects_listed, backups=tuple(backups.audits),
        consecutive_failures=backups.consecutive_failures,
        newest_completed=newest_done.backup_id if newest_done else None, backup_age_seconds=backups.backup_age,
        wal=wal, recoverability=recoverability,
        # Growth judges nothing (no finding): it is figures for the table, the metrics and
        # the restore test's RTO forecast, from the same listing.
        growth=archive_growth(meta, now, thresholds.retention_days),
    )
