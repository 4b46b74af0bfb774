"""``run_kubernetes_restore_test``: the restore-test on a Kubernetes cluster with CNPG and the
Barman Cloud plugin (``--backend k8s`` an existing one, ``--backend kind`` a kind cluster).

The same plan as the local one (one listing of the source, the audit's analysis, the newest
consistent backup, fallbacks), the same proofs and checks, done by the operator instead of
pgdrill's own processes: a throwaway Cluster per attempt (``kubernetes.py``), judged from its
Job and logs, then through a port-forward: the first write (end of the RTO), the switch point
from the new timeline's history (``end_of_archive``), pg_amcheck (``physical``), ``ownership``
and ``user_checks``; finally, unless disabled, the ``target`` check (a second Cluster with a
``targetLSN`` in the newest archived segment, which PostgreSQL refuses when WAL is missing).

A recovery that failed for a reason outside the archive (pgdrill's deadline, an image pull, a
403 from S3) is COULD_NOT_VERIFY and not retried on an older backup; one that failed in the
Job's PostgreSQL or preflight is the backup's problem: ``BACKUP_UNUSABLE`` and the fallback.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

from pgdrill.backends.kubernetes.integrity_tools import KubernetesIntegrityTools
from pgdrill.backends.kubernetes.kube import Kube
from pgdrill.backends.kubernetes.settings import KubernetesSettings, settings_from
from pgdrill.config import Config
from pgdrill.detectors.base import could_not
from pgdrill.detectors.physical import check_physical
from pgdrill.errors import UsageError
from pgdrill.findings import Finding
from pgdrill.findings.codes import RECOVERY_FAILED
from pgdrill.postgres.wal import Lsn
from pgdrill.restoretest.checks import (
    backup_unusable,
    check_owners,
    end_of_archive,
    run_user_checks,
    target_outcome,
)
from pgdrill.restoretest.kubernetes import (
    KubernetesRestoreOptions,
    RestoreTestObjects,
    ScratchArchive,
    SecretKey,
    SourceArchive,
    recovery_target,
    restore_test_names,
    source_facts,
    storage_size_for,
)
from pgdrill.restoretest.kubernetes_session import Progress, RestoreTestSession
from pgdrill.restoretest.plan import Candidate, RestorePlan, plan_restore
from pgdrill.restoretest.recover import Attempt
from pgdrill.restoretest.result import build_result
from pgdrill.restoretest.run import _end_time, _pg_time, _skipped_finding, read_source
from pgdrill.restoretest.spec import RestoreTestSpec
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult

NOT_THE_ARCHIVE = ("timeout", "infrastructure")


def _stderr(message: str) -> None:
    print(f"restore-test: {message}", file=sys.stderr, flush=True)


@dataclass
class KubeConnection:
    """A reachable cluster with CNPG and the plugin; for kind, the environment this run set up."""

    kube: Kube
    backend: str
    versions: dict[str, str]
    environment: Any = None

    def close(self, keep: bool = False) -> None:
        if self.environment is not None and not keep:
            self.environment.close(force=True)  # deletes the kind cluster only if this run created it


def connect_backend(options: KubernetesRestoreOptions, settings: KubernetesSettings) -> KubeConnection:
    """Every precondition before anything is created; ``BackendUnavailable`` (no kubeconfig, no
    API server, no Docker or kind) or ``UsageError`` (wrong context, CNPG missing): one line."""
    if options.backend == "kind":
        from pgdrill.backends.kubernetes.kind import KindEnvironment

        environment = KindEnvironment(settings)
        kube = environment.up()
        return KubeConnection(kube, "kind", dict(environment.versions), environment)
    from pgdrill.backends.kubernetes.k8s import connect_existing

    kube, versions = connect_existing(settings)
    return KubeConnection(kube, "k8s", dict(versions))


def run_kubernetes_restore_test(spec: RestoreTestSpec, config: Config, run_id: str,
                                options: KubernetesRestoreOptions, connection: KubeConnection,
                                keep: bool = False, progress: Progress = _stderr) -> DrillResult:
    """Raises ``UsageError`` (one line) for bad input found before anything is created."""
    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    spec.check_input()
    options.check()
    settings = settings_from(config)
    progress(f"listing {spec.location}")
    catalog, report = read_source(spec, config, started_at)
    plan = plan_restore(catalog, report, spec)
    objects = plan_objects(connection.kube, spec, options, run_id, settings, plan.candidates)
    session = RestoreTestSession(connection.kube, objects, settings, progress)
    try:
        session.prepare(spec)
        preflight = time.monotonic() - clock
        result = _restore(session, spec, config, catalog, report, plan, preflight, started_at, keep, progress)
    finally:
        session.close(keep=keep)
    result.backend = {"name": connection.backend, **connection.versions, "context": connection.kube.context,
                      "namespace": objects.namespace, "image": objects.image_name,
                      "wal_max_parallel": spec.wal_max_parallel}
    restored = next((c for c in plan.candidates if c.backup.backup_id == result.recovery.get("backup_id")),
                    plan.candidates[0])
    # What was applied, the Secret redacted: the report shows it, never a credential.
    result.recovery["kubernetes"] = {**result.recovery.get("kubernetes", {}), "left_behind": session.left,
                                     "manifests": objects.printable(_target(plan, restored))}
    return result


def plan_objects(kube: Kube, spec: RestoreTestSpec, options: KubernetesRestoreOptions, run_id: str,
                 settings: KubernetesSettings, first_and_fallbacks: tuple[Candidate, ...]) -> RestoreTestObjects:
    """Read the source Cluster (image, archive), check every name and reference; nothing created."""
    first = first_and_fallbacks[0]
    names = restore_test_names(spec.server_name, run_id, settings.namespace_prefix)
    namespace = options.namespace or names.namespace
    source = SourceArchive.from_location(spec.location, options.endpoint_url)
    cluster = store = None
    ref = options.source_ref
    if ref is not None:
        ns = ref[0] or namespace
        cluster = kube.get_custom("Cluster", ref[1], ns)
        if cluster is None:
            raise UsageError(f"source Cluster {ns}/{ref[1]} not found: fix --source-cluster [NAMESPACE/]NAME")
        archiver = next((p for p in (cluster.get("spec") or {}).get("plugins") or [] if p.get("isWALArchiver")), None)
        store_name = ((archiver or {}).get("parameters") or {}).get("barmanObjectName")
        if store_name:
            try:
                store = kube.get_custom("ObjectStore", store_name, ns)
            except Exception:  # not allowed to read it: the location alone describes the archive
                store = None
    facts = source_facts(cluster, store, source, options.image_name,
                         same_namespace=ref is not None and (ref[0] or namespace) == namespace)
    source = facts.source
    if source.endpoint_url is None and spec.endpoint_url:
        source = replace(source, endpoint_url=spec.endpoint_url)
    host = urlparse(source.endpoint_url or "").hostname or ""
    if host in ("localhost", "::1") or host.startswith("127."):
        raise UsageError(f"the cluster cannot reach S3 at {source.endpoint_url} (this machine's loopback): give "
                         "--k8s-endpoint-url as the cluster reaches it")
    if options.endpoint_ca:
        secret, _, key = options.endpoint_ca.partition("/")
        source = replace(source, endpoint_ca=SecretKey(secret, key))
    _check_namespace(kube, namespace, own=options.namespace is None)
    if options.credentials_secret:
        _check_secret(kube, namespace, options)
    scratch = _scratch(kube, namespace, options, names.cluster) if options.scratch_object_store else None
    taken = [("ObjectStore", names.object_store), ("Cluster", names.target_check),
             *(("Cluster", names.attempt(i)) for i in range(len(first_and_fallbacks)))]
    for kind, name in taken if options.namespace else ():  # a new namespace holds nothing yet
        if kube.get_custom(kind, name, namespace) is not None:
            raise UsageError(f"{kind} {name} already exists in namespace {namespace}: pgdrill only uses names it "
                             "creates; run again (a new run id) or remove the leftover")
    size = options.storage_size or storage_size_for(first.audit.cluster_bytes, first.audit.stored_bytes,
                                                    spec.wal_max_parallel)
    return RestoreTestObjects(names, namespace, options.namespace is None, source, facts.image_name,
                              spec.wal_max_parallel, spec.location, options.credentials_secret,
                              options.access_key_id_key, options.secret_access_key_key, size, options.storage_class,
                              scratch)


def _check_namespace(kube: Kube, namespace: str, own: bool) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404 and own:
            return
        if exc.status == 404:
            raise UsageError(f"namespace {namespace} does not exist: create it or leave --namespace out "
                             "(pgdrill then uses one of its own)") from None
        raise UsageError(f"cannot read namespace {namespace} (HTTP {exc.status})") from None
    if own:
        raise UsageError(f"namespace {namespace} already exists: pgdrill only deletes namespaces it creates")


def _check_secret(kube: Kube, namespace: str, options: KubernetesRestoreOptions) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        secret = kube.core.read_namespaced_secret(options.credentials_secret, namespace)
    except ApiException as exc:
        raise UsageError(f"Secret {namespace}/{options.credentials_secret} cannot be read (HTTP {exc.status}): "
                         "fix --k8s-secret") from None
    missing = [k for k in (options.access_key_id_key, options.secret_access_key_key) if k not in (secret.data or {})]
    if missing:
        raise UsageError(f"Secret {namespace}/{options.credentials_secret} has no key(s) {', '.join(missing)}: "
                         "fix --k8s-secret-keys")


def _scratch(kube: Kube, namespace: str, options: KubernetesRestoreOptions, cluster: str) -> ScratchArchive:
    assert options.scratch_object_store is not None
    found = kube.get_custom("ObjectStore", options.scratch_object_store, namespace)
    if found is None:
        raise UsageError(f"scratch ObjectStore {namespace}/{options.scratch_object_store} not found")
    path = ((found.get("spec") or {}).get("configuration") or {}).get("destinationPath", "")
    return ScratchArchive(options.scratch_object_store, path, options.scratch_server_name or cluster)


def _target(plan: RestorePlan, candidate: Candidate) -> Any:
    return recovery_target(candidate.backup.backup_id, str(plan.target_lsn) if plan.target_lsn else None,
                           _pg_time(plan.target_time), plan.target_name)


@dataclass
class _View:
    """What ``build_result`` reads from a workspace."""

    bin_dir: str
    keep: bool
    session: RestoreTestSession

    def keep_info(self) -> dict[str, Any]:
        return self.session.keep_info()


def _amcheck_dir() -> str:
    try:
        from pgdrill.backends.local.postgres import pg_bin_dir

        return str(pg_bin_dir())
    except Exception as exc:
        return f"unavailable ({exc})"


def _restore(session: RestoreTestSession, spec: RestoreTestSpec, config: Config, catalog: Any, report: Any,
             plan: RestorePlan, preflight: float, started_at: datetime, keep: bool, progress: Progress) -> DrillResult:
    timeout = max(session.settings.recovery_timeout_seconds, 3600.0)
    names = session.objects.names
    findings: list[Finding] = [_skipped_finding(s) for s in plan.skipped if s.unusable]
    detectors: list[DetectorOutcome] = []
    failed: list[dict[str, Any]] = []
    wasted = 0.0
    attempt: Attempt | None = None
    details: dict[str, Any] = {}
    for index, candidate in enumerate(plan.candidates):
        name = names.attempt(index)
        progress(f"restoring {candidate.backup.backup_id} into Cluster {session.namespace}/{name} "
                 f"({candidate.audit.stored_bytes / 1e6:.1f} MB stored, {candidate.wal_segments} WAL segment(s))")
        began = time.monotonic()
        attempt, details = session.recover(candidate, name, _target(plan, candidate), timeout)
        if attempt.failed is None:
            break
        seconds = time.monotonic() - began
        wasted += seconds
        failed.append({"backup_id": candidate.backup.backup_id, "failed": attempt.failed, "seconds": round(seconds, 3)})
        progress(f"{candidate.backup.backup_id} could not be restored ({attempt.failed})")
        session.delete_cluster(name)
        if attempt.outcome.failed_step in NOT_THE_ARCHIVE:
            detectors.append(could_not("recovery", f"the recovery of {candidate.backup.backup_id} did not finish for "
                                       f"a reason outside the archive: {attempt.failed}"))
            break
        if plan.pitr:  # a target PostgreSQL refuses is the target's problem, not the backup's
            break
        findings.append(backup_unusable(candidate.backup.backup_id, attempt.failed, attempt.outcome.fatal_lines,
                                        wasted, index + 1 < len(plan.candidates), " on Kubernetes"))
    view = _View(_amcheck_dir(), keep, session)
    extra: dict[str, Any] = {"failed_attempts": failed, "pg_major": plan.candidates[0].pg_major,
                             "kubernetes": {"phase_basis": details}}
    if attempt is None or attempt.failed is not None:
        if not detectors:
            why = failed[-1]["failed"] if failed else "no backup could be tried"
            findings.append(Finding(RECOVERY_FAILED, f"no backup of {spec.location} could be recovered on Kubernetes: "
                                    f"{why}", "restore", evidence={"attempts": failed}))
        return build_result(spec, catalog, report, plan, attempt, findings, detectors, preflight, wasted, started_at,
                            extra, view, config)  # type: ignore[arg-type]
    progress("recovered and promoted; checking where the recovery ended and the restored data")
    candidate, handle = attempt.candidate, attempt.handle
    if not plan.pitr:
        detectors.append(end_of_archive(candidate, attempt.outcome, catalog.archive.segment_size))
    detectors.append(check_physical(KubernetesIntegrityTools(session), handle).outcome)  # type: ignore[arg-type]
    connect = lambda dbname: session.connect(handle, dbname)  # noqa: E731 - as run.py does
    detectors.append(check_owners(connect, spec.owners))
    user, rows = run_user_checks(connect, spec.checks, _end_time(catalog, candidate))
    detectors.append(user)
    extra["user_checks"] = rows
    if not keep:
        session.delete_cluster(handle.name)
    if not plan.pitr and spec.target_check:
        detectors.append(_target_check(session, candidate, timeout, progress))
    return build_result(spec, catalog, report, plan, attempt, findings, detectors, preflight, wasted, started_at,
                        extra, view, config)  # type: ignore[arg-type]


def _target_check(session: RestoreTestSession, candidate: Candidate, timeout: float,
                  progress: Progress) -> DetectorOutcome:
    end, backup_end = candidate.end_segment, candidate.backup.end_wal
    if end is None or backup_end is None or (end.timeline, end.number) <= (backup_end.timeline, backup_end.number):
        return DetectorOutcome("target", DetectorStatus.NOT_APPLICABLE, "the archive ends at the backup's end "
                               "WAL: the end-of-archive check is the whole proof", [], 0.0)
    target = Lsn(end.number * end.segment_size)
    name = session.objects.names.target_check
    progress(f"target check: a second Cluster {name}, recovering to {target} inside {end.name}")
    began = time.monotonic()
    try:
        attempt, _ = session.recover(candidate, name, recovery_target(candidate.backup.backup_id, str(target)),
                                     timeout, probe=False)
    except Exception as exc:
        return could_not("target", f"the target recovery could not run: {exc}", began)
    finally:
        session.delete_cluster(name)
    if attempt.outcome.failed_step in NOT_THE_ARCHIVE:
        return could_not("target", f"the target recovery did not finish: {attempt.failed}", began)
    outcome = target_outcome(candidate, str(target), attempt.log, attempt.outcome.promoted)
    outcome.seconds = time.monotonic() - began
    return outcome
