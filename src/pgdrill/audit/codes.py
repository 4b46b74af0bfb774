"""Which finding codes ``pgdrill audit`` emits, and which of them mean "could not verify".

The codes themselves are defined once, in ``pgdrill.findings.codes``.
"""

from __future__ import annotations

from pgdrill.findings.codes import (
    BACKUP_CONSECUTIVE_FAILURES,
    BACKUP_FAILED,
    BACKUP_NOT_CONSISTENT,
    BACKUP_SIZE_DROP,
    BACKUP_STALE,
    BACKUP_WAL_PENDING,
    METADATA_UNREADABLE,
    REPLICA_ACCESS_ERROR,
    REPLICA_LAG,
    REPLICA_OBJECT_MISMATCH,
    REPLICA_OBJECT_MISSING,
    RETENTION_NOT_COVERED,
    S3_ACCESS_ERROR,
    TIMELINE_HISTORY_MISSING,
    WAL_GAP,
    WAL_GAP_PENDING,
    WAL_STALE,
)

#: Codes meaning "this part could not be verified": they make the audit exit 2, never 0.
UNVERIFIED_CODES = frozenset({S3_ACCESS_ERROR, METADATA_UNREADABLE, REPLICA_ACCESS_ERROR})

#: Every code the audit can emit (metrics publish a count for each, zero included).
AUDIT_CODES = (
    BACKUP_STALE, BACKUP_FAILED, BACKUP_CONSECUTIVE_FAILURES, BACKUP_SIZE_DROP, BACKUP_NOT_CONSISTENT,
    BACKUP_WAL_PENDING, WAL_STALE, WAL_GAP, WAL_GAP_PENDING, TIMELINE_HISTORY_MISSING, RETENTION_NOT_COVERED, S3_ACCESS_ERROR,
    METADATA_UNREADABLE, REPLICA_OBJECT_MISSING, REPLICA_OBJECT_MISMATCH, REPLICA_LAG, REPLICA_ACCESS_ERROR,
)
