"""``pgdrill restore-test --backend k8s|kind``: the pure half (options, names, manifests, reading
the source Cluster, splitting the RTO into phases from the recovery Job's log).  The live half,
which talks to the cluster, is ``kubernetes_run.py``; phases and failure reasons from the
recovery Job's log are in ``kubernetes_phases.py``.

What pgdrill creates for one restore-test, all labelled ``app.kubernetes.io/managed-by: pgdrill``
and ``pgdrill.io/run-id``, and deleted by UID when it ends (cnpg-notes §3, restore-path-facts):

* a ``Secret`` with the read-only S3 keys, only when no existing Secret is named, filled from the
  environment variables the user named at apply time (what pgdrill prints or records is
  ``S3CredentialsSecret.redacted()``);
* an ``ObjectStore`` pointing at the source's ``destinationPath`` with those read-only keys and
  ``wal.maxParallel`` = the restore-test's ``wal_max_parallel``; no ``serverName`` (the plugin
  forbids it there);
* a throwaway ``Cluster`` ``<source>-restore-test-<id>``: ``bootstrap.recovery.source`` → an
  ``externalClusters`` entry using the plugin with ``barmanObjectName`` = that ObjectStore and
  ``serverName`` = the source's serverName, ``recoveryTarget.backupID`` = the backup the audit's
  analysis chose (plus the PITR target, if any), the source's ``imageName``, and **no
  ``spec.plugins``**, so it cannot archive anywhere (PLUGIN web/docs/usage.md).  An explicit
  scratch archive is possible, and refused when it resolves to the source's serverName path.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pgdrill.archive.store import S3Location
from pgdrill.backends.kubernetes import manifests as m
from pgdrill.errors import UsageError

RESTORE_TEST_LABEL = "pgdrill.io/restore-test"
ANNOTATION_SOURCE = "pgdrill.io/source"
ANNOTATION_BACKUP = "pgdrill.io/backup-id"
SOURCE_ALIAS = "source"
GIB = 1 << 30


@dataclass(frozen=True)
class KubernetesRestoreOptions:
    """Where and how the throwaway cluster runs (``--backend k8s|kind`` flags)."""

    backend: Literal["k8s", "kind"] = "k8s"
    namespace: str | None = None
    """An existing namespace for pgdrill's objects; ``None``: one of its own, created and deleted."""
    source_cluster: str | None = None
    """``[namespace/]name`` of the source CNPG Cluster: its ``imageName`` (and a consistency check
    of its serverName, destinationPath and endpoint against the location)."""
    image_name: str | None = None
    """Overrides the source Cluster's image; required without ``source_cluster``."""
    credentials_secret: str | None = None
    """An existing Secret in ``namespace`` holding the read-only keys; ``None``: pgdrill makes one
    from the environment variables the restore-test names (values never printed)."""
    access_key_id_key: str = m.ACCESS_KEY_ID
    secret_access_key_key: str = m.ACCESS_SECRET_KEY
    endpoint_url: str | None = None
    """The S3 endpoint as the cluster reaches it (default: the source ObjectStore's, else the
    restore-test's own ``endpoint_url``)."""
    endpoint_ca: str | None = None
    """``SECRET/KEY`` of a CA bundle for the endpoint, in ``namespace``."""
    storage_size: str | None = None
    """PVC size; default: from the backup's size (``storage_size_for``)."""
    storage_class: str | None = None
    scratch_object_store: str | None = None
    """Optional: let the restored cluster archive into this *other* ObjectStore (refused when it
    resolves to the source's serverName path)."""
    scratch_server_name: str | None = None

    def check(self) -> None:
        """Bad combinations, before anything is contacted: one ``UsageError`` line each."""
        if self.credentials_secret and not self.namespace:
            raise UsageError("--k8s-secret names a Secret, which lives in a namespace: give --namespace too")
        if self.endpoint_ca and (not self.namespace or "/" not in self.endpoint_ca):
            raise UsageError("--endpoint-ca takes SECRET/KEY of a Secret in --namespace")
        if self.scratch_server_name and not self.scratch_object_store:
            raise UsageError("--scratch-server-name needs --scratch-object-store")
        if self.scratch_object_store and not self.namespace:
            raise UsageError("--scratch-object-store names an ObjectStore in a namespace: give --namespace too")
        if self.source_cluster and "/" not in self.source_cluster and not self.namespace:
            raise UsageError("--source-cluster NAME without --namespace: give NAMESPACE/NAME (pgdrill's own "
                             "namespace holds no source)")
        for value, what in ((self.namespace, "namespace"), (self.credentials_secret, "secret name"),
                            (self.scratch_object_store, "scratch ObjectStore")):
            if value:
                _checked(value, what)
        if self.storage_size and not re.fullmatch(r"[1-9][0-9]*(Mi|Gi|Ti)", self.storage_size):
            raise UsageError(f"storage size {self.storage_size!r}: expected e.g. 20Gi")

    @property
    def source_ref(self) -> tuple[str | None, str] | None:
        if not self.source_cluster:
            return None
        namespace, _, name = self.source_cluster.rpartition("/")
        return (namespace or self.namespace), name


