"""Optional backend capabilities (``pgdrill.backends.base``) and what they make possible off the
local backend: a clean scenario can pass on Kubernetes (integrity tools without pg_checksums),
the ``s3_outage`` fault runs there, and the WAL faults work through ``backend.store`` anywhere.

No cluster here: the Kubernetes-like backends answer with recorded outputs of a clean cluster.
"""

from __future__ import annotations

import gzip
import inspect
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import pytest

from pgdrill.archive.store import ObjectInfo, S3Location
from pgdrill.backends.base import (
    Backend,
    ClusterHandle,
    FailoverBackend,
    IntegrityToolsProvider,
    KeepInfo,
    ObjectStoreOutage,
    RetentionBackend,
)
from pgdrill.backends.kubernetes.cluster import KubernetesBackend
from pgdrill.backends.kubernetes.integrity_tools import (
    KubernetesIntegrityTools,
    ToolRun,
)
from pgdrill.backends.kubernetes.plan import drill_objects
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.backends.local.backend import LocalBackend
from pgdrill.config import Config
from pgdrill.detectors.integrity import check_integrity, integrity_tools, record_digests
from pgdrill.drill.judge import judge
from pgdrill.drill.spec import Expectation
from pgdrill.errors import UsageError
from pgdrill.faults.base import FaultContext
from pgdrill.faults.wal import (
    CorruptWalParams,
    DeleteWalParams,
    corrupt_wal,
    delete_wal,
)
from pgdrill.results import DetectorStatus, DrillResult, Verdict

CAPABILITIES = (ObjectStoreOutage, RetentionBackend, KeepInfo, IntegrityToolsProvider)
CLUSTER = ClusterHandle("postgres-cluster-v2", "postgres-cluster-v2", True, {"namespace": "pgdrill-r1"})


def members(protocol: type) -> set[str]:
    """Every method and property a Protocol (and the Protocols it extends) declares."""
    return {n for klass in protocol.__mro__ if klass is not object and klass.__name__ not in ("Protocol", "Generic")
            for n, v in vars(klass).items()
            if not n.startswith("_") and (inspect.isfunction(v) or isinstance(v, property))}


def offers(cls: type, protocol: type) -> bool:
    """The class has every method/property of ``protocol`` (``isinstance`` on an instance made
    without ``__init__`` cannot see attributes ``__init__`` sets, such as ``name``)."""
    return all(hasattr(cls, n) for n in members(protocol))


# -- which backend offers what -----------------------------------------------------------------


def test_local_backend_offers_every_capability() -> None:
    bare = LocalBackend.__new__(LocalBackend)
    for capability in CAPABILITIES:
        assert isinstance(bare, capability), capability.__name__
    assert offers(LocalBackend, Backend) and offers(LocalBackend, FailoverBackend)


def test_kubernetes_backend_offers_outage_integrity_and_keep_but_not_retention_or_failover() -> None:
    bare = KubernetesBackend.__new__(KubernetesBackend)
    assert isinstance(bare, ObjectStoreOutage) and isinstance(bare, IntegrityToolsProvider)
    assert isinstance(bare, KeepInfo)
    assert not isinstance(bare, RetentionBackend)  # the plugin applies retentionPolicy on its own
    assert offers(KubernetesBackend, Backend)
    # kill_primary matches FailoverBackend's, but CNPG promotes by itself: no create_replica/promote.
    assert hasattr(KubernetesBackend, "kill_primary") and not offers(KubernetesBackend, FailoverBackend)


def test_a_backend_without_the_capability_gets_no_tools() -> None:
    assert integrity_tools(SimpleNamespace(name="elsewhere")) is None  # type: ignore[arg-type]


# -- a clean cluster on Kubernetes passes ------------------------------------------------------

