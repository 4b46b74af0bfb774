"""What a drill would create on Kubernetes, object by object (``pgdrill plan``).

``DrillObjects`` is the single place that decides names and wiring (which ObjectStore, which
serverName, which Secret); the backends build exactly these objects, so what ``plan`` prints
is what a run applies, credentials aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgdrill.backends.base import RecoveryTarget
from pgdrill.backends.kubernetes import manifests as m
from pgdrill.backends.kubernetes.settings import KubernetesSettings, settings_from
from pgdrill.postgres.wal import Lsn

STORE_NAME = "pgdrill-store"
SECRET_NAME = "pgdrill-s3"
MINIO_NAME = "minio"


@dataclass(frozen=True)
class DrillObjects:
    """Names and builders for one run in one namespace."""

    run_id: str
    namespace: str
    settings: KubernetesSettings
    destination_url: str
    """``s3://bucket/prefix/run`` as seen by the plugin (no trailing slash)."""
    endpoint_url: str | None
    wal_compression: m.WalCompression | None = "gzip"
    data_compression: m.DataCompression | None = None
    wal_max_parallel: int | None = None
    """``wal.maxParallel`` of the ObjectStore (archive.wal_max_parallel); None: the plugin's 1."""

    def meta(self, name: str, namespaced: bool = True) -> m.Meta:
        return m.Meta(name, self.namespace if namespaced else None, self.run_id)

    def namespace_object(self) -> m.Namespace:
        return m.Namespace(self.meta(self.namespace, namespaced=False))

    def credentials_secret(self, access_key_id: str, secret_access_key: str) -> m.S3CredentialsSecret:
        return m.S3CredentialsSecret(self.meta(SECRET_NAME), access_key_id, secret_access_key)

    def minio(self) -> tuple[m.MinioVolumeClaim, m.MinioDeployment, m.MinioService]:
        claim = m.MinioVolumeClaim(self.meta(MINIO_NAME))
        return (claim,
                m.MinioDeployment(self.meta(MINIO_NAME), self.settings.minio_image, SECRET_NAME, claim.meta.name),
                m.MinioService(self.meta(MINIO_NAME)))

    def object_store(self) -> m.ObjectStore:
        return m.ObjectStore(self.meta(STORE_NAME), self.destination_url.rstrip("/") + "/", SECRET_NAME,
                             self.endpoint_url, self.wal_compression, self.data_compression,
                             wal_max_parallel=self.wal_max_parallel)

    def source_cluster(self, name: str) -> m.Cluster:
        return m.Cluster(self.meta(name), m.InitdbBootstrap(), m.PluginArchiver(STORE_NAME, name),
                         instances=self.settings.instances, storage_size=self.settings.storage_size,
                         image_name=self.settings.postgres_image, archive_timeout=self.settings.archive_timeout)

    def scheduled_backup(self, cluster: str) -> m.ScheduledBackup:
        # Applied exactly as ADR 007 schedules it, but suspended: a 02:00 UTC backup firing in
        # the middle of a drill would change which backup a recovery picks.
        return m.ScheduledBackup(self.meta(f"{cluster}-daily"), cluster, suspend=True)

    def backup(self, cluster: str, name: str) -> m.Backup:
        return m.Backup(self.meta(name), cluster)

    def recovery_cluster(self, source_server_name: str, new_name: str, target: RecoveryTarget | None,
                         archive: bool = True) -> m.Cluster:
        bootstrap = m.RecoveryBootstrap(STORE_NAME, source_server_name, target=recovery_target_spec(target))
        # The recovered cluster archives to its own serverName (= its name), never the source's.
        archiver = m.PluginArchiver(STORE_NAME, new_name) if archive else None
        return m.Cluster(self.meta(new_name), bootstrap, archiver, instances=1,
                         storage_size=self.settings.storage_size, image_name=self.settings.postgres_image,
                         archive_timeout=self.settings.archive_timeout)