def _checked(name: str, what: str) -> str:
    try:
        return m.check_name(name, what)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# --- the source archive, as the cluster sees it --------------------------------------------------


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "key": self.key}


@dataclass(frozen=True)
class SourceArchive:
    """``<destination_path>/<server_name>/``: what the restore reads, read-only."""

    destination_path: str
    server_name: str
    endpoint_url: str | None = None
    endpoint_ca: SecretKey | None = None

    @classmethod
    def from_location(cls, location: str, endpoint_url: str | None = None) -> SourceArchive:
        parsed = S3Location.parse(location)
        parent, _, server = parsed.prefix.rpartition("/")
        if not server:
            raise UsageError(f"{location} names no serverName: expected s3://BUCKET/PREFIX/SERVERNAME")
        return cls(f"s3://{parsed.bucket}/{parent}" if parent else f"s3://{parsed.bucket}/", server, endpoint_url)

    def path(self, server_name: str | None = None) -> tuple[str, str, str]:
        """(bucket, prefix, serverName), normalised: two paths are one when these are equal."""
        parsed = S3Location.parse(self.destination_path)
        return parsed.bucket, parsed.prefix, server_name or self.server_name


@dataclass(frozen=True)
class ScratchArchive:
    """An explicitly configured archive for the restored cluster (another ObjectStore)."""

    object_store: str
    destination_path: str
    server_name: str


def refuse_scratch(source: SourceArchive, read_only_store: str, scratch: ScratchArchive) -> None:
    """One line when the scratch destination would write into the archive being restored."""
    if scratch.object_store == read_only_store:
        raise UsageError(f"scratch ObjectStore {scratch.object_store} is the read-only ObjectStore of the source: "
                         "a restore-test never archives into the source; name another ObjectStore")
    theirs = SourceArchive(scratch.destination_path, scratch.server_name).path()
    if theirs == source.path():
        raise UsageError(f"scratch destination {scratch.destination_path.rstrip('/')}/{scratch.server_name}/ is the "
                         f"source's own serverName path: the restored cluster would archive into the archive it "
                         "restores from; pick another serverName or ObjectStore")


@dataclass(frozen=True)
class SourceFacts:
    """What the live path reads from the source Cluster (and its ObjectStore, if readable)."""

    image_name: str
    source: SourceArchive
    cluster: str | None = None
    notes: tuple[str, ...] = ()


def source_facts(cluster: dict[str, Any] | None, object_store: dict[str, Any] | None, source: SourceArchive,
                 image_override: str | None = None, same_namespace: bool = False) -> SourceFacts:
    """Pure: the image to run and the archive as the cluster reaches it; refuses (one line) when
    the source Cluster archives somewhere else than the location says."""
    notes: list[str] = []
    name = ((cluster or {}).get("metadata") or {}).get("name")
    spec = (cluster or {}).get("spec") or {}
    image = image_override or spec.get("imageName") or ((cluster or {}).get("status") or {}).get("image")
    if not image:
        raise UsageError("no PostgreSQL image: the source Cluster has no imageName/status.image; give --image-name"
                         if cluster else "give --source-cluster (its imageName is used) or --image-name")
    archiver = next((p for p in spec.get("plugins") or [] if p.get("name") == m.PLUGIN_NAME
                     and p.get("isWALArchiver")), None)
    if cluster is not None and archiver is None:
        notes.append(f"source Cluster {name} has no barman-cloud WAL archiver: serverName and path not cross-checked")
    if archiver is not None:
        server = (archiver.get("parameters") or {}).get("serverName") or name
        if server != source.server_name:
            raise UsageError(f"source Cluster {name} archives as serverName {server!r}, but the location names "
                             f"{source.server_name!r}: fix the location or --source-cluster")
    if object_store is not None:
        conf = (object_store.get("spec") or {}).get("configuration") or {}
        theirs = SourceArchive(conf.get("destinationPath", "s3://-"), source.server_name)
        if theirs.path() != source.path():
            raise UsageError(f"source Cluster {name} archives to {conf.get('destinationPath')}, not "
                             f"{source.destination_path}: fix the location or --source-cluster")
        ca = conf.get("endpointCA")
        # Its CA Secret is usable only from its own namespace.
        theirs_ca = SecretKey(ca["name"], ca["key"]) if ca and same_namespace else None
        source = SourceArchive(source.destination_path, source.server_name,
                               source.endpoint_url or conf.get("endpointURL"), source.endpoint_ca or theirs_ca)
    return SourceFacts(image, source, name, tuple(notes))