ROWS = [f"{i}\tapproved\t2026-11-25 04:3{i % 10}:00+00\n".encode() for i in range(1, 28)]
DATABASES = [("app",), ("postgres",)]
INVENTORY = {
    "app": [("base/16384/16390", "public", "moderation_event", "r", 1, False, "heap", None),
            ("base/16384/16395", "public", "moderation_event_pkey", "i", 2, False, "btree", "public.moderation_event"),
            ("base/16384/1259", "pg_catalog", "pg_class", "r", 14, True, "heap", None),
            ("global/1262", "pg_catalog", "pg_database", "r", 1, True, "heap", None)],
    "postgres": [("base/5/1259", "pg_catalog", "pg_class", "r", 14, True, "heap", None),
                 ("global/1262", "pg_catalog", "pg_database", "r", 1, True, "heap", None)],
}
TABLES = [("public", "moderation_event", ["id"], ["bigint"], [0], 3, 27.0, "p")]


class RecordedConnection:
    """Answers the integrity detectors' queries as a clean recovered cluster did."""

    def __init__(self, dbname: str):
        self.dbname = dbname
        self._rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def transaction(self) -> Any:
        return nullcontext()

    def execute(self, query: Any, params: Any = None) -> RecordedConnection:
        text = str(query)
        if text.startswith("SET "):
            self._rows = []
        elif "FROM pg_database WHERE datallowconn" in text:
            self._rows = DATABASES
        elif "LEFT JOIN pg_am am" in text:
            self._rows = INVENTORY[self.dbname]
        elif text == "SHOW data_checksums":
            self._rows = [("on",)]
        elif "pg_current_wal_insert_lsn()" in text:
            self._rows = [("0/3000060",)]
        elif "pk.cols" in text:
            self._rows = TABLES if self.dbname == "app" else []
        else:
            raise AssertionError(f"unexpected query: {text[:80]}")
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def fetchone(self) -> tuple[Any, ...]:
        return self._rows[0]

    def cursor(self) -> Any:
        chunks = iter(ROWS + [b""])
        copy = SimpleNamespace(read=lambda: next(chunks))
        return nullcontext(SimpleNamespace(copy=lambda query: nullcontext(copy)))


class RecordedTools(KubernetesIntegrityTools):
    """The real Kubernetes tools (pg_checksums: not applicable), pg_amcheck replaying a clean run
    (exit 0, no output)."""

    def pg_amcheck(self, cluster: ClusterHandle, jobs: int | None = None) -> ToolRun:
        return ToolRun(["pg_amcheck", "--all", "--heapallindexed"], 0, "", "", 0.4)


class KindLikeBackend:
    name = "kind"

    def connect(self, cluster: ClusterHandle, dbname: str = "postgres", user: str = "postgres") -> Any:
        return RecordedConnection(dbname)

    def integrity_tools(self) -> RecordedTools:
        return RecordedTools(self)  # type: ignore[arg-type]


def measure() -> dict[str, Any]:
    return {"path": "recovery", "kind": "archive", "lost_writes": 0, "expected_writes": 27, "present_writes": 27,
            "rpo_seconds": 0.0, "rpo_basis": "commit_timestamp", "survivors_after_first_loss": [],
            "after_target_present": [], "unverifiable": [], "in_doubt": [], "lost": [],
            "rto": {"total_s": 41.0, "phases_s": {"recovery_job": 30.0, "instance_start": 10.0, "first_write": 1.0}}}


