"""Alert thresholds of ``pgdrill audit``, with ADR 007's values as defaults.

Loaded strictly (unknown keys, wrong types and out-of-range values are errors that name the
file and key), so a typo in ``[audit]`` can never silently fall back to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from pgdrill import strict
from pgdrill.archive.store import S3Credentials, S3Location, check_endpoint_url
from pgdrill.errors import ConfigError, UsageError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_env_name(value: str, where: str) -> None:
    """A credential option holds a variable's NAME.  The value is not echoed: whoever put the
    secret itself there must not find it in a log line."""
    if not _ENV_NAME.fullmatch(value):
        raise ConfigError(f"{where} must name an environment variable (letters, digits and _, not starting "
                          "with a digit), not hold the credential itself")


@dataclass(frozen=True)
class ReplicaSettings:
    """``[audit.replica]``: the copy of the archive in another organisation's bucket (ADR 007's TODO),
    read with its own credentials, named here by environment variable, never by value."""

    location: str | None = None
    """``s3://<bucket>/<prefix>/<serverName>`` of the replica; unset: no replica check."""
    endpoint_url: str | None = None
    region: str | None = None
    """Default: AWS_DEFAULT_REGION / AWS_REGION, else us-east-1 (as for the primary)."""
    access_key_id_env: str = "PGDRILL_REPLICA_AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "PGDRILL_REPLICA_AWS_SECRET_ACCESS_KEY"
    session_token_env: str | None = None
    max_lag_minutes: float = 10.0
    """ADR 007's WAL age limit: the replica may be as far behind the primary as the primary may be
    behind PostgreSQL (docs/audit.md, "Replica bucket")."""
    compare_etags: bool = True
    """Compare MD5 ETags too (when both are one); false if a bucket uses SSE-KMS or SSE-C, whose
    ETags are not the body's MD5."""

    def __post_init__(self) -> None:
        if self.max_lag_minutes <= 0:
            raise ConfigError(f"audit.replica.max_lag_minutes must be > 0, got {self.max_lag_minutes!r}")
        for name in ("access_key_id_env", "secret_access_key_env", "session_token_env"):
            if getattr(self, name) is not None:
                check_env_name(getattr(self, name), f"audit.replica.{name}")
        try:
            if self.location is not None:
                replica_location(self.location, "audit.replica.location")
            check_endpoint_url(self.endpoint_url, "audit.replica.endpoint_url")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def max_lag_seconds(self) -> float:
        return self.max_lag_minutes * 60

    def credentials(self, environ: Mapping[str, str] | None = None) -> S3Credentials:
        """The replica's credentials from the variables named; never the primary's AWS_* (the point
        is a separate identity).  A missing variable is one ``UsageError`` line naming it."""
        env = os.environ if environ is None else environ
        names = {"access-key": ("access_key_id", self.access_key_id_env),
                 "secret-key": ("secret_access_key", self.secret_access_key_env)}
        if self.session_token_env:
            names["session-token"] = ("session_token", self.session_token_env)
        missing = [(option, key, var) for option, (key, var) in names.items() if not env.get(var)]
        if missing:
            raise UsageError(
                "replica credentials missing: set " + " and ".join(var for _, _, var in missing)
                + " in the environment (or name other variables with "
                + ", ".join(f"--replica-{o}-env / audit.replica.{k}_env" for o, k, _ in missing) + ")")
        region = self.region or env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
        return S3Credentials(env[self.access_key_id_env], env[self.secret_access_key_env], region,
                             env[self.session_token_env] if self.session_token_env else None,
                             f"{self.access_key_id_env}/{self.secret_access_key_env}")


def replica_location(url: str, where: str) -> S3Location:
    try:
        location = S3Location.parse(url)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if not location.prefix.rsplit("/", 1)[-1]:
        raise UsageError(f"{where} = {url!r} names no serverName: expected s3://<bucket>/<prefix>/<serverName>")
    return location


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
    replica: ReplicaSettings = field(default_factory=ReplicaSettings)
    """``[audit.replica]``: where and how to read the replica bucket (not a threshold: left out of
    ``to_dict``, shown in the report's ``replica`` part)."""

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
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "replica"}


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