# --- names and manifests ----------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreTestNames:
    short_id: str
    label_run_id: str
    cluster: str
    object_store: str
    secret: str
    namespace: str

    def attempt(self, index: int) -> str:
        """Cluster name of attempt ``index`` (0: the newest backup, then fallbacks)."""
        return self.cluster if index == 0 else f"{self.cluster}-{index + 1}"

    @property
    def target_check(self) -> str:
        return f"{self.cluster}-t"


def restore_test_names(server_name: str, run_id: str, namespace_prefix: str = "pgdrill") -> RestoreTestNames:
    short = hashlib.sha1(run_id.encode()).hexdigest()[:6]
    suffix = f"-restore-test-{short}"
    # 50 characters for a Cluster (CNPG derives pod and job names from it), minus "-t"/"-2".
    root = m.dns_label(server_name, 46 - len(suffix))
    cluster = f"{root}{suffix}"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_id)[:63].strip("-_.") or short
    return RestoreTestNames(short, label, cluster, f"{cluster}-store", f"{cluster}-s3",
                            m.dns_label(f"{namespace_prefix}-rt-{short}"))


def storage_size_for(cluster_bytes: int | None, stored_bytes: int, wal_max_parallel: int = 1) -> str:
    """PVC size for the restored PGDATA (pg_wal included): its size plus a quarter, plus 2 GiB
    of WAL kept during replay and the prefetch spool; at least 1Gi."""
    data = cluster_bytes or stored_bytes * 2
    need = data * 1.25 + 2 * GIB + wal_max_parallel * (16 << 20)
    return f"{max(1, math.ceil(need / GIB))}Gi"


def _meta(names: RestoreTestNames, name: str, namespace: str) -> m.Meta:
    return m.Meta(name, namespace, names.label_run_id, ((RESTORE_TEST_LABEL, names.short_id),))


@dataclass(frozen=True)
class ReadOnlyObjectStore:
    """The source's archive with read-only keys: what the throwaway cluster recovers from."""

    meta: m.Meta
    source: SourceArchive
    credentials_secret: str
    wal_max_parallel: int
    access_key_id_key: str = m.ACCESS_KEY_ID
    secret_access_key_key: str = m.ACCESS_SECRET_KEY

    def to_dict(self) -> dict[str, Any]:
        # Compression settings only matter when archiving: restores read the suffix and backup.info.
        manifest = m.ObjectStore(self.meta, self.source.destination_path, self.credentials_secret,
                                 self.source.endpoint_url, wal_compression=None,
                                 wal_max_parallel=self.wal_max_parallel).to_dict()
        configuration = manifest["spec"]["configuration"]
        configuration["s3Credentials"] = {
            "accessKeyId": {"name": self.credentials_secret, "key": self.access_key_id_key},
            "secretAccessKey": {"name": self.credentials_secret, "key": self.secret_access_key_key}}
        if self.source.endpoint_ca is not None:
            configuration["endpointCA"] = self.source.endpoint_ca.to_dict()
        return manifest


