"""Recovery and waits on Kubernetes: a recovery Cluster from start to its first write, the
evidence of a failed one (Job pod logs, operator errors), deleting a Cluster with its volumes,
and waiting for a Deployment's replicas.

Functions of a started ``KubernetesBackend``; they only touch objects of its namespace (and read
the operator's logs in ``cnpg-system``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pgdrill.backends.base import ClusterHandle, RecoveryOutcome, RecoveryTarget
from pgdrill.backends.kubernetes import status as st
from pgdrill.backends.kubernetes.kube import Owned, say
from pgdrill.errors import CouldNotVerify, UsageError
from pgdrill.postgres.wal import Lsn, parse_history

if TYPE_CHECKING:
    from pgdrill.backends.kubernetes.cluster import KubernetesBackend


def recover(backend: KubernetesBackend, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
            archive: bool = True) -> RecoveryOutcome:
    """``KubernetesBackend.recover``: a ``bootstrap.recovery`` Cluster, judged from its Job,
    pods and logs; RTO ends at the first write on the recovered primary."""
    # Refuse before creating anything, so a bad name leaves nothing behind.
    if backend._cluster(new_name) is not None:
        raise UsageError(f"recovery cluster {new_name} already exists in namespace {backend.namespace}: "
                         f"pick a new name (next free: {backend.next_recovery_name(source.name)})")
    if archive:
        backend._refuse_existing(new_name)
    manifest = backend.objects.recovery_cluster(source.server_name, new_name, target, archive).to_dict()
    backup_id = target.backup_id if target and target.backup_id else backend._latest_backup(source.server_name)
    started = time.monotonic()
    created = backend._create(manifest)
    handle = ClusterHandle(new_name, new_name, archive, {"namespace": backend.namespace,
                                                        "uid": created["metadata"]["uid"],
                                                        "backend": backend.name})
    job_name = f"{new_name}-1-{st.FULL_RECOVERY}"
    marks: dict[str, float] = {}
    logs: dict[str, str] = {}

    def check() -> st.WaitState:
        job = _job(backend, job_name)
        pods = _job_pods(backend, new_name)
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            if pod_name not in logs and (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                logs[pod_name] = _all_logs(backend, pod)
        if job is not None and st.JobStatus.from_object(job).complete and "restore" not in marks:
            marks["restore"] = time.monotonic()
        return st.recovery_state(backend._cluster(new_name), job, pods, logs, backend.settings.failed_recovery_pods)

    settings = backend.settings
    verdict = st.Waiter(f"recovery {new_name}", settings.recovery_timeout_seconds, settings.poll_seconds,
                        progress=say).wait(check)
    ready_at = time.monotonic()
    for pod in _job_pods(backend, new_name):
        logs.setdefault(pod["metadata"]["name"], _all_logs(backend, pod))
    records = [r for text in logs.values() for r in st.parse_log(text)]
    restored = st.restored_segments(records)
    excerpt = [r.raw for r in records if r.severity in ("FATAL", "PANIC", "ERROR")
               or "recovery" in r.message or "restored log file" in r.message][-30:]
    if verdict.state != "done":
        fatal = list(verdict.evidence) or [verdict.summary]
        if verdict.summary not in fatal:
            fatal.append(verdict.summary)
        return RecoveryOutcome(handle, False, backup_id, phases=_phases(started, marks, ready_at, None),
                               fatal_lines=fatal, log_excerpt=excerpt + _operator_evidence(backend, new_name),
                               restored_segments=restored)
    # RTO ends when the recovered primary accepts a write, not when CNPG says Ready.
    backend.sql(handle, "CREATE TABLE IF NOT EXISTS pgdrill_write_probe (at timestamptz)")
    backend.sql(handle, "INSERT INTO pgdrill_write_probe VALUES (clock_timestamp())")
    written = time.monotonic()
    tli_hex = backend.sql(handle, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0][:8]
    timeline = int(tli_hex, 16)
    fork: Lsn | None = None
    if timeline > 1:
        text = backend.sql(handle, "SELECT pg_read_file(%s)", (f"pg_wal/{tli_hex}.history",))[0][0]
        switches = parse_history(text)
        fork = switches[-1].switchpoint if switches else None
    phases = _phases(started, marks, ready_at, written)
    return RecoveryOutcome(handle, True, backup_id, phases=phases, total=written - started, fork_lsn=fork,
                           timeline=timeline, fatal_lines=st.fatal_lines(records), log_excerpt=excerpt,
                           restored_segments=restored)


def _job(backend: KubernetesBackend, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return backend.kube.plain(backend.kube.batch.read_namespaced_job(name, backend.namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _job_pods(backend: KubernetesBackend, cluster: str) -> list[dict[str, Any]]:
    selector = f"{st.CLUSTER_LABEL}={cluster},{st.JOB_ROLE_LABEL}={st.FULL_RECOVERY}"
    pods = backend.kube.core.list_namespaced_pod(backend.namespace, label_selector=selector).items
    return [backend.kube.plain(p) for p in pods]


def _all_logs(backend: KubernetesBackend, pod: dict[str, Any]) -> str:
    spec = pod.get("spec") or {}
    names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    return "\n".join(backend.kube.logs(backend.namespace, pod["metadata"]["name"], name) for name in names)


def _operator_evidence(backend: KubernetesBackend, cluster: str, tail: int = 300) -> list[str]:
    """Operator log lines about this cluster (the operator sees plugin errors first)."""
    lines: list[str] = []
    try:
        pods = backend.kube.core.list_namespaced_pod(
            "cnpg-system", label_selector="app.kubernetes.io/name=cloudnative-pg").items
        for pod in pods:
            text = backend.kube.logs("cnpg-system", pod.metadata.name, tail=tail)
            lines += [ln for ln in text.splitlines() if cluster in ln and '"level":"error"' in ln][-10:]
    except Exception:
        pass
    return lines


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


def wait_deployment(backend: KubernetesBackend, name: str, replicas: int, timeout: float) -> None:
    """Until ``replicas`` pods of Deployment ``name`` are ready (for 0: until none is left)."""
    def check() -> st.WaitState:
        dep = backend.kube.apps.read_namespaced_deployment(name, backend.namespace)
        ready = dep.status.ready_replicas or 0
        if ready == replicas and (replicas > 0 or not (dep.status.replicas or 0)):
            return st.WaitState("done", f"{ready}/{replicas} ready")
        return st.WaitState("waiting", f"{ready}/{replicas} ready")

    verdict = st.Waiter(f"deployment {name}", timeout, 2.0, progress=say).wait(check)
    if verdict.state != "done":
        raise CouldNotVerify(verdict.summary)


def wait_pod_gone(backend: KubernetesBackend, name: str, uid: str, timeout: float = 60.0) -> None:
    """Until pod ``name`` with ``uid`` no longer exists (a recreated pod of the same name has another UID)."""
    from kubernetes.client.exceptions import ApiException

    def check() -> st.WaitState:
        try:
            pod = backend.kube.core.read_namespaced_pod(name, backend.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return st.WaitState("done", f"pod {name} gone")
            raise
        if pod.metadata.uid != uid:
            return st.WaitState("done", f"pod {name} gone (recreated as {pod.metadata.uid})")
        return st.WaitState("waiting", f"pod {name} still exists ({pod.status.phase})")

    verdict = st.Waiter(f"pod {name} deletion", timeout, 1.0, progress=say).wait(check)
    if verdict.state != "done":
        raise CouldNotVerify(verdict.summary)
