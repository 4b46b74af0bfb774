"""``pgdrill audit``: ADR 007's backup alerts as one read-only check of a barman-cloud archive.

>>> from pgdrill.audit import AuditThresholds
>>> AuditThresholds().backup_max_age_hours
25.0

``run_audit`` lists ``<serverName>/`` once and fetches only ``backup.info`` and ``.history``
objects; ``analyze`` is the pure judgement (used by drills on listings they already have).
"""

from .analyze import ArchiveMetadata, analyze
from .cli import audit_main, build_parser
from .codes import AUDIT_CODES, UNVERIFIED_CODES
from .render import exit_code, render_prometheus, render_table, write_prometheus
from .report import AuditReport, BackupAudit, Recoverability, WalAudit
from .run import run_audit
from .thresholds import AuditThresholds, load_thresholds

__all__ = [
    "AUDIT_CODES", "ArchiveMetadata", "AuditReport", "AuditThresholds", "BackupAudit", "Recoverability",
    "UNVERIFIED_CODES", "WalAudit", "analyze", "audit_main", "build_parser", "exit_code", "load_thresholds",
    "render_prometheus", "render_table", "run_audit", "write_prometheus",
]
