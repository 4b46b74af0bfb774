"""Typed builders for every Kubernetes object pgdrill creates.

Each builder is a frozen dataclass whose ``to_dict()`` returns the manifest as plain data
(ready for the API client or for YAML).  There are no string templates: a field name lives
in exactly one place, and the tests validate every builder's output against the real CRDs.

Facts and their sources are in ``shared/reference/cnpg-notes.md`` (CNPG v1.30.0,
plugin-barman-cloud v0.14.0); the ones that shape these builders are repeated where used.
Names and labels (``Meta``, ``dns_label``, ``LABEL_*``) live in ``meta.py`` and are re-exported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pgdrill.backends.kubernetes.meta import LABEL_MANAGED_BY as LABEL_MANAGED_BY
from pgdrill.backends.kubernetes.meta import LABEL_RUN_ID as LABEL_RUN_ID
from pgdrill.backends.kubernetes.meta import MANAGED_BY as MANAGED_BY
from pgdrill.backends.kubernetes.meta import Meta as Meta
from pgdrill.backends.kubernetes.meta import check_name as check_name
from pgdrill.backends.kubernetes.meta import dns_label as dns_label
from pgdrill.backends.kubernetes.meta import obj as _obj

PLUGIN_NAME = "barman-cloud.cloudnative-pg.io"
CNPG_API = "postgresql.cnpg.io/v1"
BARMAN_API = "barmancloud.cnpg.io/v1"

#: ADR 007: base backups daily at 02:00 UTC.  CNPG schedules have six fields, seconds first
#: (CNPG docs/src/backup.md), so the five-field "0 2 * * *" would mean something else.
ADR_SCHEDULE = "0 0 2 * * *"

#: Keys of the S3 credentials Secret, as in the plugin's MinIO example (PLUGIN web/docs/usage.md).
ACCESS_KEY_ID = "ACCESS_KEY_ID"
ACCESS_SECRET_KEY = "ACCESS_SECRET_KEY"

WalCompression = Literal["bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]
DataCompression = Literal["bzip2", "gzip", "lz4", "snappy"]


# --- core objects -------------------------------------------------------------------------


@dataclass(frozen=True)
class Namespace:
    meta: Meta

    def to_dict(self) -> dict[str, Any]:
        return _obj("v1", "Namespace", self.meta)


@dataclass(frozen=True)
class S3CredentialsSecret:
    """The Secret the ObjectStore (and MinIO) read the S3 keys from.

    The values never appear in ``repr`` and ``redacted()`` is what ``pgdrill plan`` prints.
    """

    meta: Meta
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return _obj("v1", "Secret", self.meta, type="Opaque",
                    stringData={ACCESS_KEY_ID: self.access_key_id, ACCESS_SECRET_KEY: self.secret_access_key})

    def redacted(self) -> dict[str, Any]:
        hidden = "<generated at run time, never printed>"
        return _obj("v1", "Secret", self.meta, type="Opaque",
                    stringData={ACCESS_KEY_ID: hidden, ACCESS_SECRET_KEY: hidden})


@dataclass(frozen=True)
class MinioVolumeClaim:
    """MinIO's data survives a scale-to-zero (the S3 outage fault), so no emptyDir."""

    meta: Meta
    size: str = "1Gi"

    def to_dict(self) -> dict[str, Any]:
        return _obj("v1", "PersistentVolumeClaim", self.meta, spec={
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": self.size}},
        })


@dataclass(frozen=True)
class MinioDeployment:
    """Single-replica MinIO in the drill namespace, as the plugin's own e2e runs it.

    (PLUGIN test/e2e/internal/objectstore/minio.go: Deployment, ``server /data``, port 9000,
    credentials from Secret ``minio``, a 1Gi RWO PVC.)
    """

    meta: Meta
    image: str
    secret_name: str
    claim_name: str
    replicas: int = 1

    def to_dict(self) -> dict[str, Any]:
        selector = {"app.kubernetes.io/name": "minio", LABEL_RUN_ID: self.meta.run_id}
        pod_labels = {**self.meta.labels, **selector}

        def secret_env(name: str, key: str) -> dict[str, Any]:
            return {"name": name, "valueFrom": {"secretKeyRef": {"name": self.secret_name, "key": key}}}

        return _obj("apps/v1", "Deployment", self.meta, spec={
            "replicas": self.replicas,
            "selector": {"matchLabels": selector},
            # Recreate: two pods must never share the RWO volume during the outage fault's restore.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [{
                        "name": "minio",
                        "image": self.image,
                        "args": ["server", "/data"],
                        "ports": [{"containerPort": 9000, "name": "s3"}],
                        "env": [secret_env("MINIO_ROOT_USER", ACCESS_KEY_ID),
                                secret_env("MINIO_ROOT_PASSWORD", ACCESS_SECRET_KEY)],
                        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": 9000},
                                           "periodSeconds": 2},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": self.claim_name}}],
                },
            },
        })


