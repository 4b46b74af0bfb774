"""The drill's view through ``pgdrill audit``: what the alerts would have said about the archive.

Recorded before and after fault injection, so a report shows whether monitoring alone would
have caught the fault.  Informational: the drill's verdict comes from its own detectors.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pgdrill.audit.run import run_audit
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.backends.base import Backend, ClusterHandle

# A drill audits right after pg_stat_archiver caught up: nothing is "still uploading", so a
# hole next to the newest segment is a gap, not an upload in flight (the CLI's default grace).
DRILL_THRESHOLDS = AuditThresholds(wal_grace_segments=0)


def audit_archive(backend: Backend, source: ClusterHandle) -> dict[str, Any]:
    report = run_audit(backend.destination.child(source.server_name), backend.store, DRILL_THRESHOLDS,
                       datetime.now(timezone.utc))
    data = report.to_dict()
    data["base_backups"] = {k: v for k, v in data["base_backups"].items() if k != "items"}
    return data
