"""Every manifest the Kubernetes builders can produce validates against the vendored CRDs,
and manifests the apiserver would reject (typo, missing field, bad enum) fail validation."""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pgdrill.backends.base import RecoveryTarget
from pgdrill.backends.kubernetes import KubernetesSettings, plan_manifests
from pgdrill.backends.kubernetes import manifests as m
from pgdrill.backends.kubernetes.plan import drill_objects, recovery_target_spec
from pgdrill.backends.kubernetes.schema import (
    ManifestInvalid,
    crd_schemas,
    errors,
    strictify,
    validate,
)
from pgdrill.config import ArchiveConfig, Config, S3Config
from pgdrill.drill.spec import load_scenarios
from pgdrill.postgres.wal import Lsn

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "src/pgdrill/backends/kubernetes/crds"
NS = "pgdrill-t1"
RUN = "t1"

WAL_COMPRESSIONS = [None, "bzip2", "gzip", "lz4", "snappy", "xz", "zstd"]
DATA_COMPRESSIONS = [None, "bzip2", "gzip", "lz4", "snappy"]
BACKUP_ID = "20250616T142236"

PITR_TARGETS = {
    "latest": m.RecoveryTargetSpec(),
    "time": m.RecoveryTargetSpec(target_time="2023-08-11 11:14:21.00000+02"),
    "time-rfc3339": m.RecoveryTargetSpec(target_time="2024-01-15T10:30:00Z"),
    "time-exclusive": m.RecoveryTargetSpec(target_time="2024-01-15T10:30:00Z", exclusive=True),
    "time-with-backup": m.RecoveryTargetSpec(target_time="2024-01-15T10:30:00Z", backup_id=BACKUP_ID),
    "lsn": m.RecoveryTargetSpec(target_lsn="0/3000060"),
    "lsn-with-backup": m.RecoveryTargetSpec(target_lsn="0/3000060", backup_id=BACKUP_ID),
    "name": m.RecoveryTargetSpec(target_name="restore_point_1", backup_id=BACKUP_ID),
    "xid": m.RecoveryTargetSpec(target_xid="1234", backup_id=BACKUP_ID),
    "immediate": m.RecoveryTargetSpec(target_immediate=True, backup_id=BACKUP_ID),
    "backup-only": m.RecoveryTargetSpec(backup_id=BACKUP_ID),
    "timeline": m.RecoveryTargetSpec(target_tli="latest", target_time="2024-01-15T10:30:00Z"),
}


def meta(name: str) -> m.Meta:
    return m.Meta(name, NS, RUN)


def object_stores() -> list[dict]:
    found = []
    for wal, data in itertools.product(WAL_COMPRESSIONS, DATA_COMPRESSIONS):
        found.append(m.ObjectStore(meta("store"), "s3://backups/pgdrill/t1/", "pgdrill-s3", "http://minio:9000",
                                   wal, data).to_dict())
    found.append(m.ObjectStore(meta("store"), "s3://bucket", "creds", None, wal_max_parallel=4,
                               retention_policy="30d").to_dict())
    return found


def clusters() -> list[dict]:
    found = []
    for archiver, instances, image, timeout in itertools.product(
            (None, m.PluginArchiver("store", "postgres-cluster")), (1, 3),
            (None, "ghcr.io/cloudnative-pg/postgresql:17"), (None, "5min", "60s")):
        found.append(m.Cluster(meta("postgres-cluster"), m.InitdbBootstrap(), archiver, instances=instances,
                               image_name=image, archive_timeout=timeout, log_level="debug").to_dict())
    for (label, target), archive in itertools.product(PITR_TARGETS.items(), (True, False)):
        archiver = m.PluginArchiver("store", "postgres-cluster-v2") if archive else None
        bootstrap = m.RecoveryBootstrap("store", "postgres-cluster", target=target)
        found.append(m.Cluster(meta("postgres-cluster-v2"), bootstrap, archiver).to_dict())
    return found


def backups() -> list[dict]:
    found = [m.Backup(meta("b1"), "postgres-cluster", target).to_dict() for target in (None, "primary", "prefer-standby")]
    for immediate, suspend, owner in itertools.product((False, True), (False, True), ("none", "self", "cluster")):
        found.append(m.ScheduledBackup(meta("daily"), "postgres-cluster", immediate=immediate, suspend=suspend,
                                       owner_reference=owner).to_dict())
    return found


