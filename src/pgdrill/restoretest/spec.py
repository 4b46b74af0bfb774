"""What a restore-test is asked to do: the source archive, how to reach it, which backup, which
checks.  From the command line or from ``[[restore_test]]`` tables in ``pgdrill.toml``, loaded
strictly (an unknown key or a wrong type is one line naming the file and the key).

Credentials are named by environment-variable *names* (``access_key_id_env``...), never held as
values, so a config file or a report can never leak them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pgdrill.archive.store import S3Credentials, S3Location, check_endpoint_url
from pgdrill.errors import ConfigError, UsageError
from pgdrill.postgres.wal import Lsn


@dataclass(frozen=True)
class UserCheck:
    """SQL run on the restored cluster with one expectation.  The result is hashed in the
    evidence, never printed: it is production data."""

    name: str
    sql: str
    database: str = "postgres"
    min_rows: int | None = None
    """At least this many rows returned (or, for a single ``count(*)``-like value, that value)."""
    equals: str | None = None
    """The first column of the first row, compared as text."""
    max_age_seconds: float | None = None
    """The first column of the first row is a timestamp: end of the archive minus it must not
    exceed this (the application's own observed RPO)."""

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.min_rows, self.equals, self.max_age_seconds)) != 1:
            raise ConfigError(f"restore_test check {self.name!r}: give exactly one of min_rows, equals, "
                              "max_age_seconds")


@dataclass(frozen=True)
class OwnerCheck:
    """ADR 007 step 4: the application's tables are owned by its role, not by postgres."""

    table: str
    """``schema.table``"""
    owner: str
    database: str = "postgres"


@dataclass(frozen=True)
class RestoreTestSpec:
    location: str
    """``s3://BUCKET/PREFIX/SERVERNAME`` of the production archive (read-only)."""
    name: str | None = None
    endpoint_url: str | None = None
    access_key_id_env: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_env: str = "AWS_SECRET_ACCESS_KEY"
    backup_id: str | None = None
    target_time: str | None = None
    target_lsn: str | None = None
    target_name: str | None = None
    wal_max_parallel: int = 1
    """The ObjectStore's ``wal.maxParallel``: WAL segments fetched at once during replay."""
    rto_seconds: float | None = None
    """Bound for the measured RTO (default: ``targets.rto_seconds``)."""
    target_check: bool = True
    """Also make PostgreSQL itself confirm the end: a second recovery to an LSN inside the newest
    archived segment, which it refuses when WAL is missing (costs a second restore)."""
    checks: tuple[UserCheck, ...] = ()
    owners: tuple[OwnerCheck, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.wal_max_parallel < 1:
            raise ConfigError(f"restore_test wal_max_parallel must be >= 1, got {self.wal_max_parallel}")
        if sum(x is not None for x in (self.target_time, self.target_lsn, self.target_name)) > 1:
            raise ConfigError("restore_test: give at most one of target_time, target_lsn, target_name")
        if self.target_lsn is not None:
            try:
                Lsn.parse(self.target_lsn)
            except ValueError:
                raise ConfigError(f"restore_test target_lsn {self.target_lsn!r} is not an LSN (e.g. 0/9000060)") \
                    from None

    @property
    def source(self) -> S3Location:
        return S3Location.parse(self.location)

    @property
    def server_name(self) -> str:
        return self.source.prefix.rsplit("/", 1)[-1]

    @property
    def display_name(self) -> str:
        return self.name or f"restore-test-{self.server_name}"

    @property
    def pitr(self) -> bool:
        return any(x is not None for x in (self.target_time, self.target_lsn, self.target_name))

    def check_input(self) -> None:
        """Bad input before anything is read: one ``UsageError`` line naming the fix."""
        if not self.source.prefix:
            raise UsageError(f"{self.location} names no serverName: expected s3://BUCKET/PREFIX/SERVERNAME")
        check_endpoint_url(self.endpoint_url, "endpoint_url")
        self.credentials()

    def credentials(self) -> S3Credentials:
        """Read the named variables now; a missing one is a one-line error naming the variable."""
        missing = [n for n in (self.access_key_id_env, self.secret_access_key_env) if not os.environ.get(n)]
        if missing:
            raise UsageError(f"set {' and '.join(missing)} to the read-only credentials of {self.location} "
                             "(or name other variables with --access-key-env/--secret-key-env)")
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        return S3Credentials(os.environ[self.access_key_id_env], os.environ[self.secret_access_key_env], region)

    def to_dict(self) -> dict[str, Any]:
        """For the report: names of the credential variables, never their values."""
        return {
            "kind": "restore_test", "name": self.display_name, "location": self.location,
            "endpoint_url": self.endpoint_url, "credentials_from": [self.access_key_id_env, self.secret_access_key_env],
            "backup_id": self.backup_id, "target_time": self.target_time, "target_lsn": self.target_lsn,
            "target_name": self.target_name, "wal_max_parallel": self.wal_max_parallel,
            "rto_seconds": self.rto_seconds, "target_check": self.target_check,
            "checks": [{"name": c.name, "database": c.database,
                        "expectation": next(k for k in ("min_rows", "equals", "max_age_seconds")
                                            if getattr(c, k) is not None)} for c in self.checks],
            "owners": [{"table": o.table, "owner": o.owner, "database": o.database} for o in self.owners],
        }
