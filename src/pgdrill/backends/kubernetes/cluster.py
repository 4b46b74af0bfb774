"""The Backend protocol on Kubernetes with CNPG + the barman-cloud plugin (shared by kind and k8s).

One backend instance = one drill run = one namespace that pgdrill creates, labels with the run
id and deletes (by UID) when it closes.  Inside it: the S3 credentials Secret, MinIO (unless an
external S3 is configured), one ObjectStore, the source Cluster and every recovery Cluster.

SQL goes through ``kubectl port-forward`` to the current primary pod as ``postgres``, with the
password from the operator-managed ``<cluster>-superuser`` Secret: read into memory, handed to
psycopg as a keyword, never put in argv, logs or messages.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ...errors import CouldNotVerify, DrillFailed, UsageError
from ...s3 import ObjectStore, S3Credentials, S3Location, make_client
from ...wal import Lsn, SegmentName, parse_history
from ..base import ClusterHandle, RecoveryOutcome, RecoveryTarget
from . import manifests as m
from . import status as st
from .plan import MINIO_NAME, SECRET_NAME, DrillObjects
from .schema import crd_for, validate
from .settings import KubernetesSettings


def say(text: str) -> None:
    """Progress output: one line on stderr, visible under pytest's ``-s`` and in CI logs."""
    print(f"[pgdrill] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Owned:
    """An object pgdrill created, identified by name and UID (cleanup deletes exactly this)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    uid: str


class Kube:
    """The official client's APIs for one kubeconfig context, plus kubectl for port-forwards."""

    def __init__(self, kubeconfig: str, context: str | None, kubectl: str = "kubectl"):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.context = context
        self.kubectl = kubectl
        self.api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.apiext = client.ApiextensionsV1Api(self.api_client)
        self.version = client.VersionApi(self.api_client)

    def kubectl_base(self) -> list[str]:
        args = [self.kubectl, "--kubeconfig", self.kubeconfig]
        if self.context:
            args += ["--context", self.context]
        return args

    def plain(self, obj: Any) -> dict[str, Any]:
        """A client model as the JSON the apiserver sent (camelCase keys), for ``status``."""
        return obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)

    # -- create / get / delete ----------------------------------------------------------------

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        validate(manifest)
        kind = manifest["kind"]
        ns = manifest["metadata"].get("namespace")
        crd = crd_for(manifest)
        if crd is not None:
            return self.custom.create_namespaced_custom_object(crd.group, crd.version, ns, crd.plural, manifest)
        creators = {
            "Namespace": lambda: self.core.create_namespace(manifest),
            "Secret": lambda: self.core.create_namespaced_secret(ns, manifest),
            "Service": lambda: self.core.create_namespaced_service(ns, manifest),
            "PersistentVolumeClaim": lambda: self.core.create_namespaced_persistent_volume_claim(ns, manifest),
            "Deployment": lambda: self.apps.create_namespaced_deployment(ns, manifest),
        }
        return self.plain(creators[kind]())

    def get_custom(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        crd = _crd_by_kind(kind)
        try:
            return self.custom.get_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_custom(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        crd = _crd_by_kind(kind)
        found = self.custom.list_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural,
                                                          label_selector=selector)
        return list(found.get("items") or [])

    def delete(self, ref: Owned) -> None:
        """Delete exactly the object pgdrill created: the UID precondition makes the apiserver
        refuse if someone replaced it with a same-named object."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=ref.uid),
                                      propagation_policy="Background")
        try:
            crd = _crd_by_kind(ref.kind) if ref.api_version.endswith("cnpg.io/v1") else None
            if crd is not None:
                self.custom.delete_namespaced_custom_object(crd.group, crd.version, ref.namespace, crd.plural,
                                                            ref.name, body=body)
            elif ref.kind == "Namespace":
                self.core.delete_namespace(ref.name, body=body)
            elif ref.kind == "Secret":
                self.core.delete_namespaced_secret(ref.name, ref.namespace, body=body)
            elif ref.kind == "Service":
                self.core.delete_namespaced_service(ref.name, ref.namespace, body=body)
            elif ref.kind == "PersistentVolumeClaim":
                self.core.delete_namespaced_persistent_volume_claim(ref.name, ref.namespace, body=body)
            elif ref.kind == "Deployment":
                self.apps.delete_namespaced_deployment(ref.name, ref.namespace, body=body)
            elif ref.kind == "Pod":
                self.core.delete_namespaced_pod(ref.name, ref.namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone already / UID changed: not ours any more
                raise

    def logs(self, namespace: str, pod: str, container: str | None = None, tail: int = 500) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=tail)
        except ApiException:
            return ""


def _crd_by_kind(kind: str) -> Any:
    from .schema import crd_schemas

    for entry in crd_schemas().values():
        if entry.kind == kind:
            return entry
    raise KeyError(kind)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortForward:
    """``kubectl port-forward`` on a fixed local port, restarted when its pod went away."""

    def __init__(self, kube: Kube, namespace: str, target: str, remote_port: int):
        self.kube, self.namespace, self.target, self.remote_port = kube, namespace, target, remote_port
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def ensure(self, timeout: float = 20.0) -> int:
        if self._proc is not None and self._proc.poll() is None and _can_connect(self.port):
            return self.port
        self.close()
        self._proc = subprocess.Popen(
            [*self.kube.kubectl_base(), "port-forward", "-n", self.namespace, "--address", "127.0.0.1",
             self.target, f"{self.port}:{self.remote_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace").strip()
                raise CouldNotVerify(f"kubectl port-forward {self.target} failed: {err.splitlines()[-1] if err else 'exited'}")
            if _can_connect(self.port):
                return self.port
            time.sleep(0.2)
        self.close()
        raise CouldNotVerify(f"kubectl port-forward {self.target} did not open port {self.port} in {timeout:.0f}s")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ForwardedObjectStore(ObjectStore):
    """The drill's bucket through a port-forward to MinIO that survives MinIO restarts."""

    def __init__(self, forward: PortForward, credentials: S3Credentials, bucket: str):
        self._forward = forward
        super().__init__(f"http://127.0.0.1:{forward.port}", credentials, bucket)

    def _alive(self) -> None:
        self._forward.ensure()

    def list(self, prefix: str):  # type: ignore[override]
        self._alive()
        return super().list(prefix)

    def list_prefixes(self, prefix: str) -> list[str]:
        self._alive()
        return super().list_prefixes(prefix)

    def get(self, key: str) -> bytes:
        self._alive()
        return super().get(key)

    def put(self, key: str, body: bytes) -> None:
        self._alive()
        super().put(key, body)

    def delete(self, key: str) -> None:
        self._alive()
        super().delete(key)

    def check_access(self) -> None:
        self._alive()
        super().check_access()


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
                self._wait_deployment(MINIO_NAME, 1, self.settings.install_timeout_seconds)
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
                            progress=say).wait(lambda: st.judge_cluster_ready(self._cluster(name) or {}))
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
        pods = self.kube.core.list_namespaced_pod(
            self.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster},{st.INSTANCE_ROLE_LABEL}=primary").items
        running = [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        if not running:
            raise CouldNotVerify(f"cluster {cluster} has no running primary pod")
        return running[0]

    def _password(self, cluster: str) -> str:
        if cluster not in self._passwords:
            secret = self.kube.core.read_namespaced_secret(f"{cluster}-superuser", self.namespace)
            self._passwords[cluster] = base64.b64decode(secret.data["password"]).decode()
        return self._passwords[cluster]

    def _connect(self, cluster: ClusterHandle, dbname: str, user: str) -> Any:
        import psycopg

        pod = self._primary_pod(cluster.name)
        forward = self._forwards.get(pod)
        if forward is None:
            forward = self._forwards[pod] = PortForward(self.kube, self.namespace, f"pod/{pod}", 5432)
        port = forward.ensure()
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
                            progress=say).wait(lambda: st.judge_backup(self._backup(name)))
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

        def check() -> st.Verdict:
            if any(o.key.rsplit("/", 1)[-1].split(".")[0] == seg.name for o in self.store.list(prefix)):
                return st.Verdict("done", f"{segment} archived")
            status = st.ClusterStatus.from_object(self._cluster(cluster.name) or {})
            if status.archiving is False:
                return st.Verdict("waiting", f"WAL archiving failing: {status.archiving_message}")
            return st.Verdict("waiting", f"waiting for {segment} in the bucket")

        verdict = st.Waiter(f"archive {segment}", timeout, 1.0, progress=say).wait(check)
        if verdict.state != "done":
            raise CouldNotVerify(verdict.summary)

    def lose(self, cluster: ClusterHandle, destroy_data: bool) -> None:
        if destroy_data:
            delete_cluster_and_volumes(self, cluster.name)
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
        n = 2
        while f"{source_name}-v{n}" in taken:
            n += 1
        return f"{source_name}-v{n}"

    def recover(self, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
                archive: bool = True) -> RecoveryOutcome:
        # Refuse before creating anything, so a bad name leaves nothing behind.
        if self._cluster(new_name) is not None:
            raise UsageError(f"recovery cluster {new_name} already exists in namespace {self.namespace}: "
                             f"pick a new name (next free: {self.next_recovery_name(source.name)})")
        if archive:
            self._refuse_existing(new_name)
        manifest = self.objects.recovery_cluster(source.server_name, new_name, target, archive).to_dict()
        backup_id = target.backup_id if target and target.backup_id else self._latest_backup(source.server_name)
        started = time.monotonic()
        created = self._create(manifest)
        handle = ClusterHandle(new_name, new_name, archive, {"namespace": self.namespace,
                                                            "uid": created["metadata"]["uid"],
                                                            "backend": self.name})
        job_name = f"{new_name}-1-{st.FULL_RECOVERY}"
        marks: dict[str, float] = {}
        logs: dict[str, str] = {}

        def check() -> st.Verdict:
            job = self._job(job_name)
            pods = self._job_pods(new_name)
            for pod in pods:
                pod_name = pod["metadata"]["name"]
                if pod_name not in logs and (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                    logs[pod_name] = self._all_logs(pod)
            if job is not None and st.JobStatus.from_object(job).complete and "restore" not in marks:
                marks["restore"] = time.monotonic()
            return st.judge_recovery(self._cluster(new_name), job, pods, logs, self.settings.failed_recovery_pods)

        timeout = self.settings.recovery_timeout_seconds
        verdict = st.Waiter(f"recovery {new_name}", timeout, self.settings.poll_seconds, progress=say).wait(check)
        ready_at = time.monotonic()
        for pod in self._job_pods(new_name):
            logs.setdefault(pod["metadata"]["name"], self._all_logs(pod))
        records = [r for text in logs.values() for r in st.parse_log(text)]
        restored = st.restored_segments(records)
        excerpt = [r.raw for r in records if r.severity in ("FATAL", "PANIC", "ERROR")
                   or "recovery" in r.message or "restored log file" in r.message][-30:]
        if verdict.state != "done":
            fatal = list(verdict.evidence) or [verdict.summary]
            if verdict.summary not in fatal:
                fatal.append(verdict.summary)
            return RecoveryOutcome(handle, False, backup_id, phases=_phases(started, marks, ready_at, None),
                                   fatal_lines=fatal, log_excerpt=excerpt + self._operator_evidence(new_name),
                                   restored_segments=restored)
        # RTO ends when the recovered primary accepts a write, not when CNPG says Ready.
        self.sql(handle, "CREATE TABLE IF NOT EXISTS pgdrill_write_probe (at timestamptz)")
        self.sql(handle, "INSERT INTO pgdrill_write_probe VALUES (clock_timestamp())")
        written = time.monotonic()
        tli_hex = self.sql(handle, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0][:8]
        timeline = int(tli_hex, 16)
        fork: Lsn | None = None
        if timeline > 1:
            text = self.sql(handle, "SELECT pg_read_file(%s)", (f"pg_wal/{tli_hex}.history",))[0][0]
            switches = parse_history(text)
            fork = switches[-1].switchpoint if switches else None
        phases = _phases(started, marks, ready_at, written)
        return RecoveryOutcome(handle, True, backup_id, phases=phases, total=written - started, fork_lsn=fork,
                               timeline=timeline, fatal_lines=st.fatal_lines(records), log_excerpt=excerpt,
                               restored_segments=restored)

    def _latest_backup(self, server_name: str) -> str | None:
        backups = self._sources.get(server_name, _SourceState()).backups
        return backups[-1].backup_id if backups else None

    def _job(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.kube.plain(self.kube.batch.read_namespaced_job(name, self.namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _job_pods(self, cluster: str) -> list[dict[str, Any]]:
        selector = f"{st.CLUSTER_LABEL}={cluster},{st.JOB_ROLE_LABEL}={st.FULL_RECOVERY}"
        pods = self.kube.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.kube.plain(p) for p in pods]

    def _all_logs(self, pod: dict[str, Any]) -> str:
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        return "\n".join(self.kube.logs(self.namespace, pod["metadata"]["name"], name) for name in names)

    def _operator_evidence(self, cluster: str, tail: int = 300) -> list[str]:
        """Operator log lines about this cluster (the operator sees plugin errors first)."""
        lines: list[str] = []
        try:
            pods = self.kube.core.list_namespaced_pod(
                "cnpg-system", label_selector="app.kubernetes.io/name=cloudnative-pg").items
            for pod in pods:
                text = self.kube.logs("cnpg-system", pod.metadata.name, tail=tail)
                lines += [ln for ln in text.splitlines() if cluster in ln and '"level":"error"' in ln][-10:]
        except Exception:
            pass
        return lines

    def destroy(self, cluster: ClusterHandle) -> None:
        delete_cluster_and_volumes(self, cluster.name, wait=False)

    # -- helpers used by faults --------------------------------------------------------------

    def _wait_deployment(self, name: str, replicas: int, timeout: float) -> None:
        def check() -> st.Verdict:
            dep = self.kube.apps.read_namespaced_deployment(name, self.namespace)
            ready = dep.status.ready_replicas or 0
            if ready == replicas and (replicas > 0 or not (dep.status.replicas or 0)):
                return st.Verdict("done", f"{ready}/{replicas} ready")
            return st.Verdict("waiting", f"{ready}/{replicas} ready")

        verdict = st.Waiter(f"deployment {name}", timeout, 2.0, progress=say).wait(check)
        if verdict.state != "done":
            raise CouldNotVerify(verdict.summary)


def _phases(started: float, marks: dict[str, float], ready_at: float, written: float | None) -> dict[str, float]:
    """``recovery_job`` (the full-recovery Job: preflight, base restore, WAL replay and promotion,
    which the Job does in one pod and pgdrill cannot time apart from outside), ``instance_start``
    (the instance pod up, Cluster Ready) and ``first_write``; contiguous, they add up to ``total``.
    The names differ from the local backend's on purpose: the same name means the same work."""
    phases: dict[str, float] = {}
    restore_end = marks.get("restore", ready_at)
    phases["recovery_job"] = restore_end - started
    phases["instance_start"] = max(ready_at - restore_end, 0.0)
    if written is not None:
        phases["first_write"] = written - ready_at
    return phases


def delete_cluster_and_volumes(backend: KubernetesBackend, cluster: str, wait: bool = True,
                               timeout: float = 120.0) -> None:
    """Delete a Cluster pgdrill created and its PVCs (the "lose everything" disaster)."""
    owned = [o for o in backend._owned if o.kind == "Cluster" and o.name == cluster]
    if not owned:
        raise UsageError(f"cluster {cluster} was not created by this run: pgdrill will not delete it")
    backend.kube.delete(owned[-1])
    # CNPG creates the PVCs (they do not carry pgdrill's labels); delete only those whose owner is
    # the Cluster this run created, identified by its UID.
    for pvc in backend.kube.core.list_namespaced_persistent_volume_claim(
            backend.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster}").items:
        if any(ref.uid == owned[-1].uid for ref in pvc.metadata.owner_references or []):
            backend.kube.delete(Owned("v1", "PersistentVolumeClaim", pvc.metadata.name, backend.namespace,
                                      pvc.metadata.uid))
    if wait:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = backend.kube.core.list_namespaced_pod(
                backend.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster}").items
            if not left and backend._cluster(cluster) is None:
                return
            time.sleep(2)
        raise CouldNotVerify(f"cluster {cluster} still has pods {timeout:.0f}s after deletion")


def default_kubeconfig(explicit: str | None) -> str:
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")
