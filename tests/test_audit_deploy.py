"""The shipped alert rules and CronJob parse and only use metrics ``pgdrill audit`` emits."""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from pgdrill.archive.store import S3Location
from pgdrill.audit import (
    AUDIT_CODES,
    AuditThresholds,
    build_parser,
    render_prometheus,
    run_audit,
)
from pgdrill.audit.synthetic import SyntheticArchive

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DRILL_METRICS = {"pgdrill_drill_last_success_timestamp"}  # published by drill reports, not the audit
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


class _Store:
    endpoint_url = None

    def __init__(self, synth: SyntheticArchive):
        self.synth = synth

    def list(self, prefix: str):
        return iter(self.synth.listing(prefix))

    def get(self, key: str) -> bytes:
        return self.synth.get(key)

    def list_prefixes(self, prefix: str) -> list[str]:
        return []


def emitted_metrics() -> set[str]:
    synth = SyntheticArchive()
    synth.add_wal_range(1, 1, 40, NOW - timedelta(hours=3, minutes=20))
    synth.add_backup("20261125T090000", begin=2, end=2, begin_time=NOW - timedelta(hours=3))
    report = run_audit(S3Location("backups", "postgres/postgres-cluster"), _Store(synth), AuditThresholds(), NOW)
    return {line.split("{", 1)[0] for line in render_prometheus(report).splitlines() if not line.startswith("#")}


def rules(groups: list[dict]) -> list[dict]:
    return [rule for group in groups for rule in group["rules"]]


def test_plain_rules_and_prometheusrule_parse_and_agree():
    plain = yaml.safe_load((DEPLOY / "prometheus" / "pgdrill-alerts.yaml").read_text())
    (manifest,) = list(yaml.safe_load_all((DEPLOY / "prometheus" / "pgdrill-prometheusrule.yaml").read_text()))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["name"] and manifest["metadata"]["namespace"]
    assert manifest["spec"] == plain
    names = [rule["alert"] for rule in rules(plain["groups"])]
    assert len(names) == len(set(names))
    for rule in rules(plain["groups"]):
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_alert_expressions_only_use_emitted_metrics_codes_and_grades():
    plain = yaml.safe_load((DEPLOY / "prometheus" / "pgdrill-alerts.yaml").read_text())
    emitted = emitted_metrics()
    used: set[str] = set()
    for rule in rules(plain["groups"]):
        metrics = set(re.findall(r"\bpgdrill_[a-z_]+\b", rule["expr"]))
        assert metrics, rule["alert"]
        used |= metrics
        assert metrics <= emitted | DRILL_METRICS, (rule["alert"], metrics - emitted)
        for code in re.findall(r'code="([A-Z0-9_]+)"', rule["expr"]):
            assert code in AUDIT_CODES, code
        for grade in re.findall(r'grade="([a-z_]+)"', rule["expr"]):
            assert grade in ("pitr_capable", "consistent", "waiting_for_wal", "not_consistent", "in_progress",
                             "failed", "unreadable")
    # ADR 007's alert list: backup failures, backup age, missing WAL, WAL age, S3 errors, drills
    assert {"pgdrill_backup_consecutive_failures", "pgdrill_base_backup_age_seconds", "pgdrill_wal_gap_segments",
            "pgdrill_wal_archive_age_seconds", "pgdrill_audit_success",
            "pgdrill_drill_last_success_timestamp"} <= used


def test_adr_thresholds_in_the_rules_match_the_audit_defaults():
    plain = yaml.safe_load((DEPLOY / "prometheus" / "pgdrill-alerts.yaml").read_text())
    by_name = {rule["alert"]: rule["expr"] for rule in rules(plain["groups"])}
    t = AuditThresholds()
    assert by_name["PostgresBaseBackupStale"] == f"pgdrill_base_backup_age_seconds > {t.backup_max_age_hours:g} * 3600"
    assert by_name["PostgresWalArchiveStale"] == f"pgdrill_wal_archive_age_seconds > {t.wal_max_age_seconds:g}"
    assert by_name["PostgresBaseBackupConsecutiveFailures"] == (
        f"pgdrill_backup_consecutive_failures >= {t.backup_consecutive_failures}")


def test_cronjob_runs_a_valid_audit_every_5_minutes_with_secret_credentials():
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "audit-cronjob.yaml").read_text()))
    (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cronjob["apiVersion"] == "batch/v1" and cronjob["spec"]["schedule"] == "*/5 * * * *"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (audit,) = pod["initContainers"]
    env = {e["name"]: e for e in audit["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name] and env[name]["valueFrom"]["secretKeyRef"]["name"]
    script = audit["args"][0]
    argv = shlex.split(script.split(";", 1)[0])
    assert argv[:2] == ["pgdrill", "audit"]
    args = build_parser().parse_args(argv[2:])  # the CLI accepts exactly these options
    assert args.location.startswith("s3://") and args.prometheus and args.config
    mounts = {m["mountPath"] for m in audit["volumeMounts"]}
    assert str(Path(args.config).parent) in mounts and str(Path(args.prometheus).parent) in mounts
    # the mounted config is strictly valid for the audit
    import tomllib

    from pgdrill.audit import load_thresholds

    data = tomllib.loads(configmap["data"][Path(args.config).name])
    assert load_thresholds(data["audit"], "configmap") == AuditThresholds()
    (push,) = pod["containers"]
    assert Path(args.prometheus).name in push["args"][0]
