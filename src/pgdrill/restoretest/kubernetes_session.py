"""The objects one Kubernetes restore-test created, and the way into its clusters.

``RestoreTestSession`` records the UID of every object it creates and deletes exactly those, with
a UID precondition (the apiserver refuses if a same-named object replaced it), plus the PVCs CNPG
made for them (selected by an owner reference to that Cluster UID).  ``close()`` runs on
success, failure and Ctrl-C, with further signals held until it is done.

A recovery is judged as the drills' one is (``backends/kubernetes/status.py``: the Cluster, its
``<name>-1-full-recovery`` Job and that Job's pod logs); SQL, the write probe and pg_amcheck go
through ``kubectl port-forward`` to the primary pod as ``postgres``, with the password of the
operator-made ``<name>-superuser`` Secret held in memory only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from pgdrill.backends.base import ClusterHandle, RecoveryOutcome
from pgdrill.backends.kubernetes import status as st
from pgdrill.backends.kubernetes.forward import PortForward
from pgdrill.backends.kubernetes.kube import Kube, Owned
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.errors import CouldNotVerify, UsageError
from pgdrill.postgres.wal import Lsn, parse_history
from pgdrill.restoretest.kubernetes import RestoreTestObjects
from pgdrill.restoretest.kubernetes_phases import failed_step, split_phases
from pgdrill.restoretest.plan import Candidate
from pgdrill.restoretest.recover import Attempt
from pgdrill.restoretest.spec import RestoreTestSpec

Progress = Callable[[str], None]


def owned_pvcs(pvcs: list[dict[str, Any]], cluster_uid: str) -> list[tuple[str, str]]:
    """Pure: (name, uid) of the PVCs whose owner is the Cluster with ``cluster_uid``."""
    return [(p["metadata"]["name"], p["metadata"].get("uid", "")) for p in pvcs
            if any(ref.get("uid") == cluster_uid for ref in p["metadata"].get("ownerReferences") or [])]


def _api_error(exc: BaseException, what: str) -> Exception:
    status = getattr(exc, "status", None)
    if status is None:
        return exc if isinstance(exc, Exception) else CouldNotVerify(str(exc))
    reason = str(getattr(exc, "reason", "") or "").strip()
    if status in (401, 403):
        return UsageError(f"{what}: HTTP {status} {reason}: the kubeconfig's identity needs create/get/delete on "
                          "Clusters, ObjectStores, Secrets and PVCs there")
    if status in (409, 422):
        return UsageError(f"{what}: HTTP {status} {reason}")
    return CouldNotVerify(f"{what}: HTTP {status} {reason}")


class RestoreTestSession:
    def __init__(self, kube: Kube, objects: RestoreTestObjects, settings: KubernetesSettings,
                 progress: Progress):
        self.kube, self.objects, self.settings, self.progress = kube, objects, settings, progress
        self.namespace = objects.namespace
        self.owned: list[Owned] = []
        self.left: list[str] = []
        """Objects that could not be deleted (named in the result)."""
        self.kept = False
        self._forwards: dict[str, PortForward] = {}
        self._passwords: dict[str, str] = {}
        self._closed = False

    # -- create / delete -----------------------------------------------------------------------

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        what = f"cannot create {manifest['kind']}/{manifest['metadata']['name']}"
        try:
            created = self.kube.create(manifest)  # validated against the CRDs first
        except Exception as exc:
            raise _api_error(exc, what) from None
        meta = created.get("metadata") or {}
        self.owned.append(Owned(manifest["apiVersion"], manifest["kind"], meta.get("name", ""),
                                meta.get("namespace"), meta.get("uid", "")))
        return created

    def prepare(self, spec: RestoreTestSpec) -> None:
        """The namespace (when it is pgdrill's own), the Secret (values read from the named
        environment variables now, sent to the apiserver only) and the read-only ObjectStore."""
        objects = self.objects
        if objects.own_namespace:
            self.create(objects.namespace_object())
        if not objects.credentials_secret:
            credentials = spec.credentials()
            self.create(objects.secret(credentials.access_key_id, credentials.secret_access_key).to_dict())
        self.create(objects.object_store().to_dict())

    def _delete(self, ref: Owned) -> None:
        try:
            self.kube.delete(ref)
        except Exception as exc:  # clean-up goes on; the result names what was left
            self.left.append(f"{ref.kind}/{ref.name}")
            self.progress(f"could not delete {ref.kind}/{ref.name}: {type(exc).__name__}")

    def delete_cluster(self, name: str) -> None:
        """A Cluster this session created, then the PVCs CNPG made for it."""
        refs = [o for o in self.owned if o.kind == "Cluster" and o.name == name]
        if not refs:
            return
        ref = refs[-1]
        forward = self._forwards.pop(name, None)
        if forward is not None:
            forward.close()
        self._delete(ref)
        try:
            pvcs = self.kube.core.list_namespaced_persistent_volume_claim(
                self.namespace, label_selector=f"{st.CLUSTER_LABEL}={name}").items
            for pvc_name, uid in owned_pvcs([self.kube.plain(p) for p in pvcs], ref.uid):
                self._delete(Owned("v1", "PersistentVolumeClaim", pvc_name, self.namespace, uid))
        except Exception as exc:
            self.progress(f"could not list the PVCs of {name}: {type(exc).__name__}")
        self.owned.remove(ref)

    def close(self, keep: bool = False) -> None:
        """Delete everything this session created (``keep``: leave it for inspection)."""
        from pgdrill.backends.local.runas import deferred_interrupts

        if self._closed:
            return
        self._closed = True
        with deferred_interrupts():
            for forward in self._forwards.values():
                forward.close()
            self._forwards.clear()
            if keep:
                self.kept = True
                self.progress(f"keeping {', '.join(f'{o.kind}/{o.name}' for o in self.owned)} (--keep)")
                return
            namespaces = [o for o in self.owned if o.kind == "Namespace"]
            if namespaces:  # its own namespace (UID-checked): deleting it takes the rest along
                for ref in namespaces:
                    self._delete(ref)
                return
            for ref in reversed(list(self.owned)):
                if ref.kind == "Cluster":
                    self.delete_cluster(ref.name)
                else:
                    self._delete(ref)

    def keep_info(self) -> dict[str, Any]:
        ns = self.namespace
        clusters = {}
        for ref in self.owned:
            if ref.kind == "Cluster":
                clusters[ref.name] = {
                    "connect": (f"kubectl -n {ns} port-forward svc/{ref.name}-rw 5432 & PGPASSWORD=$(kubectl -n {ns} "
                                f"get secret {ref.name}-superuser -o jsonpath='{{.data.password}}' | base64 -d) "
                                "psql -h 127.0.0.1 -U postgres"),
                    "pgdata": f"PVC {ref.name}-1 in namespace {ns}"}
        return {"namespace": ns, "context": self.kube.context, "clusters": clusters,
                "objects": [f"{o.kind}/{o.name}" for o in self.owned],
                "delete": (f"kubectl delete namespace {ns}" if self.objects.own_namespace else
                           f"kubectl -n {ns} delete cluster,objectstore,secret -l pgdrill.io/restore-test="
                           f"{self.objects.names.short_id}")}

    # -- recovery ------------------------------------------------------------------------------

    def cluster(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_custom("Cluster", name, self.namespace)

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
        return [self.kube.plain(p) for p in
                self.kube.core.list_namespaced_pod(self.namespace, label_selector=selector).items]

    def _pod_logs(self, pod: dict[str, Any]) -> str:
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        return "\n".join(self.kube.logs(self.namespace, pod["metadata"]["name"], n, tail=None)  # type: ignore[arg-type]
                         for n in names)  # whole: the phases need its first PostgreSQL line

    def recover(self, candidate: Candidate, name: str, target: Any, timeout: float,
                probe: bool = True) -> tuple[Attempt, dict[str, Any]]:
        """Create the throwaway Cluster ``name`` and wait (with a deadline and progress) until it
        is Ready, its Job failed, or the deadline passed; with ``probe``, the first write ends the
        RTO and the new timeline's history gives the switch point."""
        manifest = self.objects.cluster(name, target).to_dict()
        if self.cluster(name) is not None:
            raise UsageError(f"a Cluster named {name} already exists in namespace {self.namespace}: "
                             "pgdrill only deletes what it created; use another run")
        backup_id = candidate.backup.backup_id
        created_wall, began = time.time(), time.monotonic()
        created = self.create(manifest)
        handle = ClusterHandle(name, "", False, {"namespace": self.namespace, "uid": created["metadata"]["uid"],
                                                 "backup_id": backup_id})
        logs: dict[str, str] = {}
        marks: dict[str, float] = {}
        job_name = f"{name}-1-{st.FULL_RECOVERY}"

        def check() -> st.WaitState:
            job = self._job(job_name)
            pods = self._job_pods(name)
            if job is not None or pods:
                marks.setdefault("job_seen", time.time())
            for pod in pods:
                pod_name = pod["metadata"]["name"]
                if pod_name not in logs and (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                    logs[pod_name] = self._pod_logs(pod)
            if job is not None and st.JobStatus.from_object(job).complete:
                marks.setdefault("job_done", time.time())
            return st.recovery_state(self.cluster(name), job, pods, logs, self.settings.failed_recovery_pods)

        verdict = st.Waiter(f"restore-test cluster {name}", timeout, self.settings.poll_seconds,
                            progress=self.progress).wait(check)
        ready_wall = time.time()
        for pod in self._job_pods(name):
            logs.setdefault(pod["metadata"]["name"], self._pod_logs(pod))
        records = [r for text in logs.values() for r in st.parse_log(text)]
        messages = [r.message for r in records]
        excerpt = [r.raw for r in records if r.severity in ("FATAL", "PANIC", "ERROR")
                   or "recovery" in r.message or "redo done" in r.message][-30:]
        restored = st.restored_segments(records)
        if verdict.state != "done":
            fatal = list(verdict.evidence) or [verdict.summary]
            if verdict.summary not in fatal:
                fatal.append(verdict.summary)
            outcome = RecoveryOutcome(handle, False, backup_id, failed_step=failed_step(verdict, "job_seen" in marks),
                                      fatal_lines=fatal, log_excerpt=excerpt, restored_segments=restored)
            return Attempt(candidate, None, handle, outcome, time.monotonic() - began,  # type: ignore[arg-type]
                           log=messages), {}
        written_wall, timeline, fork = ready_wall, None, None
        if probe:
            try:  # RTO ends when the restored primary takes a write, not when CNPG says Ready.
                self.sql(handle, "CREATE TABLE IF NOT EXISTS pgdrill_write_probe (at timestamptz)")
                self.sql(handle, "INSERT INTO pgdrill_write_probe VALUES (clock_timestamp())")
                written_wall = time.time()
                timeline, fork = self.switch_point(handle)
            except Exception as exc:  # the cluster is up but out of pgdrill's reach: nothing is known
                outcome = RecoveryOutcome(handle, False, backup_id, failed_step="infrastructure", fatal_lines=[
                    f"Cluster {name} is Ready but pgdrill could not write to it through a port-forward: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"],
                    log_excerpt=excerpt, restored_segments=restored)
                return Attempt(candidate, None, handle, outcome, time.monotonic() - began,  # type: ignore[arg-type]
                               log=messages), {}
        phases, details = split_phases(created_wall, ready_wall, written_wall, marks.get("job_done"), logs)
        restore = phases.pop("restore")
        outcome = RecoveryOutcome(handle, True, backup_id, phases=phases, total=restore + sum(phases.values()),
                                  fork_lsn=fork, timeline=timeline, fatal_lines=st.fatal_lines(records),
                                  log_excerpt=excerpt, restored_segments=restored)
        # Attempt's ``instance`` is the local backend's process: none here (build_result never reads it).
        # PGDATA is on the pod's volume: its size is backup.info's.
        details["pgdata_bytes_from"] = "backup.info"
        return Attempt(candidate, None, handle, outcome, restore, candidate.audit.cluster_bytes or 0,  # type: ignore[arg-type]
                       log=messages), details

    def switch_point(self, handle: ClusterHandle) -> tuple[int, Lsn | None]:
        """The current timeline and where it branched off, from ``pg_wal/<TLI>.history`` read
        through SQL (as the local backend does)."""
        tli_hex = self.sql(handle, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0][:8]
        timeline = int(tli_hex, 16)
        if timeline <= 1:
            return timeline, None
        text = self.sql(handle, "SELECT pg_read_file(%s)", (f"pg_wal/{tli_hex}.history",))[0][0]
        switches = parse_history(text)
        return timeline, (switches[-1].switchpoint if switches else None)

    # -- connections (also what KubernetesIntegrityTools needs) -----------------------------------

    def _primary_pod(self, cluster: str) -> str:
        return self.kube.primary_pod(self.namespace, cluster)

    def primary_port(self, cluster: ClusterHandle) -> int:
        forward = self._forwards.get(cluster.name)
        if forward is None:
            forward = self._forwards[cluster.name] = PortForward(
                self.kube, self.namespace, f"pod/{self._primary_pod(cluster.name)}", 5432)
        return forward.ensure()

    def superuser_password(self, cluster: ClusterHandle) -> str:
        if cluster.name not in self._passwords:
            secret = self.kube.core.read_namespaced_secret(f"{cluster.name}-superuser", self.namespace)
            self._passwords[cluster.name] = base64.b64decode(secret.data["password"]).decode()
        return self._passwords[cluster.name]

    def connect(self, cluster: ClusterHandle, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.primary_port(cluster), user="postgres",
                               password=self.superuser_password(cluster), dbname=dbname, autocommit=True,
                               connect_timeout=10, sslmode="prefer")

    def sql(self, cluster: ClusterHandle, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self.connect(cluster) as conn:
            cur = conn.execute(query, params or None)
            return list(cur.fetchall()) if cur.description else []
