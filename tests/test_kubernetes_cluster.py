"""The kind/k8s backends for real.

Two parts:
- bad input (no Docker, no kubeconfig, wrong context, unreachable API server, CNPG missing):
  these run everywhere and check the one-line error and that nothing was created;
- ``@pytest.mark.cluster`` tests that need a cluster: on kind when ``docker info`` works and
  ``kind`` is installed (``PGDRILL_TEST_BACKEND=kind``, the default), or on an existing cluster
  (``PGDRILL_TEST_BACKEND=k8s`` with a reachable kubeconfig).  Without one they are skipped with
  the reason printed, which pytest reports as skipped, never as passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from pgdrill.backends.base import RecoveryTarget
from pgdrill.backends.kubernetes import (
    KubernetesSettings,
    close_kind_environments,
    make_backend,
)
from pgdrill.backends.kubernetes.kind import KindEnvironment, check_docker
from pgdrill.config import Config
from pgdrill.errors import BackendUnavailable, UsageError
from pgdrill.postgres.wal import Lsn, SegmentName

ROOT = Path(__file__).resolve().parents[1]


def docker_works() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "docker is not installed"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                                timeout=30)
    except subprocess.TimeoutExpired:
        return False, "docker info timed out"
    if result.returncode != 0:
        return False, "docker info failed: " + (result.stderr.strip().splitlines() or ["?"])[-1][:160]
    return True, result.stdout.strip()


def write_kubeconfig(path: Path, server: str, contexts: tuple[str, ...] = ("drill",)) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
    }
    path.write_text(json.dumps(config))
    return path


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# --- bad input: one clear line, nothing created -------------------------------------------------


def test_kind_without_a_docker_engine_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    works, detail = docker_works()
    if works:
        pytest.skip(f"Docker is running here ({detail}); this checks the no-Docker path")
    with pytest.raises(BackendUnavailable) as info:
        check_docker()
    assert "Docker" in one_line(info.value)


def test_kind_backend_refuses_before_creating_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    works, _ = docker_works()
    if works and shutil.which("kind"):
        pytest.skip("kind and Docker are available here: the refusal path does not apply")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kind-config.yaml").write_text((ROOT / "kind-config.yaml").read_text())
    with pytest.raises(BackendUnavailable) as info:
        make_backend(Config(backend="kind"), "nodocker", environment=KindEnvironment(KubernetesSettings()))
    one_line(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kind-config.yaml"]  # no .pytest-kind, no kubeconfig


def test_kind_config_missing_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="kind config kind-config.yaml not found"):
        KindEnvironment(KubernetesSettings()).preflight()


def test_k8s_without_kubeconfig_is_unavailable(tmp_path: Path) -> None:
    settings = KubernetesSettings(kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(BackendUnavailable) as info:
        make_backend(Config(backend="k8s"), "r1", settings=settings)
    assert "no kubeconfig at" in one_line(info.value)


def test_k8s_wrong_context_lists_the_real_ones(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1", ("staging", "prod"))
    settings = KubernetesSettings(kubeconfig=str(kubeconfig), context="stagng")
    with pytest.raises(UsageError) as info:
        make_backend(Config(backend="k8s"), "r1", settings=settings)
    assert not isinstance(info.value, BackendUnavailable)
    assert "'stagng' is not in" in one_line(info.value) and "staging, prod" in str(info.value)


def test_k8s_unreachable_api_server_is_unavailable(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed here")
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:1")
    with pytest.raises(BackendUnavailable) as info:
        make_backend(Config(backend="k8s"), "r1", settings=KubernetesSettings(kubeconfig=str(kubeconfig)))
    text = one_line(info.value)
    assert "cannot reach the Kubernetes API server of context 'drill'" in text
    assert "not-a-real-token" not in text


class _NoCnpgApiServer(BaseHTTPRequestHandler):
    """Answers like an apiserver without CNPG: /version works, every CRD read is a 404 Status.

    A stand-in for a real cluster (there is none here); the response shapes are the
    apiserver's (metav1.Status for NotFound)."""

    requests: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).requests.append(("GET", self.path))
        if self.path.startswith("/version"):
            self._send(200, {"major": "1", "minor": "36", "gitVersion": "v1.36.1", "gitCommit": "0" * 40,
                             "gitTreeState": "clean", "buildDate": "2026-05-01T00:00:00Z", "goVersion": "go1.25",
                             "compiler": "gc", "platform": "linux/amd64"})
        else:
            name = self.path.rsplit("/", 1)[-1].split("?")[0]
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "message": f'customresourcedefinitions.apiextensions.k8s.io "{name}" not found',
                             "code": 404})

    def do_POST(self) -> None:  # noqa: N802
        type(self).requests.append(("POST", self.path))
        self._send(500, {})

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def test_k8s_without_cnpg_says_so_and_creates_nothing(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed here")
    server = HTTPServer(("127.0.0.1", 0), _NoCnpgApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(UsageError) as info:
            make_backend(Config(backend="k8s"), "r1", settings=KubernetesSettings(kubeconfig=str(kubeconfig)))
    finally:
        server.shutdown()
    text = one_line(info.value)
    assert "CloudNativePG is not installed in context 'drill'" in text
    assert "clusters.postgresql.cnpg.io" in text and "objectstores.barmancloud.cnpg.io" in text
    assert not [r for r in _NoCnpgApiServer.requests if r[0] != "GET"]  # nothing was created


# --- real cluster tests ---------------------------------------------------------------------------


def _cluster_or_skip() -> tuple[Config, KubernetesSettings]:
    backend = os.environ.get("PGDRILL_TEST_BACKEND", "kind")
    if backend == "kind":
        works, detail = docker_works()
        reason = None if works else f"no Docker engine ({detail})"
        if reason is None and shutil.which("kind") is None:
            reason = "kind is not installed"
        if reason:
            print(f"\n[pgdrill] cluster test skipped: {reason}")
            pytest.skip(f"needs kind: {reason}")
        settings = KubernetesSettings(kind_config=str(ROOT / "kind-config.yaml"), ready_timeout_seconds=900)
        return Config(backend="kind"), settings
    kubeconfig = os.environ.get("KUBECONFIG", os.path.expanduser("~/.kube/config"))
    if not os.path.isfile(kubeconfig):
        print(f"\n[pgdrill] cluster test skipped: no kubeconfig at {kubeconfig}")
        pytest.skip(f"needs a kubeconfig: none at {kubeconfig}")
    return Config(backend="k8s"), KubernetesSettings(context=os.environ.get("PGDRILL_TEST_CONTEXT"))


@pytest.fixture(scope="module")
def cluster_config() -> Iterator[tuple[Config, KubernetesSettings]]:
    config, settings = _cluster_or_skip()
    yield config, settings
    close_kind_environments()


@pytest.fixture
def backend(cluster_config: tuple[Config, KubernetesSettings], request: pytest.FixtureRequest):
    config, settings = cluster_config
    try:
        made = make_backend(config, f"t-{request.node.name[:20]}", settings=settings)
    except BackendUnavailable as exc:
        print(f"\n[pgdrill] cluster test skipped: {exc}")
        pytest.skip(str(exc))
    yield made
    made.close()


def _seed(backend, cluster, rows: int) -> None:
    backend.run_script(cluster, "CREATE TABLE IF NOT EXISTS drill (i int PRIMARY KEY)")
    for i in range(rows):
        backend.sql(cluster, "INSERT INTO drill VALUES (%s)", (i,))


def _switch_and_archive(backend, cluster) -> str:
    walfile = backend.sql(cluster, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
    backend.sql(cluster, "SELECT pg_switch_wal()")
    backend.wait_archived(cluster, walfile, timeout=120)
    return walfile


@pytest.mark.cluster
def test_backup_then_recover_replays_wal_written_after_the_backup(backend) -> None:
    source = backend.create_source("postgres-cluster")
    _seed(backend, source, 2)
    backup_id = backend.take_backup(source)
    assert backup_id
    backend.sql(source, "INSERT INTO drill VALUES (100)")
    _switch_and_archive(backend, source)
    name = backend.next_recovery_name("postgres-cluster")
    assert name == "postgres-cluster-v2"
    outcome = backend.recover(source, name, None)
    assert outcome.promoted, outcome.fatal_lines
    assert outcome.cluster is not None
    assert backend.sql(outcome.cluster, "SELECT count(*) FROM drill")[0][0] == 3  # row 100 came from WAL
    assert outcome.timeline and outcome.timeline >= 2 and outcome.fork_lsn is not None
    assert set(outcome.phases) == {"recovery_job", "instance_start", "first_write"}
    assert backend.next_recovery_name("postgres-cluster") == "postgres-cluster-v3"
    # A second recovery under an existing name is refused before anything is created.
    with pytest.raises(UsageError, match="already exists"):
        backend.recover(source, name, None)


@pytest.mark.cluster
def test_deleted_wal_makes_an_lsn_recovery_fail_from_the_job_not_a_timeout(backend) -> None:
    source = backend.create_source("postgres-cluster")
    _seed(backend, source, 1)
    backend.take_backup(source)
    walfiles = []
    for i in range(3):
        backend.sql(source, "INSERT INTO drill VALUES (%s)", (200 + i,))
        walfiles.append(_switch_and_archive(backend, source))
    target = Lsn.parse(backend.sql(source, "SELECT pg_current_wal_lsn()::text")[0][0])
    # The delete_wal fault's way (faults/wal.py): the segment's object through backend.store.
    seg = SegmentName.parse(walfiles[1])
    keys = [o.key for o in backend.store.list(backend.destination.key(source.server_name, "wals", seg.directory,
                                                                       seg.name))
            if o.key.rsplit("/", 1)[-1].split(".")[0] == seg.name and ".partial" not in o.key]
    assert len(keys) == 1, keys
    backend.store.delete(keys[0])
    outcome = backend.recover(source, backend.next_recovery_name("postgres-cluster"), RecoveryTarget(lsn=target))
    assert not outcome.promoted
    assert outcome.fatal_lines and "no result after" not in " ".join(outcome.fatal_lines)


@pytest.mark.cluster
def test_primary_kill_fails_over_and_archiving_resumes(cluster_config, request) -> None:
    from pgdrill.backends.kubernetes import status as st

    config, settings = cluster_config
    backend = make_backend(config, "t-failover", settings=replace(settings, instances=2))
    try:
        source = backend.create_source("postgres-cluster")
        killed = st.ClusterStatus.from_object(backend._cluster("postgres-cluster") or {}).current_primary
        backend.kill_primary(source)
        verdict = st.Waiter("failover", 240, 5).wait(lambda: (
            st.WaitState("done", "new primary") if (st.ClusterStatus.from_object(
                backend._cluster("postgres-cluster") or {}).current_primary not in ("", killed))
            else st.WaitState("waiting", "failing over")))
        assert verdict.state == "done"
        _switch_and_archive(backend, source)  # archiving works on the new primary (plugin issue #842)
    finally:
        backend.close()


@pytest.mark.cluster
def test_s3_outage_breaks_archiving_until_minio_is_back(backend) -> None:
    source = backend.create_source("postgres-cluster")
    backend.set_object_store_available(False)  # what the s3_outage fault does (faults/cluster.py)
    try:
        backend.sql(source, "SELECT pg_switch_wal()")
    finally:
        backend.set_object_store_available(True)
    _switch_and_archive(backend, source)