@dataclass(frozen=True)
class MinioService:
    meta: Meta
    port: int = 9000

    def to_dict(self) -> dict[str, Any]:
        return _obj("v1", "Service", self.meta, spec={
            "selector": {"app.kubernetes.io/name": "minio", LABEL_RUN_ID: self.meta.run_id},
            "ports": [{"name": "s3", "port": self.port, "targetPort": 9000}],
        })


# --- barman-cloud plugin ------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectStore:
    """``barmancloud.cnpg.io/v1`` ObjectStore.

    ``serverName`` is deliberately absent: the plugin forbids it here (CRD CEL rule
    ``!has(self.serverName)``) and takes it from the Cluster's plugin parameters instead.
    """

    meta: Meta
    destination_path: str
    credentials_secret: str
    endpoint_url: str | None = None
    wal_compression: WalCompression | None = "gzip"
    data_compression: DataCompression | None = None
    wal_max_parallel: int | None = None
    retention_policy: str | None = None
    """e.g. ``"30d"`` (ADR 007); ``None`` keeps every backup, which drills want."""

    def __post_init__(self) -> None:
        if not self.destination_path.startswith("s3://"):
            raise ValueError(f"destinationPath must be an s3:// URL, got {self.destination_path!r}")
        if self.retention_policy is not None and not re.fullmatch(r"[1-9][0-9]*[dwm]", self.retention_policy):
            raise ValueError(f"retentionPolicy {self.retention_policy!r}: expected e.g. 30d, 4w, 12m")

    def to_dict(self) -> dict[str, Any]:
        configuration: dict[str, Any] = {"destinationPath": self.destination_path}
        if self.endpoint_url:
            configuration["endpointURL"] = self.endpoint_url
        configuration["s3Credentials"] = {
            "accessKeyId": {"name": self.credentials_secret, "key": ACCESS_KEY_ID},
            "secretAccessKey": {"name": self.credentials_secret, "key": ACCESS_SECRET_KEY},
        }
        wal: dict[str, Any] = {}
        if self.wal_compression:
            wal["compression"] = self.wal_compression
        if self.wal_max_parallel:
            wal["maxParallel"] = self.wal_max_parallel
        if wal:
            configuration["wal"] = wal
        if self.data_compression:
            configuration["data"] = {"compression": self.data_compression}
        spec: dict[str, Any] = {"configuration": configuration}
        if self.retention_policy:
            spec["retentionPolicy"] = self.retention_policy
        return _obj(BARMAN_API, "ObjectStore", self.meta, spec=spec)


# --- CNPG Cluster -------------------------------------------------------------------------


@dataclass(frozen=True)
class PluginArchiver:
    """A Cluster's ``spec.plugins`` entry that archives WAL and takes backups via the plugin."""

    object_store: str
    server_name: str

    def to_dict(self) -> dict[str, Any]:
        # serverName set explicitly (it defaults to the Cluster name): a recovered cluster must
        # never archive into its source's prefix ("Expected empty archive", plugin issue #350).
        return {"name": PLUGIN_NAME, "isWALArchiver": True,
                "parameters": {"barmanObjectName": self.object_store, "serverName": self.server_name}}


@dataclass(frozen=True)
class RecoveryTargetSpec:
    """CNPG ``bootstrap.recovery.recoveryTarget``: at most one target.

    CNPG's admission webhook (not the CRD schema) requires ``backupID`` for ``targetName``,
    ``targetXID`` and ``targetImmediate`` (CNPG docs/src/recovery.md), so this class refuses
    those without one instead of letting the apiserver say so at drill time.
    """

    target_time: str | None = None
    target_lsn: str | None = None
    target_name: str | None = None
    target_xid: str | None = None
    target_immediate: bool | None = None
    backup_id: str | None = None
    exclusive: bool | None = None
    target_tli: str | None = None

    def __post_init__(self) -> None:
        targets = [n for n, v in (("targetTime", self.target_time), ("targetLSN", self.target_lsn),
                                  ("targetName", self.target_name), ("targetXID", self.target_xid),
                                  ("targetImmediate", self.target_immediate)) if v not in (None, False)]
        if len(targets) > 1:
            raise ValueError(f"recoveryTarget takes one target, got {', '.join(targets)}")
        if targets and targets[0] in ("targetName", "targetXID", "targetImmediate") and not self.backup_id:
            raise ValueError(f"recoveryTarget.{targets[0]} needs backupID (CNPG requires it)")
        if self.target_lsn is not None and not re.fullmatch(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}", self.target_lsn):
            raise ValueError(f"targetLSN {self.target_lsn!r} is not an LSN like 0/3000060")

    @property
    def empty(self) -> bool:
        return not self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        pairs = (("backupID", self.backup_id), ("targetTLI", self.target_tli), ("targetTime", self.target_time),
                 ("targetLSN", self.target_lsn), ("targetName", self.target_name), ("targetXID", self.target_xid),
                 ("targetImmediate", self.target_immediate), ("exclusive", self.exclusive))
        return {k: v for k, v in pairs if v is not None}