def recovery_target_spec(target: RecoveryTarget | None) -> m.RecoveryTargetSpec:
    """Map the backend-neutral target onto CNPG's ``recoveryTarget``.

    A named restore point needs a ``backupID`` in CNPG; time and LSN targets let the operator
    pick the closest earlier backup unless one is given.
    """
    if target is None:
        return m.RecoveryTargetSpec()
    return m.RecoveryTargetSpec(
        target_time=target.time,
        target_lsn=str(target.lsn) if isinstance(target.lsn, Lsn) else None,
        target_name=target.name,
        backup_id=target.backup_id,
    )


def drill_objects(config: Any, run_id: str, namespace: str | None = None,
                  settings: KubernetesSettings | None = None) -> DrillObjects:
    settings = settings or settings_from(config)
    run = m.dns_label(run_id, 40)
    namespace = namespace or m.dns_label(f"{settings.namespace_prefix}-{run}")
    s3 = config.s3
    external = s3.mode == "external"
    destination = f"s3://{s3.bucket}/{s3.prefix.strip('/')}/{run}" if s3.prefix.strip("/") else f"s3://{s3.bucket}/{run}"
    wal = config.archive.wal_compression
    data = config.archive.data_compression
    return DrillObjects(
        run_id=run, namespace=namespace, settings=settings, destination_url=destination,
        endpoint_url=s3.endpoint_url if external else f"http://{MINIO_NAME}:9000",
        wal_compression=None if wal == "none" else wal,
        data_compression=None if data == "none" else data,
        # Left out at 1, the plugin's default, so default manifests stay what they were.
        wal_max_parallel=config.archive.wal_max_parallel if config.archive.wal_max_parallel > 1 else None,
    )


def plan_manifests(config: Any, scenario: Any, run_id: str = "plan") -> list[dict[str, Any]]:
    """Every object a run of ``scenario`` creates on Kubernetes, in creation order.

    Secrets are redacted.  The recovery cluster is the first one pgdrill would create
    (``<source>-v2``); its ``recoveryTarget`` follows the scenario's recovery target.
    """
    objects = drill_objects(config, run_id)
    source = config.source.cluster_name
    result: list[dict[str, Any]] = [objects.namespace_object().to_dict(),
                                    objects.credentials_secret("-", "-").redacted()]
    if config.s3.mode != "external":
        result.extend(o.to_dict() for o in objects.minio())
    result.append(objects.object_store().to_dict())
    result.append(objects.source_cluster(source).to_dict())
    result.append(objects.scheduled_backup(source).to_dict())
    result.append(objects.backup(source, f"{source}-base-1").to_dict())
    target = _scenario_target(scenario)
    recovery_name = getattr(getattr(scenario, "recovery", None), "cluster_name", None) or f"{source}-v2"
    recovery = objects.recovery_cluster(source, recovery_name, target).to_dict()
    spec = getattr(scenario, "recovery", None)
    if target is not None and target.lsn is not None and spec is not None:
        # The LSN is only known once the drill has written; show where it comes from.
        recovery["spec"]["bootstrap"]["recovery"]["recoveryTarget"]["targetLSN"] = \
            f"<LSN after post-backup write {spec.after_write}, set at run time>"
    result.append(recovery)
    return result


def _scenario_target(scenario: Any) -> RecoveryTarget | None:
    """Plan-time stand-ins for run-time targets (placed after post-backup write N)."""
    recovery = getattr(scenario, "recovery", None)
    target = getattr(recovery, "target", "latest")
    if target in (None, "latest"):
        return None
    if isinstance(target, RecoveryTarget):
        return target
    after = getattr(recovery, "after_write", None)
    if target == "lsn":
        return RecoveryTarget(lsn=Lsn(0))
    if target == "time":
        return RecoveryTarget(time=f"<commit time of post-backup write {after}, set at run time>")
    if target == "name":
        return RecoveryTarget(name=f"<pgdrill-after-row-N for post-backup write {after}>",
                              backup_id="<newest base backup id, set at run time>")
    raise ValueError(f"scenario recovery target {target!r} has no Kubernetes mapping yet")
