"""The shipped alert rules and CronJob parse and only use metrics ``pgdrill audit`` and the drill
runs emit (both lists are built by running the code, not written down)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

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
    if getattr(report, "replica", None) is None:
        # The replica check's outcome as the renderer reads it (issue 15's --replica), so its
        # metric names come from the renderer too.
        replica = SimpleNamespace(location="s3://other-org/postgres/postgres-cluster", verified=True, lag_seconds=12.0,
                                  checked_objects=3, missing_objects=0, mismatched_objects=0)
        if "replica" in {f.name for f in dataclasses.fields(report)}:
            report = dataclasses.replace(report, replica=replica)
        else:
            object.__setattr__(report, "replica", replica)
    return {line.split("{", 1)[0] for line in render_prometheus(report).splitlines() if not line.startswith("#")}


def drill_metrics() -> set[str]:
    """What a drill run writes to metrics.prom: a failed run after a passing one, so the
    history-derived figures (last success, last good RTO) are there too."""
    from prometheus_client import generate_latest

    from pgdrill.reports.history import History, history_entry
    from pgdrill.reports.metrics import build_registry

    def run(run_id: str, when: datetime, verdict: str) -> dict:
        measure = {"path": "recovery", "kind": "archive", "rpo_seconds": 0.0, "lost_writes": 0, "rto": {"total_s": 6.0}}
        return {"run_id": run_id, "backend": "local", "finished_at": when.isoformat(),
                "drills": [{"drill": "wal-gap", "verdict": verdict, "measures": [measure]}], "not_run": []}

    history = History([history_entry(run("r1", NOW - timedelta(days=1), "passed"), "")])
    text = generate_latest(build_registry(run("r2", NOW, "failed"), history)).decode()
    return {line.split("{", 1)[0] for line in text.splitlines() if not line.startswith("#")}


def rules(groups: list[dict]) -> list[dict]:
    """The alerting rules; recording rules (the drill thresholds) are in ``records``."""
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def records(groups: list[dict]) -> list[dict]:
    return [rule for group in groups for rule in group["rules"] if "record" in rule]


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
    for rule in records(plain["groups"]):
        assert set(rule) <= {"record", "expr", "labels"}, rule
        assert re.fullmatch(r"pgdrill:[a-z_]+", rule["record"]), rule  # level:metric naming
    assert len(rules(plain["groups"])) + len(records(plain["groups"])) == sum(len(g["rules"]) for g in plain["groups"])


def test_alert_expressions_only_use_emitted_metrics_codes_and_grades():
    plain = yaml.safe_load((DEPLOY / "prometheus" / "pgdrill-alerts.yaml").read_text())
    emitted = emitted_metrics() | drill_metrics()
    recorded = {rule["record"] for rule in records(plain["groups"])}
    used: set[str] = set()
    for rule in rules(plain["groups"]) + records(plain["groups"]):
        metrics = set(re.findall(r"\bpgdrill_[a-z_]+\b", rule["expr"]))
        assert metrics or "record" in rule, rule["alert"]
        used |= metrics
        assert metrics <= emitted, (rule.get("alert", rule.get("record")), metrics - emitted)
        assert set(re.findall(r"\bpgdrill:[a-z_]+", rule["expr"])) <= recorded, rule
        for code in re.findall(r'code="([A-Z0-9_]+)"', rule["expr"]):
            assert code in AUDIT_CODES, code
        for grade in re.findall(r'grade="([a-z_]+)"', rule["expr"]):
            assert grade in ("pitr_capable", "consistent", "waiting_for_wal", "not_consistent", "in_progress",
                             "failed", "unreadable")
    # ADR 007's alert list: backup failures, backup age, missing WAL, WAL age, S3 errors, drills
    assert {"pgdrill_backup_consecutive_failures", "pgdrill_base_backup_age_seconds", "pgdrill_wal_gap_segments",
            "pgdrill_wal_archive_age_seconds", "pgdrill_audit_success",
            "pgdrill_drill_last_success_timestamp", "pgdrill_drill_verdict", "pgdrill_drill_rto_seconds",
            "pgdrill_drill_last_good_rto_seconds", "pgdrill_replica_lag_seconds"} <= used


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