def test_clean_cluster_on_kubernetes_is_verified_and_the_drill_passes(tmp_path: Path) -> None:
    backend = KindLikeBackend()
    assert isinstance(backend, IntegrityToolsProvider)
    digests = record_digests(backend, CLUSTER, "app", tmp_path)  # type: ignore[arg-type]
    assert digests.error is None and [t.rows for t in digests.tables] == [27]

    check = check_integrity(backend, CLUSTER, "app", digests)  # type: ignore[arg-type]

    statuses = {o.name: o.status for o in check.outcomes}
    assert statuses == {"physical": DetectorStatus.CLEAN, "content": DetectorStatus.CLEAN}
    assert not [f for o in check.outcomes for f in o.findings]
    checksums = check.report["physical"]["checksums"]
    assert checksums["status"] == "not_applicable" and "data directory" in checksums["reason"]
    physical = next(o for o in check.outcomes if o.name == "physical")
    assert "page checksums not applicable" in physical.summary and "amchecked" in physical.summary

    result = DrillResult(drill="baseline", scenario={}, backend={"name": "kind"}, started_at="now")
    result.ledger = {"recovered": 27, "expected": 27}
    for outcome in check.outcomes:
        result.add_detector(outcome)
    result.measures = [measure()]
    result.rpo = {"path": "recovery", "seconds": 0.0, "lost_writes": 0}
    verdict, reasons = judge(Expectation("complete", [], recovered_rows=27, missing_rows=0), result, 300.0,
                             required_detectors=("physical", "content"))
    assert verdict == Verdict.PASSED, reasons


def test_pg_amcheck_runs_against_the_port_forward_with_the_password_in_its_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import subprocess

    from pgdrill.backends.local import postgres

    seen: dict[str, Any] = {}

    def run(argv: list[str], **kwargs: Any) -> Any:
        seen.update(argv=argv, env=kwargs["env"])
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(postgres, "pg_bin_dir", lambda: tmp_path)
    monkeypatch.setattr(subprocess, "run", run)
    backend = SimpleNamespace(primary_port=lambda cluster: 40123, superuser_password=lambda cluster: "s3cret-pw")
    outcome = KubernetesIntegrityTools(backend).pg_amcheck(CLUSTER)  # type: ignore[arg-type]
    assert outcome.returncode == 0
    assert seen["argv"][:7] == [str(tmp_path / "pg_amcheck"), "-h", "127.0.0.1", "-p", "40123", "-U", "postgres"]
    assert "--heapallindexed" in seen["argv"] and "-w" in seen["argv"]
    assert seen["env"]["PGPASSWORD"] == "s3cret-pw" and not any("s3cret" in a for a in seen["argv"])
    assert not {k for k in seen["env"] if k.startswith("PG")} - {"PGPASSWORD", "PGSSLMODE", "PGCONNECT_TIMEOUT"}


# -- s3_outage and kill_primary on Kubernetes, against a fake API ------------------------------


class FakeApps:
    def __init__(self) -> None:
        self.scaled: list[int] = []

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.scaled.append(body["spec"]["replicas"])

    def read_namespaced_deployment(self, name: str, namespace: str) -> Any:
        replicas = self.scaled[-1]
        return SimpleNamespace(status=SimpleNamespace(ready_replicas=replicas or None, replicas=replicas or None))


def kubernetes_backend(config: Config, apps: Any = None, core: Any = None) -> KubernetesBackend:
    settings = KubernetesSettings(install_timeout_seconds=5)
    kube = SimpleNamespace(apps=apps, core=core, kubeconfig="/k", context="kind-pgdrill")
    return KubernetesBackend("kind", kube, drill_objects(config, "r1", settings=settings), settings)  # type: ignore[arg-type]


def test_s3_outage_scales_the_in_namespace_minio_down_and_up() -> None:
    apps = FakeApps()
    backend = kubernetes_backend(Config(backend="kind"), apps=apps)
    backend.set_object_store_available(False)
    backend.set_object_store_available(True)
    assert apps.scaled == [0, 1]


def test_s3_outage_never_touches_an_external_endpoint() -> None:
    backend = kubernetes_backend(Config(backend="kind"), apps=FakeApps())
    backend.objects = SimpleNamespace(endpoint_url="https://s3.example.com")  # type: ignore[assignment]
    with pytest.raises(UsageError, match="in-namespace MinIO"):
        backend.set_object_store_available(False)