def core_objects() -> list[dict]:
    objects = drill_objects(Config(), RUN)
    return [objects.namespace_object().to_dict(), objects.credentials_secret("k", "s").to_dict(),
            *(o.to_dict() for o in objects.minio())]


def configs() -> list[Config]:
    found = []
    for wal, data in itertools.product(("none", "gzip", "bzip2", "snappy", "lz4"), ("none", "gzip", "bzip2")):
        found.append(Config(archive=ArchiveConfig(wal_compression=wal, data_compression=data)))  # type: ignore[arg-type]
    found.append(Config(backend="k8s", s3=S3Config(mode="external", endpoint_url="https://s3.fr-par.scw.cloud",
                                                   bucket="eurosky-backups-prod", prefix="postgres")))
    return found


ALL = {
    **{f"objectstore-{i}": o for i, o in enumerate(object_stores())},
    **{f"cluster-{i}": o for i, o in enumerate(clusters())},
    **{f"backup-{i}": o for i, o in enumerate(backups())},
    **{f"core-{i}": o for i, o in enumerate(core_objects())},
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_builder_output_validates(name: str) -> None:
    manifest = ALL[name]
    assert errors(manifest) == []
    labels = manifest["metadata"]["labels"]
    assert labels[m.LABEL_RUN_ID] == RUN and labels[m.LABEL_MANAGED_BY] == "pgdrill"


def test_pitr_variants_render_the_documented_fields() -> None:
    by_label = {}
    for label, target in PITR_TARGETS.items():
        cluster = m.Cluster(meta("postgres-cluster-v2"), m.RecoveryBootstrap("store", "postgres-cluster", target=target),
                            m.PluginArchiver("store", "postgres-cluster-v2")).to_dict()
        by_label[label] = cluster["spec"]["bootstrap"]["recovery"].get("recoveryTarget")
    assert by_label["latest"] is None
    assert by_label["time"] == {"targetTime": "2023-08-11 11:14:21.00000+02"}
    assert by_label["lsn"] == {"targetLSN": "0/3000060"}
    assert by_label["name"] == {"backupID": BACKUP_ID, "targetName": "restore_point_1"}
    assert by_label["immediate"] == {"backupID": BACKUP_ID, "targetImmediate": True}


@pytest.mark.parametrize("config_index", range(len(configs())))
def test_plan_for_every_scenario_and_config_validates(config_index: int) -> None:
    config = configs()[config_index]
    for scenario in load_scenarios(ROOT / "scenarios"):
        planned = plan_manifests(config, scenario, run_id="Nightly_2025-10-23")
        for manifest in planned:
            assert errors(manifest) == [], (manifest["kind"], manifest["metadata"]["name"])
        kinds = [p["kind"] for p in planned]
        assert kinds.count("Cluster") == 2 and "ObjectStore" in kinds and "ScheduledBackup" in kinds
        assert ("Deployment" in kinds) == (config.s3.mode != "external")


def test_plan_wiring_matches_the_adr_and_plugin_docs() -> None:
    planned = {(p["kind"], p["metadata"]["name"]): p for p in plan_manifests(Config(), None)}
    store = planned[("ObjectStore", "pgdrill-store")]["spec"]["configuration"]
    assert "serverName" not in store  # the plugin forbids it here
    assert store["destinationPath"] == "s3://backups/pgdrill/plan/"
    assert store["wal"] == {"compression": "gzip"}
    source = planned[("Cluster", "postgres-cluster")]["spec"]
    assert source["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                  "parameters": {"barmanObjectName": "pgdrill-store", "serverName": "postgres-cluster"}}]
    assert source["bootstrap"] == {"initdb": {"database": "app", "owner": "app", "dataChecksums": True}}
    assert source["postgresql"]["parameters"]["archive_timeout"] == "5min"
    schedule = planned[("ScheduledBackup", "postgres-cluster-daily")]["spec"]
    assert schedule["schedule"] == "0 0 2 * * *" and schedule["method"] == "plugin"
    assert planned[("Backup", "postgres-cluster-base-1")]["spec"]["method"] == "plugin"
    recovery = planned[("Cluster", "postgres-cluster-v2")]["spec"]
    assert recovery["bootstrap"]["recovery"]["source"] == recovery["externalClusters"][0]["name"]
    assert recovery["externalClusters"][0]["plugin"]["parameters"]["serverName"] == "postgres-cluster"
    assert recovery["plugins"][0]["parameters"]["serverName"] == "postgres-cluster-v2"
    secret = planned[("Secret", "pgdrill-s3")]
    assert all("never printed" in v for v in secret["stringData"].values())


def test_credentials_never_in_repr() -> None:
    secret = m.S3CredentialsSecret(meta("s"), "AKIAEXAMPLE", "very-secret-value")
    assert "very-secret-value" not in repr(secret) and "AKIAEXAMPLE" not in repr(secret)


def test_backend_target_maps_onto_cnpg_recovery_target() -> None:
    assert recovery_target_spec(None).empty
    assert recovery_target_spec(RecoveryTarget(lsn=Lsn.parse("0/70000E8"))).to_dict() == {"targetLSN": "0/70000E8"}
    assert recovery_target_spec(RecoveryTarget(time="2025-10-23 12:00:00+00")).to_dict() == {
        "targetTime": "2025-10-23 12:00:00+00"}
    with pytest.raises(ValueError, match="backupID"):
        recovery_target_spec(RecoveryTarget(name="before_bad_migration"))


# --- the negative direction: what the apiserver would reject fails here too ------------------


def _source() -> dict:
    return m.Cluster(meta("postgres-cluster"), m.InitdbBootstrap(), m.PluginArchiver("store", "postgres-cluster")).to_dict()


def _store() -> dict:
    return m.ObjectStore(meta("store"), "s3://backups/", "minio", "http://minio:9000").to_dict()


def _backup() -> dict:
    return m.Backup(meta("b1"), "postgres-cluster").to_dict()


def _broken(manifest: dict, path: str, value: object = None, *, rename: str | None = None,
            delete: bool = False) -> dict:
    broken = copy.deepcopy(manifest)
    *parents, last = path.split(".")
    node = broken
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if rename is not None:
        node[rename] = node.pop(last)
    elif delete:
        del node[last]
    else:
        node[last] = value
    return broken


NEGATIVE = {
    # typo'd field names (the apiserver prunes or, with strict validation, rejects them)
    "typo isWalArchiver": (_source, dict(path="spec.plugins.0.isWALArchiver", rename="isWalArchiver"),
                           "'isWalArchiver' was unexpected"),
    "typo enableSuperUserAccess": (_source, dict(path="spec.enableSuperuserAccess", rename="enableSuperUserAccess"),
                                   "'enableSuperUserAccess' was unexpected"),
    "typo destinationpath": (_store, dict(path="spec.configuration.destinationPath", rename="destinationpath"),
                             "'destinationPath' is a required property"),
    "typo endpointUrl": (_store, dict(path="spec.configuration.endpointURL", rename="endpointUrl"),
                         "'endpointUrl' was unexpected"),
    "typo pluginConfiguraton": (_backup, dict(path="spec.pluginConfiguration", rename="pluginConfiguraton"),
                                "'pluginConfiguraton' was unexpected"),
    "typo in secret ref": (_store, dict(path="spec.configuration.s3Credentials.accessKeyId.key", rename="keys"),
                           "'key' is a required property"),
    # missing required fields
    "missing backup cluster": (_backup, dict(path="spec.cluster", delete=True), "'cluster' is a required property"),
    "missing plugin name": (_source, dict(path="spec.plugins.0.name", delete=True), "'name' is a required property"),
    "missing instances": (_source, dict(path="spec.instances", delete=True), "'instances' is a required property"),
    "missing objectstore configuration": (_store, dict(path="spec.configuration", delete=True),
                                          "'configuration' is a required property"),
    # bad enum values and types
    "bad backup method": (_backup, dict(path="spec.method", value="plugins"), "'plugins' is not one of"),
    "bad wal compression": (_store, dict(path="spec.configuration.wal.compression", value="gzip2"),
                            "'gzip2' is not one of"),
    "bad instances type": (_source, dict(path="spec.instances", value="3"), "'3' is not of type 'integer'"),
    # CEL / webhook rules emulated by schema._admission_errors
    "serverName on ObjectStore": (_store, dict(path="spec.configuration.serverName", value="postgres-cluster"),
                                  "use the 'serverName' plugin parameter"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVE))
def test_invalid_manifests_fail(case: str) -> None:
    build, change, expected = NEGATIVE[case]
    good = build()
    assert errors(good) == []
    bad = _broken(good, **change)  # type: ignore[arg-type]
    found = errors(bad)
    assert any(expected in e for e in found), found
    with pytest.raises(ManifestInvalid):
        validate(bad)


def test_bad_scheduled_backup_enum_and_unknown_kind_fail() -> None:
    scheduled = m.ScheduledBackup(meta("daily"), "postgres-cluster").to_dict()
    scheduled["spec"]["backupOwnerReference"] = "me"
    assert any("'me' is not one of" in e for e in errors(scheduled))
    assert any("unknown apiVersion/kind" in e for e in errors({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Pooler",
                                                                "metadata": {"name": "x"}}))
    assert any("metadata.name" in e for e in errors({**_backup(), "metadata": {"name": "Bad_Name"}}))


def test_webhook_rules_fail_on_hand_made_recovery_clusters() -> None:
    cluster = m.Cluster(meta("postgres-cluster-v2"), m.RecoveryBootstrap("store", "postgres-cluster"),
                        m.PluginArchiver("store", "postgres-cluster-v2")).to_dict()
    named = copy.deepcopy(cluster)
    named["spec"]["bootstrap"]["recovery"]["recoveryTarget"] = {"targetName": "restore_point_1"}
    assert any("requires backupID" in e for e in errors(named))
    two = copy.deepcopy(cluster)
    two["spec"]["bootstrap"]["recovery"]["recoveryTarget"] = {"targetTime": "2024-01-01", "targetLSN": "0/1"}
    assert any("only one target" in e for e in errors(two))
    orphan = copy.deepcopy(cluster)
    orphan["spec"]["bootstrap"]["recovery"]["source"] = "nowhere"
    assert any("not in spec.externalClusters" in e for e in errors(orphan))


@pytest.mark.parametrize("build, message", [
    (lambda: m.RecoveryTargetSpec(target_name="rp"), "needs backupID"),
    (lambda: m.RecoveryTargetSpec(target_time="2024-01-01", target_lsn="0/1"), "one target"),
    (lambda: m.RecoveryTargetSpec(target_lsn="not-an-lsn"), "not an LSN"),
    (lambda: m.ScheduledBackup(meta("d"), "c", schedule="0 2 * * *"), "six fields"),
    (lambda: m.ObjectStore(meta("s"), "backups/", "c"), "s3://"),
    (lambda: m.ObjectStore(meta("s"), "s3://b/", "c", retention_policy="30 days"), "retentionPolicy"),
    (lambda: m.Meta("Postgres_Cluster", NS, RUN), "not a valid Kubernetes name"),
    (lambda: m.Meta("c", NS, "run id with spaces"), "label value"),
    (lambda: m.Cluster(meta("x" * 51), m.InitdbBootstrap(), None), "cluster name"),
])
def test_builders_refuse_what_cnpg_would_refuse(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- the schemas themselves -------------------------------------------------------------------


def test_vendored_crds_match_sources_md() -> None:
    listed = dict(reversed(line.split()) for line in (CRDS / "SOURCES.md").read_text().splitlines()
                  if re.fullmatch(r"[0-9a-f]{64}  \S+\.yaml", line))
    assert len(listed) == 4
    for name, digest in listed.items():
        assert hashlib.sha256((CRDS / name).read_bytes()).hexdigest() == digest
    shared = ROOT.parent / "shared" / "crds"
    if shared.is_dir():
        for name in listed:
            assert (shared / name).read_bytes() == (CRDS / name).read_bytes()


def test_schemas_cover_the_four_kinds_and_preserve_unknown_fields_stays_open() -> None:
    assert {kind for _, kind in crd_schemas()} == {"Cluster", "Backup", "ScheduledBackup", "ObjectStore"}
    strict = strictify({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"x": {"type": "string"}}},
        "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"y": {}}},
        "c": {"type": "object", "additionalProperties": {"type": "string"}},
        "d": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {}}},
    }})
    assert strict["additionalProperties"] is False
    assert strict["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["b"]
    assert strict["properties"]["c"]["additionalProperties"] == {"type": "string"}
    assert set(strict["properties"]["d"]["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}


def test_settings_urls_follow_the_documented_patterns() -> None:
    s = KubernetesSettings()
    assert s.cnpg_manifest_url == ("https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-1.30/"
                                   "releases/cnpg-1.30.0.yaml")
    assert s.plugin_manifest_url.endswith("/plugin-barman-cloud/releases/download/v0.14.0/manifest.yaml")
    assert s.cert_manager_url.endswith("/cert-manager/releases/download/v1.21.0/cert-manager.yaml")
    assert replace(s, cnpg_version="1.29.3").cnpg_manifest_url.endswith("release-1.29/releases/cnpg-1.29.3.yaml")
