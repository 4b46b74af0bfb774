"""Findings: what a detector concluded, with a stable code, a severity and its evidence.

The codes themselves are one static table, ``pgdrill.findings.codes``; the constants are
re-exported here so ``from pgdrill.findings import WAL_GAP, Finding`` reads naturally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgdrill.findings.codes import (
    ARCHIVE_NOT_EMPTY,
    ARCHIVING_STALLED_AFTER_FAILOVER,
    ARCHIVING_STALLED_AFTER_RESTART,
    BACKUP_CONSECUTIVE_FAILURES,
    BACKUP_FAILED,
    BACKUP_NOT_CONSISTENT,
    BACKUP_SIZE_DROP,
    BACKUP_STALE,
    BACKUP_UNUSABLE,
    BACKUP_WAL_PENDING,
    CODES,
    CONTENT_MISMATCH,
    COULD_NOT_VERIFY,
    DATA_CHECKSUM_FAILURE,
    DATABASE_UNREACHABLE,
    FAILOVER_COMMITS_LOST,
    HEAP_CORRUPTION,
    INDEX_CORRUPTION,
    METADATA_UNREADABLE,
    OWNERSHIP_MISMATCH,
    RECOVERY_FAILED,
    RECOVERY_TARGET_UNREACHED,
    RECOVERY_WINDOW_BROKEN,
    REPLAY_STOPPED_EARLY,
    REPLICA_ACCESS_ERROR,
    REPLICA_LAG,
    REPLICA_OBJECT_MISMATCH,
    REPLICA_OBJECT_MISSING,
    RETENTION_NOT_APPLIED,
    RETENTION_NOT_COVERED,
    RPO_EXCEEDED,
    RTO_EXCEEDED,
    S3_ACCESS_ERROR,
    SILENT_DATA_LOSS,
    TARGET_OVERSHOT,
    TIMELINE_HISTORY_MISSING,
    UNARCHIVED_WAL_LOST_AT_FAILOVER,
    WAL_GAP,
    WAL_GAP_PENDING,
    WAL_SEGMENT_UNREADABLE,
    WAL_STALE,
    FindingCode,
    Severity,
)


def catalogue() -> dict[str, FindingCode]:
    return dict(CODES)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    detector: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown finding code {self.code!r}; known: {', '.join(sorted(CODES))}")

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def remedy(self) -> str:
        return CODES[self.code].remedy

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "detector": self.detector,
            "message": self.message,
            "remedy": self.remedy,
            "evidence": self.evidence,
        }


__all__ = ["CODES", "Finding", "FindingCode", "Severity", "catalogue",
           "ARCHIVE_NOT_EMPTY", "ARCHIVING_STALLED_AFTER_FAILOVER", "ARCHIVING_STALLED_AFTER_RESTART", "BACKUP_CONSECUTIVE_FAILURES", "BACKUP_FAILED", "BACKUP_NOT_CONSISTENT", "BACKUP_SIZE_DROP", "BACKUP_STALE", "BACKUP_UNUSABLE", "BACKUP_WAL_PENDING", "CONTENT_MISMATCH", "COULD_NOT_VERIFY", "DATABASE_UNREACHABLE", "DATA_CHECKSUM_FAILURE", "FAILOVER_COMMITS_LOST", "HEAP_CORRUPTION", "INDEX_CORRUPTION", "METADATA_UNREADABLE", "OWNERSHIP_MISMATCH", "RECOVERY_FAILED", "RECOVERY_TARGET_UNREACHED", "RECOVERY_WINDOW_BROKEN", "REPLAY_STOPPED_EARLY", "REPLICA_ACCESS_ERROR", "REPLICA_LAG", "REPLICA_OBJECT_MISMATCH", "REPLICA_OBJECT_MISSING", "RETENTION_NOT_APPLIED", "RETENTION_NOT_COVERED", "RPO_EXCEEDED", "RTO_EXCEEDED", "S3_ACCESS_ERROR", "SILENT_DATA_LOSS", "TARGET_OVERSHOT", "TIMELINE_HISTORY_MISSING", "UNARCHIVED_WAL_LOST_AT_FAILOVER", "WAL_GAP", "WAL_GAP_PENDING", "WAL_SEGMENT_UNREADABLE", "WAL_STALE"]