@dataclass(frozen=True)
class InitdbBootstrap:
    database: str = "app"
    owner: str = "app"
    data_checksums: bool = True
    """``initdb -k`` (CNPG's default is off), as the local backend's initdb: without page checksums
    the physical detector cannot vouch for a recovered cluster's pages."""

    def to_dict(self) -> dict[str, Any]:
        initdb: dict[str, Any] = {"database": self.database, "owner": self.owner}
        if self.data_checksums:
            initdb["dataChecksums"] = True
        return {"initdb": initdb}


@dataclass(frozen=True)
class RecoveryBootstrap:
    """Recover from the source's archive through an ``externalClusters`` plugin entry.

    The plugin reads ``<destinationPath>/<source_server_name>/`` from ``object_store``
    (PLUGIN web/docs/usage.md).  ``bootstrap.recovery.backup`` is not used: it stopped
    working with the plugin (CNPG issue #7989), ``source`` is the documented way.
    """

    object_store: str
    source_server_name: str
    source_alias: str = "origin"
    target: RecoveryTargetSpec = field(default_factory=RecoveryTargetSpec)
    database: str = "app"
    owner: str = "app"

    def to_dict(self) -> dict[str, Any]:
        recovery: dict[str, Any] = {"source": self.source_alias, "database": self.database, "owner": self.owner}
        if not self.target.empty:
            recovery["recoveryTarget"] = self.target.to_dict()
        return {"recovery": recovery}

    def external_cluster(self) -> dict[str, Any]:
        return {"name": self.source_alias, "plugin": {
            "name": PLUGIN_NAME,
            "parameters": {"barmanObjectName": self.object_store, "serverName": self.source_server_name},
        }}


@dataclass(frozen=True)
class Cluster:
    """``postgresql.cnpg.io/v1`` Cluster: a source (initdb) or a recovery (``postgres-cluster-vN``)."""

    meta: Meta
    bootstrap: InitdbBootstrap | RecoveryBootstrap
    archiver: PluginArchiver | None
    instances: int = 1
    storage_size: str = "1Gi"
    image_name: str | None = None
    archive_timeout: str | None = "5min"
    """ADR 007: ``archive_timeout`` 5 minutes (also CNPG's default); drills may lower it."""
    superuser_access: bool = True
    """pgdrill connects as ``postgres`` through the operator-managed ``<name>-superuser`` Secret."""
    log_level: str | None = None

    def __post_init__(self) -> None:
        # CNPG derives pod, job and service names from the cluster name (``<name>-1-full-recovery``
        # must fit in 63 characters); 50 keeps a margin.
        check_name(self.meta.name, "cluster name", max_length=50)
        if self.instances < 1:
            raise ValueError("a Cluster needs at least one instance")

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"instances": self.instances}
        if self.image_name:
            spec["imageName"] = self.image_name
        spec["enableSuperuserAccess"] = self.superuser_access
        # The ledger reads each write's commit time from the server (pg_xact_commit_timestamp).
        parameters = {"track_commit_timestamp": "on"}
        if self.archive_timeout:
            parameters["archive_timeout"] = self.archive_timeout
        spec["postgresql"] = {"parameters": parameters}
        spec["bootstrap"] = self.bootstrap.to_dict()
        if isinstance(self.bootstrap, RecoveryBootstrap):
            spec["externalClusters"] = [self.bootstrap.external_cluster()]
        if self.archiver is not None:
            spec["plugins"] = [self.archiver.to_dict()]
        spec["storage"] = {"size": self.storage_size}
        if self.log_level:
            spec["logLevel"] = self.log_level
        return _obj(CNPG_API, "Cluster", self.meta, spec=spec)


# --- backups ------------------------------------------------------------------------------


def _plugin_configuration() -> dict[str, Any]:
    return {"name": PLUGIN_NAME}


@dataclass(frozen=True)
class Backup:
    """On-demand base backup.  ``method`` defaults to ``barmanObjectStore`` in the CRD, so it is
    always set to ``plugin`` explicitly."""

    meta: Meta
    cluster: str
    target: Literal["primary", "prefer-standby"] | None = None

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"cluster": {"name": self.cluster}, "method": "plugin",
                                "pluginConfiguration": _plugin_configuration()}
        if self.target:
            spec["target"] = self.target
        return _obj(CNPG_API, "Backup", self.meta, spec=spec)


@dataclass(frozen=True)
class ScheduledBackup:
    meta: Meta
    cluster: str
    schedule: str = ADR_SCHEDULE
    immediate: bool = False
    suspend: bool = False
    owner_reference: Literal["none", "self", "cluster"] = "self"

    def __post_init__(self) -> None:
        if len(self.schedule.split()) != 6:
            raise ValueError(f"CNPG schedules have six fields (seconds first), got {self.schedule!r}")

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"cluster": {"name": self.cluster}, "schedule": self.schedule,
                                "backupOwnerReference": self.owner_reference, "method": "plugin",
                                "pluginConfiguration": _plugin_configuration()}
        if self.immediate:
            spec["immediate"] = True
        if self.suspend:
            spec["suspend"] = True
        return _obj(CNPG_API, "ScheduledBackup", self.meta, spec=spec)