@dataclass(frozen=True)
class RestoreTestCluster:
    """The throwaway ``Cluster``: recovery from the read-only ObjectStore, no ``spec.plugins``."""

    meta: m.Meta
    object_store: str
    source: SourceArchive
    image_name: str
    target: m.RecoveryTargetSpec
    storage_size: str = "1Gi"
    storage_class: str | None = None
    scratch: ScratchArchive | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        m.check_name(self.meta.name, "cluster name", max_length=50)
        if not self.image_name:
            raise UsageError("a restore-test Cluster needs the source's imageName")
        if self.scratch is not None:
            refuse_scratch(self.source, self.object_store, self.scratch)

    def to_dict(self) -> dict[str, Any]:
        recovery: dict[str, Any] = {"source": SOURCE_ALIAS}
        if not self.target.empty:
            recovery["recoveryTarget"] = self.target.to_dict()
        storage: dict[str, Any] = {"size": self.storage_size}
        if self.storage_class:
            storage["storageClass"] = self.storage_class
        spec: dict[str, Any] = {
            "instances": 1, "imageName": self.image_name,
            # pgdrill connects as postgres with the operator-made <name>-superuser Secret.
            "enableSuperuserAccess": True,
            "inheritedMetadata": {"labels": self.meta.labels},
            "bootstrap": {"recovery": recovery},
            "externalClusters": [{"name": SOURCE_ALIAS, "plugin": {"name": m.PLUGIN_NAME, "parameters": {
                "barmanObjectName": self.object_store, "serverName": self.source.server_name}}}],
            "storage": storage,
        }
        if self.scratch is not None:
            spec["plugins"] = [m.PluginArchiver(self.scratch.object_store, self.scratch.server_name).to_dict()]
        out = {"apiVersion": m.CNPG_API, "kind": "Cluster", "metadata": self.meta.to_dict(), "spec": spec}
        if self.annotations:
            out["metadata"]["annotations"] = dict(self.annotations)
        return out


def recovery_target(backup_id: str, target_lsn: str | None = None, target_time: str | None = None,
                    target_name: str | None = None) -> m.RecoveryTargetSpec:
    """Always ``backupID``: the plugin restores the backup the plan chose, not its own pick
    (with ``backupID`` alone it still replays to the end of the archive, plugin issue #667)."""
    return m.RecoveryTargetSpec(backup_id=backup_id, target_lsn=target_lsn, target_time=target_time,
                                target_name=target_name)


@dataclass(frozen=True)
class RestoreTestObjects:
    """Everything one restore-test applies, in creation order (the Cluster comes per attempt)."""

    names: RestoreTestNames
    namespace: str
    own_namespace: bool
    source: SourceArchive
    image_name: str
    wal_max_parallel: int
    location: str
    credentials_secret: str | None = None
    """An existing Secret; ``None``: ``names.secret``, made by pgdrill."""
    access_key_id_key: str = m.ACCESS_KEY_ID
    secret_access_key_key: str = m.ACCESS_SECRET_KEY
    storage_size: str = "1Gi"
    storage_class: str | None = None
    scratch: ScratchArchive | None = None

    def meta(self, name: str) -> m.Meta:
        return _meta(self.names, name, self.namespace)

    def namespace_object(self) -> dict[str, Any]:
        return m.Namespace(m.Meta(self.namespace, None, self.names.label_run_id,
                                  ((RESTORE_TEST_LABEL, self.names.short_id),))).to_dict()

    def secret(self, access_key_id: str, secret_access_key: str) -> m.S3CredentialsSecret:
        if self.credentials_secret:
            raise UsageError(f"Secret {self.credentials_secret} exists already: pgdrill makes none")
        return m.S3CredentialsSecret(self.meta(self.names.secret), access_key_id, secret_access_key)

    def object_store(self) -> ReadOnlyObjectStore:
        keys = ((self.access_key_id_key, self.secret_access_key_key) if self.credentials_secret
                else (m.ACCESS_KEY_ID, m.ACCESS_SECRET_KEY))
        return ReadOnlyObjectStore(self.meta(self.names.object_store), self.source,
                                   self.credentials_secret or self.names.secret, self.wal_max_parallel, *keys)

    def cluster(self, name: str, target: m.RecoveryTargetSpec) -> RestoreTestCluster:
        annotations = {ANNOTATION_SOURCE: self.location}
        if target.backup_id:
            annotations[ANNOTATION_BACKUP] = target.backup_id
        return RestoreTestCluster(self.meta(name), self.names.object_store, self.source, self.image_name, target,
                                  self.storage_size, self.storage_class, self.scratch, annotations)

    def printable(self, target: m.RecoveryTargetSpec) -> list[dict[str, Any]]:
        """What a report or ``--print`` may show: the Secret redacted, never its values."""
        found = [self.namespace_object()] if self.own_namespace else []
        if not self.credentials_secret:
            found.append(m.S3CredentialsSecret(self.meta(self.names.secret), "", "").redacted())
        return [*found, self.object_store().to_dict(), self.cluster(self.names.cluster, target).to_dict()]
