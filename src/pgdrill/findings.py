"""Findings: what a detector concluded, with a stable code, a severity and its evidence.

Codes are part of pgdrill's public contract (scenarios expect them, alert rules and
reports key on them): add new ones, never rename or reuse one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class FindingCode:
    code: str
    severity: Severity
    title: str
    remedy: str


_CATALOGUE: dict[str, FindingCode] = {}


def _register(code: str, severity: Severity, title: str, remedy: str) -> str:
    _CATALOGUE[code] = FindingCode(code, severity, title, remedy)
    return code


WAL_GAP = _register(
    "WAL_GAP", Severity.CRITICAL,
    "WAL segment(s) missing from the archive",
    "Recovery cannot replay past the first missing segment. Take a new base backup now, and find why "
    "the segment is missing (lifecycle rule, manual deletion, failed upload).",
)
SILENT_DATA_LOSS = _register(
    "SILENT_DATA_LOSS", Severity.CRITICAL,
    "Recovery reported success but committed writes are missing",
    "Do not trust this recovery. Compare the archive with the ledger; recover with "
    "recovery_target_lsn so PostgreSQL refuses an incomplete replay.",
)
REPLAY_STOPPED_EARLY = _register(
    "REPLAY_STOPPED_EARLY", Severity.CRITICAL,
    "The archive holds WAL beyond the point where the recovered cluster stopped replaying",
    "Replay stopped at a gap or a damaged segment; the later WAL in the bucket was never applied.",
)
RECOVERY_TARGET_UNREACHED = _register(
    "RECOVERY_TARGET_UNREACHED", Severity.CRITICAL,
    "PostgreSQL refused to finish recovery: the target LSN is not reachable from the archive",
    "The archive cannot reach the last committed write. Treat the newest data as lost until found.",
)
RECOVERY_FAILED = _register(
    "RECOVERY_FAILED", Severity.CRITICAL,
    "The recovered cluster did not come up",
    "Read the server log evidence; the backup or the archive is not usable as it is.",
)
RPO_EXCEEDED = _register(
    "RPO_EXCEEDED", Severity.CRITICAL,
    "Data loss window larger than the RPO target",
    "Shorten archive_timeout, fix archiving, or revise the RPO target.",
)
RTO_EXCEEDED = _register(
    "RTO_EXCEEDED", Severity.WARNING,
    "Recovery took longer than the RTO target",
    "Take base backups more often (less WAL to replay) or revise the RTO target.",
)
OWNERSHIP_MISMATCH = _register(
    "OWNERSHIP_MISMATCH", Severity.WARNING,
    "A table in the recovered cluster has a different owner than in the source",
    "Applications connecting as their own role will fail; check roles and grants after recovery.",
)
ARCHIVE_NOT_EMPTY = _register(
    "ARCHIVE_NOT_EMPTY", Severity.CRITICAL,
    "The serverName already has WAL in the bucket (\"Expected empty archive\")",
    "Use a new serverName for the new cluster (postgres-cluster-vN); never reuse one.",
)
TARGET_OVERSHOT = _register(
    "TARGET_OVERSHOT", Severity.CRITICAL,
    "Point-in-time recovery went past its target: writes after the target are present",
    "The recovery target was not honoured; check recovery_target_* settings and the chosen backup.",
)
WAL_SEGMENT_UNREADABLE = _register(
    "WAL_SEGMENT_UNREADABLE", Severity.CRITICAL,
    "Replay stopped inside a WAL segment that is in the archive: the segment is damaged",
    "Compare the object with its checksum at upload time; take a new base backup now.",
)
BACKUP_UNUSABLE = _register(
    "BACKUP_UNUSABLE", Severity.CRITICAL,
    "A base backup listed as completed could not be restored",
    "Remove or re-take the damaged backup; recovery needs an older backup and longer WAL replay.",
)
RETENTION_NOT_APPLIED = _register(
    "RETENTION_NOT_APPLIED", Severity.WARNING,
    "The retention policy left backups or WAL it should have removed",
    "Check the ObjectStore retentionPolicy and the plugin's retention logs; storage grows unbounded.",
)
RECOVERY_WINDOW_BROKEN = _register(
    "RECOVERY_WINDOW_BROKEN", Severity.CRITICAL,
    "A point inside the retention window cannot be recovered",
    "Retention removed WAL or a backup still needed; take a new base backup and fix the policy.",
)
COULD_NOT_VERIFY = _register(
    "COULD_NOT_VERIFY", Severity.CRITICAL,
    "A verification could not run, so nothing is known about what it checks",
    "Fix the cause in the evidence and run the drill again; this is not a pass.",
)


def catalogue() -> dict[str, FindingCode]:
    return dict(_CATALOGUE)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    detector: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in _CATALOGUE:
            raise ValueError(f"unknown finding code {self.code!r}; known: {', '.join(sorted(_CATALOGUE))}")

    @property
    def severity(self) -> Severity:
        return _CATALOGUE[self.code].severity

    @property
    def remedy(self) -> str:
        return _CATALOGUE[self.code].remedy

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "detector": self.detector,
            "message": self.message,
            "remedy": self.remedy,
            "evidence": self.evidence,
        }


def register_code(code: str, severity: Severity, title: str, remedy: str) -> str:
    """Add a finding code from another module (audit, integrity); codes must be unique."""
    if code in _CATALOGUE:
        raise ValueError(f"finding code {code!r} is already registered")
    return _register(code, severity, title, remedy)