def test_kill_primary_deletes_the_primary_pod_with_grace_zero_and_waits_until_it_is_gone() -> None:
    from kubernetes.client.exceptions import ApiException

    deleted: list[tuple[str, int]] = []
    primary = SimpleNamespace(metadata=SimpleNamespace(name="postgres-cluster-1", uid="u1"))

    def read(name: str, namespace: str) -> Any:
        if deleted:
            raise ApiException(status=404)
        return SimpleNamespace(metadata=primary.metadata, status=SimpleNamespace(phase="Running"))

    core = SimpleNamespace(
        list_namespaced_pod=lambda namespace, label_selector: SimpleNamespace(
            items=[primary] if label_selector.endswith("=primary") else []),
        delete_namespaced_pod=lambda name, namespace, grace_period_seconds: deleted.append((name, grace_period_seconds)),
        read_namespaced_pod=read)
    backend = kubernetes_backend(Config(backend="kind"), core=core)
    backend.kill_primary(ClusterHandle("postgres-cluster", "postgres-cluster", True))
    assert deleted == [("postgres-cluster-1", 0)]


# -- WAL faults through backend.store: the same on every backend -------------------------------

WALS = "pgdrill/r1/postgres-cluster/wals/0000000100000000/"


class MemoryStore:
    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def list(self, prefix: str) -> list[ObjectInfo]:
        now = datetime.now(UTC)
        return [ObjectInfo(k, len(v), now) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def delete(self, key: str) -> None:
        del self.objects[key]


def wal_fault_context(objects: dict[str, bytes]) -> FaultContext:
    writes = [SimpleNamespace(walfile=f"00000001000000000000000{c}", row_id=i, phase="after_backup")
              for i, c in enumerate("89A", start=25)]
    backend = SimpleNamespace(name="kind", destination=S3Location("backups", "pgdrill/r1"), store=MemoryStore(objects))
    ledger = SimpleNamespace(after_backup=lambda: writes)
    return FaultContext(backend, ClusterHandle("postgres-cluster", "postgres-cluster", True), ledger,  # type: ignore[arg-type]
                        16 * 1024 * 1024)


def segment(name: str) -> bytes:
    return gzip.compress(bytes(range(256)) * 64 + name.encode())


def test_delete_wal_removes_the_segment_not_its_partial_or_backup_label() -> None:
    objects = {WALS + n: segment(n) for n in ("000000010000000000000008.gz", "000000010000000000000009.gz",
                                              "000000010000000000000009.00000028.backup.gz",
                                              "000000010000000000000009.partial", "00000001000000000000000A.gz")}
    record = delete_wal(wal_fault_context(objects), DeleteWalParams(position="middle"))
    assert [d["key"] for d in record.evidence["deleted"]] == [WALS + "000000010000000000000009.gz"]
    assert record.evidence["rows_in_deleted_segments"] == [26]
    assert WALS + "000000010000000000000009.partial" in objects
    assert WALS + "000000010000000000000009.00000028.backup.gz" in objects
    with pytest.raises(UsageError, match="not in the archive"):
        delete_wal(wal_fault_context(objects), DeleteWalParams(position="middle"))


def test_corrupt_wal_damages_the_stored_segment_detectably() -> None:
    key = WALS + "000000010000000000000009.gz"
    objects = {WALS + "000000010000000000000008.gz": segment("8"), key: segment("9"),
               WALS + "00000001000000000000000A.gz": segment("A")}
    original = objects[key]
    record = corrupt_wal(wal_fault_context(objects), CorruptWalParams(position="middle"))
    assert [t["key"] for t in record.evidence["corrupted"]] == [key]
    assert objects[key] != original and gzip.decompress(objects[key]) != gzip.decompress(original)
    corrupt_wal(wal_fault_context(objects), CorruptWalParams(position="last", mode="truncate"))
    with pytest.raises((OSError, EOFError)):
        gzip.decompress(objects[WALS + "00000001000000000000000A.gz"])
