"""The alert rules of deploy/prometheus/, evaluated by Prometheus' own ``promtool``.

``promtool test rules`` runs tests/data/promtool/*.test.yaml: a failed drill fires the failed-drill
alert, a drill with no pass in 99 days the staleness alert, an RTO 1.5x its last good run the
regression alert, healthy series nothing.  Each threshold is then mutated in a copy of the rules
and the same tests must fail, so they are not passing vacuously.  promtool comes with Debian's
``prometheus`` package (.ci/run installs it); without it these tests skip and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pgdrill.audit import AuditThresholds
from pgdrill.reports.history import DEFAULT_RTO_GROWTH

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "pgdrill-alerts.yaml"
CRD = ROOT / "deploy" / "prometheus" / "pgdrill-prometheusrule.yaml"
TESTS = sorted((ROOT / "tests" / "data" / "promtool").glob("*.test.yaml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package "
                                    "`prometheus`, installed by .ci/run): the rules cannot be evaluated")


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def plain() -> dict:
    return yaml.safe_load(RULES.read_text())


def rules(kind: str) -> dict[str, dict]:
    return {r[kind]: r for g in plain()["groups"] for r in g["rules"] if kind in r}


@needs_promtool
def test_promtool_checks_both_rule_files(tmp_path):
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    spec = yaml.safe_load(CRD.read_text())["spec"]  # the PrometheusRule's groups, as Prometheus loads them
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(spec))
    checked = promtool("check", "rules", str(tmp_path / "crd.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    assert len(TESTS) == 2
    ran = promtool("test", "rules", *map(str, TESTS))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.count("SUCCESS") == len(TESTS)


MUTATIONS = {
    "staleness 99 days -> 100": ("vector(99 * 86400)", "vector(100 * 86400)"),
    "staleness 99 days -> 98": ("vector(99 * 86400)", "vector(98 * 86400)"),
    "RTO growth 0.2 -> 0.6": ("vector(0.2)", "vector(0.6)"),
    "RTO compared without the last good run": ("pgdrill_drill_rto_seconds / (pgdrill_drill_last_good_rto_seconds > 0)",
                                               "pgdrill_drill_rto_seconds / pgdrill_drill_last_good_rto_seconds"),
    "failed verdict not selected": ('pgdrill_drill_verdict{verdict="failed"} == 1',
                                    'pgdrill_drill_verdict{verdict="could_not_verify"} == 1'),
    "errors not counted as unverified": ('verdict=~"could_not_verify|error"', 'verdict=~"could_not_verify"'),
    "never-succeeded as absent()": ("pgdrill_drill_last_run_timestamp unless pgdrill_drill_last_success_timestamp",
                                    "absent(pgdrill_drill_last_success_timestamp)"),
    "replica lag 600 -> 900": ("pgdrill_replica_lag_seconds > 600", "pgdrill_replica_lag_seconds > 900"),
    "replica mismatches ignored": ("pgdrill_replica_missing_objects > 0 or pgdrill_replica_mismatched_objects > 0",
                                   "pgdrill_replica_missing_objects > 0"),
    "replica errors ignored": ("pgdrill_replica_success == 0", "pgdrill_replica_success == 2"),
    "pending WAL gap ignored": ('code="WAL_GAP_PENDING"} > 0', 'code="WAL_GAP_PENDING"} > 5'),
}


@needs_promtool
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_promtool_unit_tests_fail_on_a_wrong_rule(tmp_path, mutation):
    old, new = MUTATIONS[mutation]
    text = RULES.read_text()
    assert text.count(old) == 1, mutation
    rules_dir = tmp_path / "deploy" / "prometheus"
    rules_dir.mkdir(parents=True)
    (rules_dir / RULES.name).write_text(text.replace(old, new))
    tests_dir = tmp_path / "tests" / "data" / "promtool"  # same relative rule_files path as the real ones
    tests_dir.mkdir(parents=True)
    for test in TESTS:
        shutil.copy(test, tests_dir / test.name)
    ran = promtool("test", "rules", *(str(tests_dir / t.name) for t in TESTS))
    assert ran.returncode != 0 and "FAILED" in ran.stdout + ran.stderr, mutation


def test_the_healthy_case_covers_every_alert_and_each_alert_has_a_firing_case():
    alerts = set(rules("alert"))
    cases = [case for test in TESTS for case in yaml.safe_load(test.read_text())["tests"]]
    (healthy,) = [c for c in cases if c["name"].startswith("healthy")]
    assert {t["alertname"] for t in healthy["alert_rule_test"]} == alerts
    assert all(not t.get("exp_alerts") for t in healthy["alert_rule_test"])
    firing = {t["alertname"] for c in cases for t in c["alert_rule_test"] if t.get("exp_alerts")}
    drills_and_new_audit = {a for a in alerts if "Drill" in a or "Replica" in a or a.endswith("Pending")}
    assert drills_and_new_audit <= firing, drills_and_new_audit - firing


def test_thresholds_are_the_adr_cadence_the_report_default_and_the_audit_config():
    recorded = rules("record")
    assert recorded["pgdrill:drill_max_age_seconds"]["expr"] == "vector(99 * 86400)"  # 92-day quarter + 7 days
    assert eval(re.fullmatch(r"vector\((.*)\)", recorded["pgdrill:drill_rto_growth_ratio"]["expr"]).group(1)) \
        == DEFAULT_RTO_GROWTH
    lag = rules("alert")["PostgresBackupReplicaLagging"]["expr"]
    replica = getattr(AuditThresholds(), "replica", None)
    if replica is not None:  # the replica settings of issue 15 (audit.replica.max_lag_minutes)
        assert lag == f"pgdrill_replica_lag_seconds > {replica.max_lag_seconds:g}"
    else:
        assert lag == "pgdrill_replica_lag_seconds > 600"


def test_no_rule_tells_users_to_run_a_command_that_does_not_exist():
    text = RULES.read_text() + CRD.read_text()
    assert "pgdrill drill" not in text
    for command in re.findall(r"`(pgdrill [a-z]+)", text):
        assert command in ("pgdrill run", "pgdrill audit", "pgdrill report"), command
