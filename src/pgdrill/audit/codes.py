"""Finding codes of ``pgdrill audit`` (stable: alert rules and drills key on them)."""

from __future__ import annotations

from ..findings import WAL_GAP, Severity, catalogue, register_code


def _code(code: str, severity: Severity, title: str, remedy: str) -> str:
    # Another module (a drill detector) may register the same code first; importing both
    # must not fail, but the meaning must be the same.
    existing = catalogue().get(code)
    if existing is not None:
        if existing.severity is not severity:
            raise ValueError(f"finding code {code} registered twice with different severities")
        return code
    return register_code(code, severity, title, remedy)


BACKUP_STALE = _code(
    "BACKUP_STALE", Severity.CRITICAL,
    "The newest completed base backup is older than the limit (or there is none)",
    "Check the ScheduledBackup and the latest Backup objects (kubectl get backup -n <ns>); take a "
    "manual backup. Recovery needs ever more WAL replay while no new base backup completes.",
)
BACKUP_FAILED = _code(
    "BACKUP_FAILED", Severity.INFO,
    "A recent base backup did not complete",
    "Read the error in its backup.info and the Backup object's status.error.",
)
BACKUP_CONSECUTIVE_FAILURES = _code(
    "BACKUP_CONSECUTIVE_FAILURES", Severity.CRITICAL,
    "The most recent base backups failed in a row",
    "Base backups are failing systematically: read status.error of the Backup objects and the "
    "plugin sidecar logs (credentials, bucket, disk, network).",
)
BACKUP_SIZE_DROP = _code(
    "BACKUP_SIZE_DROP", Severity.WARNING,
    "The newest base backup is far smaller than its predecessors",
    "Check that it contains the whole cluster (tablespaces, data.tar size) and that nothing was "
    "dropped; a compression change also explains it.",
)
BACKUP_NOT_CONSISTENT = _code(
    "BACKUP_NOT_CONSISTENT", Severity.CRITICAL,
    "A completed base backup cannot be restored: WAL between its begin and end is missing",
    "A recovery from it fails before consistency. If the end WAL was never archived (idle "
    "database, plugin-barman-cloud#652) run SELECT pg_switch_wal() on the primary; otherwise "
    "take a new base backup.",
)
WAL_STALE = _code(
    "WAL_STALE", Severity.CRITICAL,
    "The newest archived WAL segment is older than the limit (or there is none)",
    "WAL archiving is failing or stuck: check the ContinuousArchiving condition of the Cluster and "
    "pg_stat_archiver (failed_count, last_failed_wal). Writes since then are not protected.",
)
TIMELINE_HISTORY_MISSING = _code(
    "TIMELINE_HISTORY_MISSING", Severity.CRITICAL,
    "WAL of a timeline is archived but its .history file is not",
    "Recovery cannot follow this timeline without the history file; copy it from the primary's "
    "pg_wal into the archive's wals/ folder.",
)
RETENTION_NOT_COVERED = _code(
    "RETENTION_NOT_COVERED", Severity.WARNING,
    "Not every point of the retention window can be recovered",
    "Some part of the window has no consistent base backup with gap-free WAL after it; see the "
    "uncovered periods and the gaps.",
)
S3_ACCESS_ERROR = _code(
    "S3_ACCESS_ERROR", Severity.CRITICAL,
    "The object store could not be read (endpoint, bucket, credentials or permissions)",
    "Fix what the message names; until then nothing about the backups is known.",
)
METADATA_UNREADABLE = _code(
    "METADATA_UNREADABLE", Severity.CRITICAL,
    "A backup.info or timeline history file could not be read or parsed",
    "Inspect the object named in the evidence; barman-cloud-restore cannot use it either.",
)

#: Codes meaning "this part could not be verified": they make the audit exit 2, never 0.
UNVERIFIED_CODES = frozenset({S3_ACCESS_ERROR, METADATA_UNREADABLE})

#: Every code the audit can emit (metrics publish a count for each, zero included).
AUDIT_CODES = (
    BACKUP_STALE, BACKUP_FAILED, BACKUP_CONSECUTIVE_FAILURES, BACKUP_SIZE_DROP, BACKUP_NOT_CONSISTENT,
    WAL_STALE, WAL_GAP, TIMELINE_HISTORY_MISSING, RETENTION_NOT_COVERED, S3_ACCESS_ERROR,
    METADATA_UNREADABLE,
)
