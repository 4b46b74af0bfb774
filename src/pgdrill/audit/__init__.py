"""``pgdrill audit``: ADR 007's backup alerts as one read-only check of a barman-cloud archive.

>>> from pgdrill.audit import AuditThresholds
>>> AuditThresholds().backup_max_age_hours
25.0

``run_audit`` lists ``<serverName>/`` once and fetches only ``backup.info`` and ``.history``
objects; ``analyze`` is the pure judgement (used by drills on listings they already have).
"""

from __future__ import annotations

from pgdrill._lazy import lazy_names

_PUBLIC = {
    "ArchiveMetadata": "pgdrill.audit.analyze",
    "analyze": "pgdrill.audit.analyze",
    "audit_main": "pgdrill.audit.cli",
    "build_parser": "pgdrill.audit.cli",
    "AUDIT_CODES": "pgdrill.audit.codes",
    "UNVERIFIED_CODES": "pgdrill.audit.codes",
    "exit_code": "pgdrill.audit.render",
    "render_prometheus": "pgdrill.audit.render",
    "render_table": "pgdrill.audit.render",
    "write_prometheus": "pgdrill.audit.render",
    "AuditReport": "pgdrill.audit.report",
    "BackupAudit": "pgdrill.audit.report",
    "Recoverability": "pgdrill.audit.report",
    "WalAudit": "pgdrill.audit.report",
    "run_audit": "pgdrill.audit.run",
    "AuditThresholds": "pgdrill.audit.thresholds",
    "load_thresholds": "pgdrill.audit.thresholds",
}
__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
