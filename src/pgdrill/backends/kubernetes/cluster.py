"""The Backend protocol on Kubernetes with CNPG + the barman-cloud plugin (shared by kind and k8s).

One backend instance = one drill run = one namespace that pgdrill creates, labels with the run
id and deletes (by UID) when it closes.  Inside it: the S3 credentials Secret, MinIO (unless an
external S3 is configured), one ObjectStore, the source Cluster and every recovery Cluster.

SQL goes through ``kubectl port-forward`` to the current primary pod as ``postgres``, with the
password from the operator-managed ``<cluster>-superuser`` Secret: read into memory, handed to
psycopg as a keyword, never put in argv, logs or messages.

Capabilities (``pgdrill.backends.base``): ``ObjectStoreOutage`` (scale the in-namespace MinIO to
0 and back), ``IntegrityToolsProvider`` (``integrity_tools.py``) and ``KeepInfo``.  Not
``FailoverBackend``: ``kill_primary`` is here (delete the primary pod, grace 0), but CNPG
creates replicas and promotes one itself, so ``create_replica``/``promote``/
``restart_after_crash`` have no Kubernetes equivalent and node drills report "not run".
Not ``RetentionBackend`` either (the plugin applies ``retentionPolicy`` on its own schedule).
Module map: ``kube.py`` (API access), ``forward.py`` (port-forwards), ``recovery.py`` (recovery,
deletion and waits).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from pgdrill.archive.store import ObjectStore, S3Credentials, S3Location, make_client
from pgdrill.backends.base import ClusterHandle, RecoveryOutcome, RecoveryTarget
from pgdrill.backends.kubernetes import manifests as m
from pgdrill.backends.kubernetes import recovery
from pgdrill.backends.kubernetes import status as st
from pgdrill.backends.kubernetes.forward import ForwardedObjectStore, PortForward
from pgdrill.backends.kubernetes.integrity_tools import KubernetesIntegrityTools
from pgdrill.backends.kubernetes.kube import Kube, Owned, say
from pgdrill.backends.kubernetes.plan import MINIO_NAME, DrillObjects
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.backends.naming import next_recovery_name
from pgdrill.errors import CouldNotVerify, DrillFailed, UsageError
from pgdrill.postgres.wal import SegmentName


@dataclass
class _SourceState:
    backups: list[st.BackupStatus] = field(default_factory=list)


class KubernetesBackend:
    """The Backend protocol on one namespace of one Kubernetes cluster."""

    def __init__(self, name: str, kube: Kube, objects: DrillObjects, settings: KubernetesSettings,
                 external_credentials: S3Credentials | None = None, versions: dict[str, str] | None = None):
        self.name = name
        self.kube = kube
        self.objects = objects
        self.settings = settings
        self.namespace = objects.namespace
        self._external = external_credentials
        self._credentials = external_credentials or S3Credentials(
            "pgdrill" + secrets.token_hex(6), secrets.token_urlsafe(24))
        self._owned: list[Owned] = []
        self._forwards: dict[str, PortForward] = {}
        self._passwords: dict[str, str] = {}
        self._sources: dict[str, _SourceState] = {}
        self._store: ObjectStore | None = None
        self._versions = dict(versions or {})
        self._closed = False
        location = S3Location.parse(objects.destination_url)
        self._destination = location

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubernetesBackend:
        """Create the namespace, credentials, MinIO and the ObjectStore; undo all of it on failure."""
        self._refuse_existing_namespace()
        try:
            self._create(self.objects.namespace_object().to_dict())
            self._create(self.objects.credentials_secret(self._credentials.access_key_id,
                                                         self._credentials.secret_access_key).to_dict())
            if self._external is None:
                for builder in self.objects.minio():
                    self._create(builder.to_dict())
                recovery.wait_deployment(self, MINIO_NAME, 1, self.settings.install_timeout_seconds)
                forward = PortForward(self.kube, self.namespace, f"svc/{MINIO_NAME}", 9000)
                self._forwards["minio"] = forward
                forward.ensure()
                # barman-cloud would create the bucket on first archive, but pgdrill lists it before.
                client = make_client(f"http://127.0.0.1:{forward.port}", self._credentials)
                client.create_bucket(Bucket=self._destination.bucket)
                self._store = ForwardedObjectStore(forward, self._credentials, self._destination.bucket)
            else:
                self._store = ObjectStore(self.objects.endpoint_url, self._credentials, self._destination.bucket)
                self._store.check_access()
            self._create(self.objects.object_store().to_dict())
        except BaseException:
            self.close()
            raise
        return self

    def _refuse_existing_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.kube.core.read_namespace(self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise UsageError(f"cannot check namespace {self.namespace} (HTTP {exc.status}): "
                             f"pgdrill needs to create and delete namespaces") from None
        raise UsageError(f"namespace {self.namespace} already exists: pgdrill only uses namespaces it creates "
                         f"(use a new run id, or delete it if a previous run left it)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for forward in self._forwards.values():
            forward.close()
        self._forwards.clear()
        if self.settings.keep:
            say(f"keeping namespace {self.namespace} (--keep)")
            return
        # The namespace is ours (created by this run, UID-checked): deleting it takes the rest along.
        namespaces = [o for o in self._owned if o.kind == "Namespace"]
        others = [o for o in reversed(self._owned) if o.kind != "Namespace"]
        for ref in (others if not namespaces else []) + namespaces:
            try:
                self.kube.delete(ref)
            except Exception as exc:  # cleanup must go on; say what was left behind
                say(f"could not delete {ref.kind}/{ref.name}: {type(exc).__name__}")

    def _create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        created = self.kube.create(manifest)
        meta = created.get("metadata") or {}
        self._owned.append(Owned(manifest["apiVersion"], manifest["kind"], meta.get("name", ""),
                                 meta.get("namespace"), meta.get("uid", "")))
        return created

    # -- protocol: properties ----------------------------------------------------------------

    @property
    def destination(self) -> S3Location:
        return self._destination

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            raise CouldNotVerify("the Kubernetes backend was not started (no object store yet)")
        return self._store

    def versions(self) -> dict[str, str]:
        found = dict(self._versions)
        try:
            info = self.kube.version.get_code()
            found["kubernetes"] = info.git_version
        except Exception:
            pass
        for deployment, key in (("cnpg-controller-manager", "cnpg"), ("barman-cloud", "plugin-barman-cloud")):
            try:
                dep = self.kube.apps.read_namespaced_deployment(deployment, "cnpg-system")
                found[key] = dep.spec.template.spec.containers[0].image.rsplit(":", 1)[-1]
            except Exception:
                pass
        return found

    # -- protocol: clusters ------------------------------------------------------------------

    def create_source(self, name: str, archive_timeout_seconds: int | None = None) -> ClusterHandle:
        self._refuse_existing(name)
        manifest = self.objects.source_cluster(name).to_dict()
        if archive_timeout_seconds is not None:
            manifest["spec"].setdefault("postgresql", {}).setdefault("parameters", {})["archive_timeout"] = \
                f"{archive_timeout_seconds}s"
        created = self._create(manifest)
        self._create(self.objects.scheduled_backup(name).to_dict())
        verdict = st.Waiter(f"cluster {name}", self.settings.ready_timeout_seconds, self.settings.poll_seconds,
                            progress=say).wait(lambda: st.cluster_ready_state(self._cluster(name) or {}))
        if verdict.state != "done":
            raise CouldNotVerify(f"source cluster {name} did not become ready: {verdict.summary}")
        self._sources[name] = _SourceState()
        return ClusterHandle(name, name, True, {"namespace": self.namespace, "uid": created["metadata"]["uid"],
                                                "backend": self.name})

    def _refuse_existing(self, name: str) -> None:
        if self._cluster(name) is not None:
            raise UsageError(f"a Cluster named {name} already exists in namespace {self.namespace}: "
                             f"choose another name")
        prefix = self._destination.key(name) + "/"
        if any(True for _ in self.store.list(prefix)):
            raise UsageError(f"serverName {name} already has objects under {self._destination.url}/{name}/ "
                             f"(\"Expected empty archive\"): choose another name")

    def _cluster(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_custom("Cluster", name, self.namespace)

    def _primary_pod(self, cluster: str) -> str:
        return self.kube.primary_pod(self.namespace, cluster)

    def _password(self, cluster: str) -> str:
        if cluster not in self._passwords:
            secret = self.kube.core.read_namespaced_secret(f"{cluster}-superuser", self.namespace)
            self._passwords[cluster] = base64.b64decode(secret.data["password"]).decode()
        return self._passwords[cluster]

    def superuser_password(self, cluster: ClusterHandle) -> str:
        """The ``postgres`` password (for a client tool's environment only, never argv or logs)."""
        return self._password(cluster.name)

    def primary_port(self, cluster: ClusterHandle) -> int:
        """The local port forwarded to the current primary pod's 5432 (opened or reopened as needed)."""
        pod = self._primary_pod(cluster.name)
        forward = self._forwards.get(pod)
        if forward is None:
            forward = self._forwards[pod] = PortForward(self.kube, self.namespace, f"pod/{pod}", 5432)
        return forward.ensure()

    def _connect(self, cluster: ClusterHandle, dbname: str, user: str) -> Any:
        import psycopg

        port = self.primary_port(cluster)
        conn = psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=self._password(cluster.name),
                               dbname=dbname, autocommit=True, connect_timeout=10, sslmode="prefer")
        if user != "postgres":
            # Only the superuser has a password pgdrill can read; act as the requested role.
            from psycopg import sql as pgsql

            conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(user)))
        return conn

    def connect(self, cluster: ClusterHandle, dbname: str = "postgres", user: str = "postgres") -> Any:
        """A psycopg connection in autocommit through the port-forward (the ledger writer's)."""
        return self._connect(cluster, dbname, user)

    def sql(self, cluster: ClusterHandle, query: str, params: Any = (), dbname: str = "postgres",
            user: str = "postgres") -> list[tuple[Any, ...]]:
        with self._connect(cluster, dbname, user) as conn:
            cur = conn.execute(query, params or None)
            return list(cur.fetchall()) if cur.description else []

    def run_script(self, cluster: ClusterHandle, script: str, dbname: str = "postgres") -> None:
        with self._connect(cluster, dbname, "postgres") as conn:
            conn.execute(script)  # no parameters: psycopg sends it as one simple-protocol batch

    def take_backup(self, cluster: ClusterHandle) -> str:
        state = self._sources.setdefault(cluster.name, _SourceState())
        name = m.dns_label(f"{cluster.name}-base-{len(state.backups) + 1}")
        self._create(self.objects.backup(cluster.name, name).to_dict())
        verdict = st.Waiter(f"backup {name}", self.settings.backup_timeout_seconds, self.settings.poll_seconds,
                            progress=say).wait(lambda: st.backup_state(self._backup(name)))
        if verdict.state == "failed":
            raise DrillFailed(verdict.summary)
        if verdict.state != "done":
            raise CouldNotVerify(verdict.summary)
        status = st.BackupStatus.from_object(self._backup(name))
        state.backups.append(status)
        return status.backup_id

    def _backup(self, name: str) -> dict[str, Any]:
        return self.kube.get_custom("Backup", name, self.namespace) or {}

    def wait_archived(self, cluster: ClusterHandle, segment: str, timeout: float = 60.0) -> None:
        """Poll the bucket for the segment (CNPG e2e ``AssertArchiveWalOnObjectStore``)."""
        seg = SegmentName.parse(segment)
        prefix = self._destination.key(cluster.server_name, "wals", seg.directory, seg.name)

        def check() -> st.WaitState:
            if any(o.key.rsplit("/", 1)[-1].split(".")[0] == seg.name for o in self.store.list(prefix)):
                return st.WaitState("done", f"{segment} archived")
            status = st.ClusterStatus.from_object(self._cluster(cluster.name) or {})
            if status.archiving is False:
                return st.WaitState("waiting", f"WAL archiving failing: {status.archiving_message}")
            return st.WaitState("waiting", f"waiting for {segment} in the bucket")

        verdict = st.Waiter(f"archive {segment}", timeout, 1.0, progress=say).wait(check)
        if verdict.state != "done":
            raise CouldNotVerify(verdict.summary)

    def lose(self, cluster: ClusterHandle, destroy_data: bool) -> None:
        if destroy_data:
            recovery.delete_cluster_and_volumes(self, cluster.name)
            return
        # Hard stop that keeps the volumes: hibernate (no new pods), then kill the pods with grace 0.
        self.kube.custom.patch_namespaced_custom_object(
            "postgresql.cnpg.io", "v1", self.namespace, "clusters", cluster.name,
            {"metadata": {"annotations": {"cnpg.io/hibernation": "on"}}})
        for pod in self._instance_pods(cluster.name):
            self.kube.core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=0)

    def _instance_pods(self, cluster: str) -> list[str]:
        pods = self.kube.core.list_namespaced_pod(self.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster}").items
        return [p.metadata.name for p in pods if not (p.metadata.labels or {}).get(st.JOB_ROLE_LABEL)]

    def next_recovery_name(self, source_name: str) -> str:
        taken = {c["metadata"]["name"] for c in self.kube.list_custom("Cluster", self.namespace)}
        root = self._destination.key() + "/" if self._destination.prefix else ""
        taken |= {p[len(root):].strip("/") for p in self.store.list_prefixes(root)}
        return next_recovery_name(source_name, taken)

    def recover(self, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
                archive: bool = True) -> RecoveryOutcome:
        return recovery.recover(self, source, new_name, target, archive)

    def _latest_backup(self, server_name: str) -> str | None:
        backups = self._sources.get(server_name, _SourceState()).backups
        return backups[-1].backup_id if backups else None


    def destroy(self, cluster: ClusterHandle) -> None:
        recovery.delete_cluster_and_volumes(self, cluster.name, wait=False)

    # -- capabilities (pgdrill.backends.base) ------------------------------------------------

    def integrity_tools(self) -> KubernetesIntegrityTools:
        """``IntegrityToolsProvider``: SQL and pg_amcheck through the port-forward; no pg_checksums."""
        return KubernetesIntegrityTools(self)

    def set_object_store_available(self, available: bool) -> None:
        """``ObjectStoreOutage``: scale the in-namespace MinIO Deployment to 0 (or back to 1) and
        wait until it is down (or ready); its PVC keeps the data."""
        if self._external is not None or self.objects.endpoint_url != f"http://{MINIO_NAME}:9000":
            raise UsageError("an S3 outage needs the in-namespace MinIO (s3.mode = 'embedded'); "
                             "pgdrill never takes an external endpoint down")
        replicas = 1 if available else 0
        self.kube.apps.patch_namespaced_deployment_scale(MINIO_NAME, self.namespace,
                                                         {"spec": {"replicas": replicas}})
        recovery.wait_deployment(self, MINIO_NAME, replicas, self.settings.install_timeout_seconds)
        say("S3 outage over: MinIO back" if available else "S3 outage: MinIO scaled to 0")

    def kill_primary(self, cluster: ClusterHandle) -> None:
        """FailoverBackend's ``kill_primary`` (the rest of FailoverBackend has no CNPG equivalent):
        delete the primary pod with grace period 0 (harsher than CNPG e2e's 1 s); its PVC stays.
        Returns once that pod is gone (CNPG then fails over or recreates it on its own)."""
        pods = self.kube.core.list_namespaced_pod(
            self.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster.name},{st.INSTANCE_ROLE_LABEL}=primary").items
        if not pods:
            raise CouldNotVerify(f"cluster {cluster.name} has no pod labelled {st.INSTANCE_ROLE_LABEL}=primary")
        pod = pods[0]
        self.kube.core.delete_namespaced_pod(pod.metadata.name, self.namespace, grace_period_seconds=0)
        recovery.wait_pod_gone(self, pod.metadata.name, pod.metadata.uid)

    def keep_info(self) -> dict[str, Any]:
        """``KeepInfo``: where ``--keep`` left the drill's objects."""
        return {"namespace": self.namespace, "kubeconfig": self.kube.kubeconfig, "context": self.kube.context,
                "destination": self._destination.url,
                "clusters": sorted(o.name for o in self._owned if o.kind == "Cluster")}
