"""``pgdrill restore-test --backend k8s|kind`` (issue 16, item 2).

- every manifest the restore-test builders produce validates against the vendored CRDs (strict,
  as tests/test_kubernetes_manifests.py does), carries pgdrill's labels, has no ``spec.plugins``
  (it cannot archive), recovers the source's serverName, runs the source's image, and sets
  ``wal.maxParallel``; a scratch archive resolving to the source's serverName path is refused;
- the pure parts of the live path: the source Cluster read, names, sizes, phases from recorded-
  format Job logs, failure reasons;
- the live path against a fake API (waits, failure evidence, the target check's verdict, UID-checked
  deletion on success, failure and Ctrl-C);
- the CLI: ``--backend k8s``/``kind`` without a reachable cluster is one line and exit 2;
- ``@pytest.mark.cluster``: the whole restore-test on kind or an existing cluster, skipped with the
  reason when none is reachable.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from pgdrill.archive.catalog import read_catalog
from pgdrill.audit.analyze import analyze
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.backends.kubernetes import manifests as m
from pgdrill.backends.kubernetes import status as st
from pgdrill.backends.kubernetes.kube import Owned
from pgdrill.backends.kubernetes.schema import errors
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.errors import UsageError
from pgdrill.findings.codes import RECOVERY_TARGET_UNREACHED
from pgdrill.restoretest.checks import target_outcome
from pgdrill.restoretest.cli import restore_test_main
from pgdrill.restoretest.kubernetes import (
    KubernetesRestoreOptions,
    RestoreTestObjects,
    ScratchArchive,
    SecretKey,
    SourceArchive,
    recovery_target,
    refuse_scratch,
    restore_test_names,
    source_facts,
    storage_size_for,
)
from pgdrill.restoretest.kubernetes_phases import failed_step, recovery_marks, split_phases
from pgdrill.restoretest.kubernetes_session import RestoreTestSession, owned_pvcs
from pgdrill.restoretest.plan import plan_restore
from pgdrill.restoretest.spec import RestoreTestSpec
from pgdrill.results import DetectorStatus

LOCATION = "s3://eurosky-backups-prod/postgres/postgres-cluster"
IMAGE = "ghcr.io/cloudnative-pg/postgresql:18.1-system-trixie"
RUN = "20261202T010000Z-3b5c39-restore-test-postgres-cluster"
BACKUP_ID = "20261201T020000"
SECRET_VALUES = ("AKIAREADONLYEXAMPLE", "read-only-secret-value-not-to-print")
ROOT = Path(__file__).resolve().parents[1]


def objects(**overrides) -> RestoreTestObjects:
    names = restore_test_names("postgres-cluster", RUN)
    source = SourceArchive.from_location(LOCATION, "https://s3.fr-par.scw.cloud")
    fields = dict(names=names, namespace=names.namespace, own_namespace=True, source=source, image_name=IMAGE,
                  wal_max_parallel=1, location=LOCATION)
    fields.update(overrides)
    return RestoreTestObjects(**fields)  # type: ignore[arg-type]


TARGETS = {
    "end": recovery_target(BACKUP_ID),
    "lsn": recovery_target(BACKUP_ID, target_lsn="0/9000060"),
    "time": recovery_target(BACKUP_ID, target_time="2026-12-01T10:00:00+00:00"),
    "name": recovery_target(BACKUP_ID, target_name="before_migration"),
}
VARIANTS = {
    "own-namespace": {},
    "existing-namespace+secret": dict(namespace="prod-db", own_namespace=False, credentials_secret="s3-readonly",
                                      access_key_id_key="AWS_ACCESS_KEY_ID",
                                      secret_access_key_key="AWS_SECRET_ACCESS_KEY"),
    "maxparallel-8+class": dict(wal_max_parallel=8, storage_size="200Gi", storage_class="fast-ssd"),
    "endpoint-ca": dict(source=replace(SourceArchive.from_location(LOCATION, "https://minio.storage:9000"),
                                       endpoint_ca=SecretKey("minio-ca", "ca.crt"))),
    "bucket-root": dict(source=SourceArchive.from_location("s3://backups/postgres-cluster", "http://minio:9000")),
}


def all_manifests() -> dict[str, dict]:
    found = {}
    for (variant, fields), (label, target) in itertools.product(VARIANTS.items(), TARGETS.items()):
        objs = objects(**fields)
        for manifest in [*objs.printable(target), objs.secret(*SECRET_VALUES).to_dict()
                         if not objs.credentials_secret else objs.object_store().to_dict()]:
            found[f"{variant}/{label}/{manifest['kind']}"] = manifest
    return found


ALL = all_manifests()


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_restore_test_manifest_validates_against_the_crds(name: str) -> None:
    manifest = ALL[name]
    assert errors(manifest) == []
    labels = manifest["metadata"]["labels"]
    assert labels[m.LABEL_MANAGED_BY] == "pgdrill" and labels[m.LABEL_RUN_ID] == RUN
    assert labels["pgdrill.io/restore-test"] == restore_test_names("postgres-cluster", RUN).short_id


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_cluster_cannot_archive_and_recovers_the_sources_server_name(variant: str) -> None:
    objs = objects(**VARIANTS[variant])
    for target in TARGETS.values():
        spec = objs.cluster(objs.names.cluster, target).to_dict()["spec"]
        assert "plugins" not in spec  # without spec.plugins the restored cluster archives nothing
        assert "backup" not in spec
        external = spec["externalClusters"]
        assert [e["name"] for e in external] == [spec["bootstrap"]["recovery"]["source"]]
        assert external[0]["plugin"] == {"name": "barman-cloud.cloudnative-pg.io", "parameters": {
            "barmanObjectName": objs.names.object_store, "serverName": "postgres-cluster"}}
        assert spec["imageName"] == IMAGE and spec["instances"] == 1
        assert spec["bootstrap"]["recovery"]["recoveryTarget"]["backupID"] == BACKUP_ID
    store = objs.object_store().to_dict()["spec"]["configuration"]
    assert "serverName" not in store
    assert store["wal"] == {"maxParallel": objs.wal_max_parallel}
    assert store["destinationPath"] == objs.source.destination_path


def test_the_documented_shape_one_manifest_each() -> None:
    objs = objects(wal_max_parallel=8)
    cluster = objs.cluster(objs.names.cluster, TARGETS["time"]).to_dict()
    assert cluster["metadata"]["name"] == "postgres-cluster-restore-test-" + objs.names.short_id
    assert cluster["metadata"]["annotations"] == {"pgdrill.io/source": LOCATION, "pgdrill.io/backup-id": BACKUP_ID}
    assert cluster["spec"]["bootstrap"]["recovery"]["recoveryTarget"] == {
        "backupID": BACKUP_ID, "targetTime": "2026-12-01T10:00:00+00:00"}
    assert cluster["spec"]["inheritedMetadata"]["labels"][m.LABEL_MANAGED_BY] == "pgdrill"
    store = objs.object_store().to_dict()["spec"]["configuration"]
    assert store == {"destinationPath": "s3://eurosky-backups-prod/postgres", "endpointURL": "https://s3.fr-par.scw.cloud",
                     "s3Credentials": {"accessKeyId": {"name": objs.names.secret, "key": "ACCESS_KEY_ID"},
                                       "secretAccessKey": {"name": objs.names.secret, "key": "ACCESS_SECRET_KEY"}},
                     "wal": {"maxParallel": 8}}
    existing = objects(**VARIANTS["existing-namespace+secret"]).object_store().to_dict()["spec"]["configuration"]
    assert existing["s3Credentials"]["accessKeyId"] == {"name": "s3-readonly", "key": "AWS_ACCESS_KEY_ID"}
    ca = objects(**VARIANTS["endpoint-ca"]).object_store().to_dict()["spec"]["configuration"]
    assert ca["endpointCA"] == {"name": "minio-ca", "key": "ca.crt"}


def test_secret_values_go_to_the_apiserver_only_never_to_what_is_printed() -> None:
    objs = objects()
    applied = objs.secret(*SECRET_VALUES).to_dict()
    assert applied["stringData"] == {"ACCESS_KEY_ID": SECRET_VALUES[0], "ACCESS_SECRET_KEY": SECRET_VALUES[1]}
    printed = json.dumps(objs.printable(TARGETS["end"]))
    assert not any(v in printed for v in SECRET_VALUES)
    assert "never printed" in printed
    assert not any(v in repr(objs.secret(*SECRET_VALUES)) for v in SECRET_VALUES)
    with pytest.raises(UsageError, match="exists already"):
        objects(**VARIANTS["existing-namespace+secret"]).secret(*SECRET_VALUES)
    existing = json.dumps(objects(**VARIANTS["existing-namespace+secret"]).printable(TARGETS["end"]))
    assert '"Secret"' not in existing and '"Namespace"' not in existing


# --- scratch destinations: refused when they resolve to the source -------------------------------------


@pytest.mark.parametrize("scratch, message", [
    (ScratchArchive("other-store", "s3://eurosky-backups-prod/postgres", "postgres-cluster"),
     "source's own serverName path"),
    (ScratchArchive("other-store", "s3://eurosky-backups-prod/postgres/", "postgres-cluster"),
     "source's own serverName path"),
    (ScratchArchive("postgres-cluster-restore-test-x-store", "s3://scratch/x", "y"), "read-only ObjectStore"),
])
def test_a_scratch_archive_into_the_source_is_refused(scratch: ScratchArchive, message: str) -> None:
    source = SourceArchive.from_location(LOCATION)
    with pytest.raises(UsageError, match=message):
        refuse_scratch(source, scratch.object_store if "read-only" in message else "ro-store", scratch)
    if "serverName path" in message:
        with pytest.raises(UsageError, match=message):
            objects(scratch=scratch).cluster("postgres-cluster-restore-test-x", TARGETS["end"])


def test_a_scratch_archive_elsewhere_gets_its_own_server_name() -> None:
    scratch = ScratchArchive("scratch-store", "s3://eurosky-backups-prod/postgres", "postgres-cluster-rt")
    objs = objects(scratch=scratch)
    cluster = objs.cluster(objs.names.cluster, TARGETS["end"]).to_dict()
    assert errors(cluster) == []
    assert cluster["spec"]["plugins"] == [{"name": m.PLUGIN_NAME, "isWALArchiver": True, "parameters": {
        "barmanObjectName": "scratch-store", "serverName": "postgres-cluster-rt"}}]
    assert cluster["spec"]["externalClusters"][0]["plugin"]["parameters"]["serverName"] == "postgres-cluster"


# --- the source Cluster, names, sizes, options -------------------------------------------------------------


def source_cluster(server: str | None = "postgres-cluster", image: str | None = IMAGE) -> dict:
    params = {"barmanObjectName": "prod-store", **({"serverName": server} if server else {})}
    spec = {"instances": 3, "plugins": [{"name": m.PLUGIN_NAME, "isWALArchiver": True, "parameters": params}]}
    if image:
        spec["imageName"] = image
    return {"metadata": {"name": "postgres-cluster", "namespace": "prod"}, "spec": spec,
            "status": {"image": "ghcr.io/cloudnative-pg/postgresql:18.0"}}


PROD_STORE = {"metadata": {"name": "prod-store"}, "spec": {"configuration": {
    "destinationPath": "s3://eurosky-backups-prod/postgres/", "endpointURL": "https://s3.fr-par.scw.cloud",
    "endpointCA": {"name": "scw-ca", "key": "ca.crt"},
    "s3Credentials": {"accessKeyId": {"name": "rw", "key": "ID"}, "secretAccessKey": {"name": "rw", "key": "KEY"}}}}}


def test_source_facts_take_the_image_and_endpoint_of_the_source_cluster() -> None:
    source = SourceArchive.from_location(LOCATION)
    facts = source_facts(source_cluster(), PROD_STORE, source)
    assert facts.image_name == IMAGE and facts.source.endpoint_url == "https://s3.fr-par.scw.cloud"
    assert facts.source.endpoint_ca is None  # its CA Secret lives in another namespace
    assert source_facts(source_cluster(), PROD_STORE, source, same_namespace=True).source.endpoint_ca == \
        SecretKey("scw-ca", "ca.crt")
    assert source_facts(source_cluster(image=None), None, source).image_name == "ghcr.io/cloudnative-pg/postgresql:18.0"
    assert source_facts(source_cluster(), None, source, image_override="my/pg:18").image_name == "my/pg:18"
    assert source_facts(source_cluster(server=None), None, source).image_name == IMAGE  # serverName = Cluster name
    assert source_facts(None, None, source, image_override="my/pg:18").image_name == "my/pg:18"


@pytest.mark.parametrize("cluster, store, message", [
    (source_cluster(server="postgres-cluster-v2"), None, "archives as serverName 'postgres-cluster-v2'"),
    (source_cluster(), {"spec": {"configuration": {"destinationPath": "s3://other/postgres"}}}, "archives to s3://other"),
    (None, None, "give --source-cluster"),
])
def test_source_facts_refuse_a_source_cluster_that_archives_elsewhere(cluster, store, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        source_facts(cluster, store, SourceArchive.from_location(LOCATION))


def test_locations_names_and_sizes() -> None:
    assert SourceArchive.from_location(LOCATION).destination_path == "s3://eurosky-backups-prod/postgres"
    assert SourceArchive.from_location("s3://b/srv").destination_path == "s3://b/"
    with pytest.raises(UsageError, match="no serverName"):
        SourceArchive.from_location("s3://b")
    names = restore_test_names("a-very-long-server-name-" * 3, RUN)
    assert max(len(n) for n in (names.cluster, names.attempt(2), names.target_check)) <= 50
    for name in (names.cluster, names.attempt(1), names.target_check, names.object_store, names.secret,
                 names.namespace):
        assert m.check_name(name)
    assert restore_test_names("postgres-cluster", RUN) == restore_test_names("postgres-cluster", RUN)
    assert restore_test_names("postgres-cluster", RUN + "x").short_id != names.short_id
    weird = restore_test_names("pg", "run id with spaces/and:colons")
    m.Meta("x", None, weird.label_run_id)  # a valid label value
    assert storage_size_for(None, 0) == "3Gi"
    assert storage_size_for(100 * (1 << 30), 40 * (1 << 30), 8) == "128Gi"


@pytest.mark.parametrize("options, message", [
    (KubernetesRestoreOptions(credentials_secret="s3"), "give --namespace"),
    (KubernetesRestoreOptions(namespace="prod", endpoint_ca="ca"), "SECRET/KEY"),
    (KubernetesRestoreOptions(scratch_server_name="x"), "needs --scratch-object-store"),
    (KubernetesRestoreOptions(namespace="Prod_DB"), "not a valid Kubernetes name"),
    (KubernetesRestoreOptions(storage_size="200GB"), "expected e.g. 20Gi"),
    (KubernetesRestoreOptions(source_cluster="postgres-cluster"), "give NAMESPACE/NAME"),
])
def test_bad_option_combinations_are_one_line(options: KubernetesRestoreOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        options.check()
    assert KubernetesRestoreOptions(source_cluster="prod/postgres-cluster").source_ref == ("prod", "postgres-cluster")
    assert KubernetesRestoreOptions(namespace="n", source_cluster="pc").source_ref == ("n", "pc")


# --- phases and failure reasons from the recovery Job's log -------------------------------------------

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=timezone.utc).timestamp()


def cnpg_line(offset: float, message: str, severity: str = "LOG", logger: str = "postgres") -> str:
    """A line as CNPG writes it (RFC 3339 ``ts`` with nanoseconds; tests/test_kubernetes_waits.py)."""
    when = datetime.fromtimestamp(T0 + offset, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    if logger != "postgres":
        return json.dumps({"level": "info", "ts": when, "logger": logger, "msg": message})
    return json.dumps({"level": "info", "ts": when, "logger": "postgres", "msg": "record",
                       "record": {"error_severity": severity, "message": message, "backend_type": "startup"}})


JOB_LOG = "\n".join([
    cnpg_line(5.0, "Starting barman-cloud-restore", logger="barman-cloud-restore"),
    cnpg_line(40.0, "starting archive recovery"),
    cnpg_line(41.0, 'restored log file "000000010000000000000002" from archive'),
    cnpg_line(42.0, 'restored log file "000000010000000000000003" from archive'),
    cnpg_line(44.0, "consistent recovery state reached at 0/3000100"),
    cnpg_line(45.0, 'restored log file "000000010000000000000004" from archive'),
    cnpg_line(70.0, "redo done at 0/9000028 system usage: CPU: user: 0.01 s"),
    cnpg_line(71.0, "selected new timeline ID: 2"),
    cnpg_line(72.0, "archive recovery complete"),
])


def test_phases_split_at_postgres_start_consistency_and_redo_done() -> None:
    phases, details = split_phases(T0, T0 + 100.0, T0 + 101.5, T0 + 80.0, {"pod-a": JOB_LOG})
    assert phases == pytest.approx({"restore": 40.0, "replay_to_consistency": 4.0, "replay_to_end": 26.0,
                                    "promote": 30.0, "first_write": 1.5})
    assert sum(phases.values()) == pytest.approx(101.5)
    assert details["instance_start_s"] == pytest.approx(20.0) and "Job pod log" in details["basis"]
    # a failed retry pod (no redo done) does not count; the pod that finished does
    assert recovery_marks({"failed": cnpg_line(10.0, "starting archive recovery"), "ok": JOB_LOG})["postgres_start"] \
        == pytest.approx(T0 + 40.0)


def test_phases_without_log_lines_invent_no_replay_rate() -> None:
    phases, details = split_phases(T0, T0 + 100.0, T0 + 101.0, T0 + 80.0, {})
    assert phases == pytest.approx({"restore": 80.0, "promote": 20.0, "first_write": 1.0})
    assert "job level only" in details["basis"]
    # a node clock ahead of this machine's cannot make a phase negative or the sum wrong
    skewed, _ = split_phases(T0 - 500.0, T0 - 400.0, T0 - 399.0, None, {"p": JOB_LOG})
    assert min(skewed.values()) >= 0 and sum(skewed.values()) == pytest.approx(101.0)


@pytest.mark.parametrize("verdict, job_seen, step", [
    (st.WaitState("timeout", "no result after 3600s"), True, "timeout"),
    (st.WaitState("failed", "Job failed: BackoffLimitExceeded", ("FATAL: recovery ended before configured "
                                                                 "recovery target was reached",)), True, "replay"),
    (st.WaitState("failed", "2 pods failed", ("ERROR: encountered an error while checking the presence of first "
                                              "needed WAL in the archive: not found",)), True, "preflight"),
    (st.WaitState("failed", "2 pods failed", ("ERROR: botocore: An error occurred (AccessDenied) when calling "
                                              "the GetObject operation",)), True, "infrastructure"),
    (st.WaitState("failed", "Invalid cluster definition"), False, "infrastructure"),
])
def test_whose_problem_a_failed_recovery_is(verdict: st.WaitState, job_seen: bool, step: str) -> None:
    assert failed_step(verdict, job_seen) == step


# --- the live path against a fake API ------------------------------------------------------------


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def candidate():
    synth = SyntheticArchive(root="postgres/postgres-cluster/")
    start = NOW - timedelta(hours=30)
    synth.add_wal_range(1, 1, 40, start, step=timedelta(minutes=30))
    synth.add_backup(BACKUP_ID, begin=30, end=31, begin_time=start + timedelta(hours=14, minutes=30))

    class Store:
        def list(self, prefix):
            yield from synth.listing(prefix)

        def get(self, key):
            return synth.get(key)

    catalog = read_catalog(Store(), "postgres/postgres-cluster/", "postgres-cluster")
    report = analyze(catalog, AuditThresholds(), NOW, location=LOCATION)
    return plan_restore(catalog, report, RestoreTestSpec(location=LOCATION)).candidates[0]


class FakeApi:
    """Answers the calls the session makes, from scripted states; records creates and deletes."""

    def __init__(self, job_states: list[dict | None], pods: list[dict], logs: str, ready_after: int | None):
        self.created: list[dict] = []
        self.deleted: list[Owned] = []
        self.polls = 0
        self.job_states, self.pods_, self.log_text, self.ready_after = job_states, pods, logs, ready_after
        self.context = "fake"
        self.batch = SimpleNamespace(read_namespaced_job=self._job)
        self.core = SimpleNamespace(list_namespaced_pod=self._pods,
                                    list_namespaced_persistent_volume_claim=self._pvcs,
                                    read_namespaced_pod_log=lambda *a, **k: self.log_text)

    def create(self, manifest: dict) -> dict:
        errors_found = errors(manifest)
        assert errors_found == [], errors_found
        uid = f"uid-{len(self.created) + 1}"
        self.created.append(manifest)
        return {**manifest, "metadata": {**manifest["metadata"], "uid": uid}}

    def delete(self, ref: Owned) -> None:
        self.deleted.append(ref)

    def plain(self, obj):
        return obj

    def logs(self, namespace, pod, container=None, tail=500):
        return self.log_text

    def get_custom(self, kind, name, namespace):
        if kind != "Cluster" or not any(c["metadata"]["name"] == name for c in self.created if c["kind"] == kind):
            return None
        self.polls += 1
        status = {"phase": "Setting up primary", "conditions": []}
        if self.ready_after is not None and self.polls > self.ready_after:
            status = {"phase": "Cluster in healthy state", "readyInstances": 1, "instances": 1,
                      "conditions": [{"type": "Ready", "status": "True"}]}
        return {"metadata": {"name": name}, "spec": {"instances": 1}, "status": status}

    def _job(self, name, namespace):
        state = self.job_states[min(self.polls, len(self.job_states) - 1)]
        if state is None:
            from kubernetes.client.exceptions import ApiException

            raise ApiException(status=404)
        return state

    def _pods(self, namespace, label_selector=""):
        return SimpleNamespace(items=self.pods_ if "full-recovery" in label_selector else [])

    def _pvcs(self, namespace, label_selector=""):
        return SimpleNamespace(items=[
            {"metadata": {"name": "x-1", "uid": "pvc-ours", "ownerReferences": [{"uid": "uid-4"}]}},
            {"metadata": {"name": "x-1-other", "uid": "pvc-theirs", "ownerReferences": [{"uid": "someone-else"}]}}])


def session_for(api: FakeApi, **fields) -> RestoreTestSession:
    settings = KubernetesSettings(poll_seconds=0.0, failed_recovery_pods=2)
    return RestoreTestSession(api, objects(**fields), settings, progress=lambda _: None)  # type: ignore[arg-type]


def job_state(complete: bool = False, failed: int = 0, reason: str | None = None) -> dict:
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    if reason:
        conditions.append({"type": "Failed", "status": "True", "reason": reason, "message": "backoff limit"})
    return {"metadata": {"name": "j"}, "status": {"failed": failed, "conditions": conditions}}


def prepared(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> RestoreTestSession:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_VALUES[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUES[1])
    session = session_for(api, own_namespace=False, namespace="restore-tests")
    session.prepare(RestoreTestSpec(location=LOCATION))
    return session


def test_a_target_check_pgsql_refuses_is_a_finding_and_everything_is_deleted_by_uid(monkeypatch) -> None:
    fatal = "\n".join([cnpg_line(1.0, 'restored log file "000000010000000000000020" from archive'),
                       cnpg_line(2.0, "recovery ended before configured recovery target was reached", "FATAL")])
    pods = [{"metadata": {"name": f"c-1-full-recovery-{i}"}, "status": {"phase": "Failed"}, "spec": {
        "containers": [{"name": "postgres"}]}} for i in range(2)]
    api = FakeApi([None, job_state(failed=2)], pods, fatal, ready_after=None)
    session = prepared(api, monkeypatch)
    cand = candidate()
    attempt, _ = session.recover(cand, session.objects.names.target_check,
                                 recovery_target(BACKUP_ID, target_lsn="0/28000000"), timeout=60, probe=False)
    assert attempt.failed and attempt.outcome.failed_step == "replay"
    outcome = target_outcome(cand, "0/28000000", attempt.log, attempt.outcome.promoted)
    assert outcome.status == DetectorStatus.FINDINGS and outcome.findings[0].code == RECOVERY_TARGET_UNREACHED
    assert [c["kind"] for c in api.created] == ["Secret", "ObjectStore", "Cluster"]
    credentials = api.created[1]["spec"]["configuration"]["s3Credentials"]
    assert credentials["accessKeyId"]["name"] == session.objects.names.secret
    session.close()
    assert [(r.kind, r.uid) for r in api.deleted] == [("Cluster", "uid-3"), ("ObjectStore", "uid-2"),
                                                      ("Secret", "uid-1")]


def test_a_ready_recovery_without_probe_and_pvcs_of_only_our_cluster(monkeypatch) -> None:
    pods = [{"metadata": {"name": "c-1-full-recovery-0"}, "status": {"phase": "Succeeded"},
             "spec": {"containers": [{"name": "postgres"}]}}]
    api = FakeApi([None, job_state(), job_state(complete=True)], pods, JOB_LOG, ready_after=2)
    session = prepared(api, monkeypatch)
    session.create(m.Namespace(m.Meta("unrelated", None, "r")).to_dict())  # uid-3, then the Cluster is uid-4
    attempt, details = session.recover(candidate(), session.objects.names.cluster, recovery_target(BACKUP_ID), 60,
                                       probe=False)
    assert attempt.failed is None and attempt.outcome.promoted
    assert attempt.outcome.restored_segments == ["000000010000000000000002", "000000010000000000000003",
                                                 "000000010000000000000004"]
    assert set(attempt.outcome.phases) == {"replay_to_consistency", "replay_to_end", "promote", "first_write"}
    session.delete_cluster(session.objects.names.cluster)
    assert [(r.kind, r.uid) for r in api.deleted] == [("Cluster", "uid-4"), ("PersistentVolumeClaim", "pvc-ours")]


def test_ctrl_c_during_the_wait_still_deletes_what_was_created(monkeypatch) -> None:
    api = FakeApi([None], [], "", ready_after=None)
    session = prepared(api, monkeypatch)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    api.batch.read_namespaced_job = interrupted
    with pytest.raises(KeyboardInterrupt):
        try:
            session.recover(candidate(), session.objects.names.cluster, recovery_target(BACKUP_ID), 60)
        finally:
            session.close()
    assert sorted((r.kind, r.uid) for r in api.deleted) == [("Cluster", "uid-3"), ("ObjectStore", "uid-2"),
                                                            ("Secret", "uid-1")]


def test_an_own_namespace_is_deleted_alone_and_keep_deletes_nothing(monkeypatch) -> None:
    api = FakeApi([None], [], "", ready_after=None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_VALUES[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUES[1])
    session = session_for(api)
    session.prepare(RestoreTestSpec(location=LOCATION))
    assert [c["kind"] for c in api.created] == ["Namespace", "Secret", "ObjectStore"]
    session.close()
    assert [(r.kind, r.name, r.uid) for r in api.deleted] == [("Namespace", session.namespace, "uid-1")]
    kept_api = FakeApi([None], [], "", ready_after=None)
    kept = session_for(kept_api)
    kept.prepare(RestoreTestSpec(location=LOCATION))
    kept.close(keep=True)
    assert kept_api.deleted == [] and kept.kept and "kubectl" in json.dumps(kept.keep_info())


def test_owned_pvcs_match_the_cluster_uid_only() -> None:
    pvcs = [{"metadata": {"name": "a", "uid": "1", "ownerReferences": [{"uid": "c1"}]}},
            {"metadata": {"name": "b", "uid": "2", "ownerReferences": [{"uid": "c2"}]}},
            {"metadata": {"name": "c", "uid": "3"}}]
    assert owned_pvcs(pvcs, "c1") == [("a", "1")]


class FakeCluster(FakeApi):
    """A whole run: each Cluster is Ready on its second poll and its Job pod's log is the one given,
    except clusters named in ``failing`` whose Job fails with a PostgreSQL FATAL."""

    def __init__(self, logs_by_suffix: dict[str, str], failing: tuple[str, ...] = ()):
        super().__init__([None], [], "", ready_after=None)
        self.logs_by_suffix, self.failing, self.cluster_polls = logs_by_suffix, failing, {}
        self.core.read_namespace = self._no_namespace

    def _no_namespace(self, name):
        from kubernetes.client.exceptions import ApiException

        raise ApiException(status=404)

    def get_custom(self, kind, name, namespace):
        if kind != "Cluster" or not any(c["metadata"]["name"] == name for c in self.created if c["kind"] == kind):
            return None
        polls = self.cluster_polls[name] = self.cluster_polls.get(name, 0) + 1
        ready = polls > 1 and name not in self.failing
        status = ({"phase": "Cluster in healthy state", "readyInstances": 1, "instances": 1,
                   "conditions": [{"type": "Ready", "status": "True"}]} if ready else {"phase": "Setting up primary"})
        return {"metadata": {"name": name}, "spec": {"instances": 1}, "status": status}

    def _job(self, name, namespace):
        cluster = name.removesuffix("-1-full-recovery")
        return job_state(failed=2) if cluster in self.failing else job_state(complete=True)

    def _pods(self, namespace, label_selector=""):
        cluster = label_selector.split(",")[0].split("=")[1]
        phase = "Failed" if cluster in self.failing else "Succeeded"
        pods = [{"metadata": {"name": f"{cluster}-1-full-recovery-{i}"}, "status": {"phase": phase},
                 "spec": {"containers": [{"name": "full-recovery"}]}} for i in range(2)]
        return SimpleNamespace(items=pods if "full-recovery" in label_selector else [])

    def logs(self, namespace, pod, container=None, tail=500):
        if pod.split("-1-full-recovery")[0] in self.failing:
            return cnpg_line(1.0, "could not locate a valid checkpoint record", "FATAL")
        return next(text for suffix, text in self.logs_by_suffix.items() if pod.split("-1-full-recovery")[0]
                    .endswith(suffix))


def two_backups():
    synth = SyntheticArchive(root="postgres/postgres-cluster/")
    start = NOW - timedelta(hours=30)
    synth.add_wal_range(1, 1, 40, start, step=timedelta(minutes=30))
    synth.add_backup("20261130T060000", begin=2, end=3, begin_time=start + timedelta(minutes=30))
    synth.add_backup(BACKUP_ID, begin=30, end=31, begin_time=start + timedelta(hours=14, minutes=30))

    class Store:
        def list(self, prefix):
            yield from synth.listing(prefix)

        def get(self, key):
            return synth.get(key)

    catalog = read_catalog(Store(), "postgres/postgres-cluster/", "postgres-cluster")
    return catalog, analyze(catalog, AuditThresholds(), NOW, location=LOCATION)


TARGET_LOG = "\n".join([cnpg_line(1.0, "starting point-in-time recovery to WAL location (LSN) \"0/28000000\""),
                        cnpg_line(2.0, 'recovery stopping after WAL location (LSN) "0/28000000"'),
                        cnpg_line(3.0, "redo done at 0/28000000")])


@pytest.mark.parametrize("failing_first", [False, True])
def test_a_whole_run_on_a_fake_api_falls_back_proves_the_end_and_deletes_its_namespace(
        monkeypatch, failing_first: bool) -> None:
    from pgdrill.config import Config
    from pgdrill.findings.codes import BACKUP_UNUSABLE
    from pgdrill.postgres.wal import Lsn
    from pgdrill.restoretest import kubernetes_run
    from pgdrill.results import DetectorOutcome, Verdict

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_VALUES[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUES[1])
    monkeypatch.setattr(kubernetes_run, "read_source", lambda spec, config, now: two_backups())
    clean = DetectorOutcome("physical", DetectorStatus.CLEAN, "pg_amcheck: no problem", [], 0.0)
    monkeypatch.setattr(kubernetes_run, "check_physical", lambda tools, handle: SimpleNamespace(outcome=clean))
    # What goes through the port-forward: the write probe, and the history's switch point in segment 40.
    monkeypatch.setattr(RestoreTestSession, "sql", lambda self, cluster, query, params=(): [])
    monkeypatch.setattr(RestoreTestSession, "switch_point", lambda self, handle: (2, Lsn(40 * (16 << 20) + 0x28)))
    names = restore_test_names("postgres-cluster", "run-1")
    api = FakeCluster({"-t": TARGET_LOG, "": JOB_LOG}, failing=(names.cluster,) if failing_first else ())
    connection = kubernetes_run.KubeConnection(api, "k8s", {"kubernetes": "v1.36.1"})  # type: ignore[arg-type]
    options = KubernetesRestoreOptions(image_name=IMAGE, endpoint_url="https://s3.fr-par.scw.cloud")
    config = Config(kubernetes=KubernetesSettings(poll_seconds=0.0))
    result = kubernetes_run.run_kubernetes_restore_test(RestoreTestSpec(location=LOCATION, wal_max_parallel=4),
                                                        config, "run-1", options, connection, progress=lambda _: None)
    statuses = {d.name: d.status for d in result.detectors}
    assert statuses["end_of_archive"] == DetectorStatus.CLEAN and statuses["target"] == DetectorStatus.CLEAN
    clusters = [c for c in api.created if c["kind"] == "Cluster"]
    restored = "20261130T060000" if failing_first else BACKUP_ID
    assert [c["spec"]["bootstrap"]["recovery"]["recoveryTarget"] for c in clusters] == [
        *([{"backupID": BACKUP_ID}] if failing_first else []), {"backupID": restored},
        {"backupID": restored, "targetLSN": "0/28000000"}]
    assert all("plugins" not in c["spec"] for c in clusters)
    assert [c["kind"] for c in api.created][:3] == ["Namespace", "Secret", "ObjectStore"]
    assert api.created[2]["spec"]["configuration"]["wal"] == {"maxParallel": 4}
    if failing_first:
        assert result.verdict == Verdict.FAILED and BACKUP_UNUSABLE in {f.code for f in result.findings}
    else:
        assert result.verdict == Verdict.PASSED, result.verdict_reasons
    assert result.recovery["backup_id"] == restored and result.backend["name"] == "k8s"
    assert set(result.rto.phases) >= {"preflight", "restore", "replay_to_consistency", "replay_to_end", "promote",
                                      "first_write"}
    assert result.recovery["restored_segments"][:2] == ["000000010000000000000002", "000000010000000000000003"]
    printed = json.dumps(result.to_dict())
    assert not any(v in printed for v in SECRET_VALUES)
    assert result.recovery["kubernetes"]["manifests"][-1]["spec"]["imageName"] == IMAGE
    deleted_clusters = [r.name for r in api.deleted if r.kind == "Cluster"]
    assert deleted_clusters == [c["metadata"]["name"] for c in clusters]  # each attempt, then the target check
    assert api.deleted[-1].kind == "Namespace" and api.deleted[-1].uid == "uid-1"


# --- the CLI: no reachable cluster is one line and exit 2 ---------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET_VALUES[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_VALUES[1])
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    return tmp_path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert SECRET_VALUES[1] not in err[0]
    return err[0]


def test_k8s_without_a_kubeconfig_is_one_line_and_exit_2(cli_env: Path, capsys) -> None:
    code = restore_test_main([LOCATION, "--backend", "k8s", "--image-name", IMAGE,
                              "--kubeconfig", str(cli_env / "missing")])
    assert code == 2
    assert "no kubeconfig at" in one_error_line(capsys)
    assert sorted(p.name for p in cli_env.iterdir()) == []  # no reports, nothing


def test_kind_without_docker_or_kind_is_one_line_and_exit_2(cli_env: Path, capsys) -> None:
    import shutil

    from test_kubernetes_cluster import docker_works

    works, _ = docker_works()
    if works and shutil.which("kind"):
        pytest.skip("kind and Docker are available here: --backend kind would set up a cluster")
    (cli_env / "kind-config.yaml").write_text((ROOT / "kind-config.yaml").read_text())
    assert restore_test_main([LOCATION, "--backend", "kind", "--image-name", IMAGE]) == 2
    line = one_error_line(capsys)
    assert "the kind backend needs" in line
    assert sorted(p.name for p in cli_env.iterdir()) == ["kind-config.yaml"]  # no reports, no .pytest-kind


def test_kubernetes_flags_need_a_kubernetes_backend_and_an_image(cli_env: Path, capsys) -> None:
    assert restore_test_main([LOCATION, "--namespace", "prod"]) == 2
    assert "--namespace only apply to --backend k8s or kind" in one_error_line(capsys)
    assert restore_test_main([LOCATION, "--backend", "k8s"]) == 2
    assert "--source-cluster" in one_error_line(capsys)
    assert restore_test_main([LOCATION, "--backend", "k8s", "--image-name", IMAGE, "--k8s-secret", "s"]) == 2
    assert "give --namespace" in one_error_line(capsys)


class _NoCnpg(BaseHTTPRequestHandler):
    """An apiserver without CNPG: /version answers, every CRD read is a 404 Status."""

    writes: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.startswith("/version"):
            body, code = {"major": "1", "minor": "36", "gitVersion": "v1.36.1", "gitCommit": "0" * 40,
                          "gitTreeState": "clean", "buildDate": "2026-05-01T00:00:00Z", "goVersion": "go1.25",
                          "compiler": "gc", "platform": "linux/amd64"}, 200
        else:
            body, code = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                          "code": 404}, 404
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        type(self).writes.append(self.path)
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_k8s_without_cnpg_is_one_line_exit_2_and_nothing_is_created(cli_env: Path, capsys) -> None:
    import shutil

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed here")
    server = HTTPServer(("127.0.0.1", 0), _NoCnpg)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = cli_env.parent / f"{cli_env.name}-kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "drill",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "drill", "context": {"cluster": "c", "user": "u"}}]}))
    try:
        code = restore_test_main([LOCATION, "--backend", "k8s", "--image-name", IMAGE, "--kubeconfig", str(kubeconfig)])
    finally:
        server.shutdown()
    assert code == 2
    line = one_error_line(capsys)
    assert "CloudNativePG is not installed in context 'drill'" in line and "not-a-real-token" not in line
    assert _NoCnpg.writes == [] and sorted(p.name for p in cli_env.iterdir()) == []


# --- on a real cluster ------------------------------------------------------------------------------
# Skipped with the reason (printed) when no kind/Docker or kubeconfig is reachable, as in
# tests/test_kubernetes_cluster.py: the source is a drill cluster archiving to the drill's MinIO.


@pytest.fixture(scope="module")
def cluster_config():
    from test_kubernetes_cluster import _cluster_or_skip

    from pgdrill.backends.kubernetes import close_kind_environments

    config, settings = _cluster_or_skip()
    yield config, settings
    close_kind_environments()


@pytest.fixture
def source(cluster_config, request, monkeypatch):
    """A drill backend with a source Cluster: a backup, rows after it, WAL archived."""
    from test_kubernetes_cluster import _seed, _switch_and_archive

    from pgdrill.backends.kubernetes import make_backend
    from pgdrill.errors import BackendUnavailable

    config, settings = cluster_config
    try:
        backend = make_backend(config, f"t-rt-{request.node.name[5:20]}", settings=settings)
    except BackendUnavailable as exc:
        print(f"\n[pgdrill] cluster test skipped: {exc}")
        pytest.skip(str(exc))
    try:
        if "minio" not in backend._forwards:
            pytest.skip("needs the in-namespace MinIO (s3.mode = 'embedded')")
        cluster = backend.create_source("postgres-cluster")
        _seed(backend, cluster, 2)
        backend.take_backup(cluster)
        walfiles = []
        for i in range(3):
            backend.sql(cluster, "INSERT INTO drill VALUES (%s)", (100 + i,))
            walfiles.append(_switch_and_archive(backend, cluster))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", backend._credentials.access_key_id)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", backend._credentials.secret_access_key)
        yield backend, cluster, walfiles, config, settings
    finally:
        backend.close()


def _restore_test(backend, config, settings, checks=()):
    from pgdrill.restoretest.kubernetes_run import KubeConnection, run_kubernetes_restore_test
    from pgdrill.restoretest.spec import UserCheck

    spec = RestoreTestSpec(location=f"{backend.destination.url}/postgres-cluster",
                           endpoint_url=f"http://127.0.0.1:{backend._forwards['minio'].port}",
                           checks=checks or (UserCheck("rows", "SELECT count(*) FROM drill", min_rows=5),))
    options = KubernetesRestoreOptions(backend=config.backend, namespace=backend.namespace,
                                       source_cluster="postgres-cluster", endpoint_url=backend.objects.endpoint_url)
    connection = KubeConnection(backend.kube, config.backend, {})
    return run_kubernetes_restore_test(spec, replace(config, kubernetes=settings), f"t-{os.getpid()}", options,
                                       connection)


def _nothing_left(backend) -> None:
    for kind in ("Cluster", "ObjectStore"):
        found = backend.kube.list_custom(kind, backend.namespace, "pgdrill.io/restore-test")
        left = [o["metadata"]["name"] for o in found if not o["metadata"].get("deletionTimestamp")]
        assert left == [], (kind, left)


@pytest.mark.cluster
def test_restore_test_on_a_cluster_reaches_the_end_and_leaves_nothing(source) -> None:
    from pgdrill.results import Verdict

    backend, _, _, config, settings = source
    result = _restore_test(backend, config, settings)
    statuses = {d.name: d.status for d in result.detectors}
    assert result.verdict == Verdict.PASSED, result.verdict_reasons
    assert statuses["end_of_archive"] == DetectorStatus.CLEAN and statuses["target"] == DetectorStatus.CLEAN
    assert statuses["user_checks"] == DetectorStatus.CLEAN
    assert result.backend["image"] and result.recovery["wal_max_parallel"] == 1
    _nothing_left(backend)


@pytest.mark.cluster
def test_a_wal_gap_after_the_backup_is_replay_stopped_early_on_kubernetes(source) -> None:
    from pgdrill.findings.codes import REPLAY_STOPPED_EARLY, WAL_GAP
    from pgdrill.postgres.wal import SegmentName

    backend, cluster, walfiles, config, settings = source
    seg = SegmentName.parse(walfiles[1])
    keys = [o.key for o in backend.store.list(backend.destination.key(cluster.server_name, "wals", seg.directory,
                                                                       seg.name)) if ".partial" not in o.key]
    backend.store.delete(keys[0])
    result = _restore_test(backend, config, settings)
    codes = {f.code for f in result.findings}
    assert {REPLAY_STOPPED_EARLY, WAL_GAP} <= codes, result.verdict_reasons  # recovery itself "succeeded"
    assert result.verdict.value == "failed"
    _nothing_left(backend)
