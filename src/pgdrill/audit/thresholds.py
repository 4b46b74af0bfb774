"""Alert thresholds of ``pgdrill audit``, with ADR 007's values as defaults.

Loaded strictly (unknown keys, wrong types and out-of-range values are errors that name the
file and key), so a typo in ``[audit]`` can never silently fall back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from pgdrill import strict
from pgdrill.errors import ConfigError


@dataclass(frozen=True)
class AuditThresholds:
    backup_max_age_hours: float = 25.0
    """ADR 007: alert when the newest completed base backup is older than 25 h (daily schedule + 1 h)."""
    wal_max_age_minutes: float = 10.0
    """ADR 007: alert when the newest archived WAL segment is older than 10 min (archive_timeout 5 min).
    Also the grace period for WAL still being uploaded (see ``wal_grace_segments``)."""
    backup_consecutive_failures: int = 2
    """ADR 007: alert when this many of the most recent base backups failed in a row."""
    retention_days: float = 30.0
    """ADR 007: every point of the last 30 days must be recoverable."""
    size_drop_ratio: float = 0.5
    """The newest completed backup is suspicious when smaller than this fraction of the median
    of its predecessors (same compression)."""
    size_trend_window: int = 5
    """How many earlier completed backups the size median is taken over."""
    wal_grace_segments: int = 8
    """A hole among the newest this-many segments (parallel archiving uploads up to
    ``wal.maxParallel`` segments at once) may be an upload in flight..."""
    wal_gap_grace_seconds: float = 120.0
    """... but only while the WAL after it was uploaded less than this long ago: then it is the
    WARNING ``WAL_GAP_PENDING``, past it the CRITICAL ``WAL_GAP``.  One 16 MiB segment uploads in
    seconds on a healthy link and in about a minute at 2 Mbit/s; two minutes covers a slow link
    without letting a real hole stay silent (docs/audit.md)."""

    def __post_init__(self) -> None:
        for name in ("backup_max_age_hours", "wal_max_age_minutes", "retention_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"audit.{name} must be > 0, got {getattr(self, name)!r}")
        if self.backup_consecutive_failures < 1:
            raise ConfigError(f"audit.backup_consecutive_failures must be >= 1, got {self.backup_consecutive_failures!r}")
        if not 0 < self.size_drop_ratio < 1:
            raise ConfigError(f"audit.size_drop_ratio must be between 0 and 1, got {self.size_drop_ratio!r}")
        if self.size_trend_window < 1:
            raise ConfigError(f"audit.size_trend_window must be >= 1, got {self.size_trend_window!r}")
        if self.wal_gap_grace_seconds < 0:
            raise ConfigError(f"audit.wal_gap_grace_seconds must be >= 0, got {self.wal_gap_grace_seconds!r}")
        if self.wal_grace_segments < 0:
            raise ConfigError(f"audit.wal_grace_segments must be >= 0, got {self.wal_grace_segments!r}")

    @property
    def backup_max_age_seconds(self) -> float:
        return self.backup_max_age_hours * 3600

    @property
    def wal_max_age_seconds(self) -> float:
        return self.wal_max_age_minutes * 60

    @property
    def retention_seconds(self) -> float:
        return self.retention_days * 86400

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_thresholds(mapping: Any, where: str) -> AuditThresholds:
    """Build thresholds from the ``[audit]`` table of a config file (strict).

    :param mapping: the parsed table (``{}`` gives the ADR defaults)
    :param where: names the source in error messages, e.g. ``"pgdrill.toml"``
    """
    try:
        return strict.load(AuditThresholds, mapping, where, "audit")
    except ConfigError as exc:
        message = str(exc)
        # Range errors from __post_init__ do not know the file yet.
        raise ConfigError(message if message.startswith(f"{where}:") else f"{where}: {message}") from None
