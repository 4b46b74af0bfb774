"""Drill metrics (issue 17 item 1, docs/metrics.md): every run writes ``metrics.prom`` beside its
results.json, and on request a textfile and a Pushgateway; the values are the results.json's.

The real-run test runs one quick scenario (clean-recovery, local backend) through ``pgdrill run``
and parses the file with ``prometheus_client``'s own parser; the others build runs by hand to
reach what one run cannot show (a failing run after a pass, an errored drill, a Pushgateway).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgdrill.reports.history import (
    append_history,
    history_entry,
    read_history,
    rto_regressions,
    runs_up_to,
)
from pgdrill.reports.metrics import (
    HELP,
    VERDICTS,
    build_registry,
    publish,
    pushgateway_target,
    safe_url,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 9, 1, 3, 17, tzinfo=timezone.utc)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def run_dict(run_id: str, when: datetime, drills: list[dict], backend: str = "local",
             not_run: list[dict] | None = None) -> dict:
    return {"schema_version": 1, "run_id": run_id, "backend": backend, "verdict": "passed",
            "started_at": (when - timedelta(minutes=1)).isoformat(), "finished_at": when.isoformat(),
            "drills": drills, "not_run": not_run or []}


def drill(name: str, verdict: str, rto: float | None = 6.0, path: str = "recovery", kind: str = "archive",
          rpo: float | None = 0.0, lost: int | None = 0) -> dict:
    measure = {"path": path, "kind": kind, "rpo_seconds": rpo, "lost_writes": lost, "rto": {"total_s": rto}}
    return {"drill": name, "verdict": verdict, "measures": [measure], "rto": {"total_s": rto, "path": path, "kind": kind},
            "rpo": {"path": path, "seconds": rpo, "lost_writes": lost}, "findings": []}


def write_run(reports: Path, run: dict) -> Path:
    folder = reports / run["run_id"]
    folder.mkdir(parents=True)
    path = folder / "results.json"
    path.write_text(json.dumps(run))
    return path


@pytest.mark.integration
def test_a_real_run_writes_metrics_that_match_its_results_json(tmp_path):
    reports, textfile = tmp_path / "reports", tmp_path / "node-exporter" / "pgdrill-drills.prom"
    proc = subprocess.run([sys.executable, "-m", "pgdrill.cli", "run", str(ROOT / "scenarios/clean-recovery.yaml"),
                           "--backend", "local", "--reports-dir", str(reports), "--metrics-textfile", str(textfile)],
                          check=False, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (results_json,) = reports.glob("*/results.json")
    results = json.loads(results_json.read_text())
    text = (results_json.parent / "metrics.prom").read_text()
    assert textfile.read_text() == text  # the requested copy is the same file
    found = samples(text)
    assert {name for name, _ in found} <= set(HELP)
    backend = results["backend"]
    finished = ts(results["finished_at"])
    (result,) = results["drills"]
    name = result["drill"]
    assert name == "clean-recovery" and result["verdict"] == "passed"
    for verdict in VERDICTS:
        assert value(found, "pgdrill_drill_verdict", drill=name, backend=backend, verdict=verdict) == \
            (1.0 if verdict == result["verdict"] else 0.0), verdict
    assert value(found, "pgdrill_drill_last_run_timestamp", drill=name, backend=backend) == finished
    assert value(found, "pgdrill_drill_last_success_timestamp", drill=name, backend=backend) == finished
    assert value(found, "pgdrill_run_timestamp", backend=backend) == finished
    assert value(found, "pgdrill_run_drills", backend=backend, verdict="passed") == 1
    assert sum(value(found, "pgdrill_run_drills", backend=backend, verdict=v) for v in VERDICTS) == 1
    assert result["measures"], "clean-recovery measures its recovery path"
    for measure in result["measures"]:
        labels = {"drill": name, "backend": backend, "path": measure["path"], "kind": measure["kind"]}
        assert value(found, "pgdrill_drill_rto_seconds", **labels) == pytest.approx(measure["rto"]["total_s"])
        assert value(found, "pgdrill_drill_rpo_seconds", **labels) == pytest.approx(measure["rpo_seconds"])
        assert value(found, "pgdrill_drill_lost_writes", **labels) == measure["lost_writes"]
        assert measure["rto"]["total_s"] > 0
        # A fresh reports dir: no earlier good run to compare with, so no figure is invented.
        assert value(found, "pgdrill_drill_last_good_rto_seconds", **labels) is None
    assert "metrics" not in proc.stderr


def test_a_failing_run_keeps_the_last_pass_and_compares_rto_with_the_last_good_run(tmp_path):
    reports = tmp_path / "reports"
    good = run_dict("r1", T0, [drill("wal-gap", "passed", rto=8.0), drill("pitr-time", "passed", rto=5.0)])
    other = run_dict("r2", T0 + timedelta(days=1), [drill("wal-gap", "passed", rto=2.0)], backend="kind")
    bad = run_dict("r3", T0 + timedelta(days=2), [drill("wal-gap", "failed", rto=12.0, rpo=3.5, lost=4),
                                                  drill("pitr-time", "error", rto=None, rpo=None, lost=None)])
    for run in (good, other):
        write_run(reports, run)
        append_history(reports / "history.jsonl", history_entry(run, run["run_id"]))
    published = publish(write_run(reports, bad))
    assert published.errors == []
    found = samples((reports / "r3" / "metrics.prom").read_text())
    w = {"drill": "wal-gap", "backend": "local"}
    assert value(found, "pgdrill_drill_verdict", **w, verdict="failed") == 1
    assert value(found, "pgdrill_drill_verdict", **w, verdict="passed") == 0
    # the pass on kind (r2) is not a pass on local
    assert value(found, "pgdrill_drill_last_success_timestamp", **w) == T0.timestamp()
    assert value(found, "pgdrill_drill_last_run_timestamp", **w) == (T0 + timedelta(days=2)).timestamp()
    path = {**w, "path": "recovery", "kind": "archive"}
    assert value(found, "pgdrill_drill_rto_seconds", **path) == 12.0
    assert value(found, "pgdrill_drill_rpo_seconds", **path) == 3.5
    assert value(found, "pgdrill_drill_lost_writes", **path) == 4
    assert value(found, "pgdrill_drill_last_good_rto_seconds", **path) == 8.0
    # The alert's ratio and the report's regression agree (same last good run, same threshold).
    (regression,) = rto_regressions(runs_up_to(read_history(reports / "history.jsonl"), bad), bad)
    assert regression.drill == "wal-gap" and regression.previous_rto_s == 8.0 and regression.growth == 0.5
    # An errored drill is there as an error, with its run time; its unmeasured RTO is absent, not 0.
    p = {"drill": "pitr-time", "backend": "local"}
    assert value(found, "pgdrill_drill_verdict", **p, verdict="error") == 1
    assert value(found, "pgdrill_drill_last_run_timestamp", **p) == (T0 + timedelta(days=2)).timestamp()
    assert value(found, "pgdrill_drill_last_success_timestamp", **p) == T0.timestamp()
    assert value(found, "pgdrill_drill_rto_seconds", **p, path="recovery", kind="archive") is None
    assert value(found, "pgdrill_run_drills", backend="local", verdict="failed") == 1
    assert value(found, "pgdrill_run_drills", backend="local", verdict="error") == 1
    assert value(found, "pgdrill_run_drills", backend="local", verdict="passed") == 0


def test_the_previous_textfile_keeps_the_last_pass_where_the_reports_dir_is_new(tmp_path):
    textfile = tmp_path / "textfile" / "drills.prom"
    first = write_run(tmp_path / "a", run_dict("r1", T0, [drill("wal-gap", "passed")],
                                               not_run=[{"drill": "kind-only", "verdict": "not_run", "reason": "no Docker"}]))
    assert publish(first, textfile=str(textfile)).errors == []
    second = write_run(tmp_path / "b", run_dict("r2", T0 + timedelta(days=3), [drill("wal-gap", "failed")]))
    assert publish(second, textfile=str(textfile)).errors == []
    found = samples(textfile.read_text())
    assert value(found, "pgdrill_drill_last_success_timestamp", drill="wal-gap", backend="local") == T0.timestamp()
    first_found = samples((first.parent / "metrics.prom").read_text())
    # a drill that did not run: its verdict is not_run, it has no last-run time and no pass
    assert value(first_found, "pgdrill_drill_verdict", drill="kind-only", backend="local", verdict="not_run") == 1
    assert value(first_found, "pgdrill_drill_last_run_timestamp", drill="kind-only", backend="local") is None
    assert value(first_found, "pgdrill_run_drills", backend="local", verdict="not_run") == 1


def test_drills_that_raise_or_are_interrupted_are_errors_in_the_metrics(tmp_path):
    (tmp_path / "test_inner.py").write_text('''
import pytest

@pytest.mark.drill
def test_raises(pgdrill_run):
    raise ValueError("a bug in a drill")

@pytest.mark.drill
def test_interrupted(pgdrill_run):
    raise KeyboardInterrupt
''')
    reports, textfile = tmp_path / "reports", tmp_path / "out" / "drills.prom"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--reports-dir", str(reports), "--rootdir", str(tmp_path),
                           "--pgdrill-metrics-textfile", str(textfile)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # interrupted
    (results_json,) = reports.glob("*/results.json")
    results = json.loads(results_json.read_text())
    found = samples(textfile.read_text())
    assert textfile.read_text() == (results_json.parent / "metrics.prom").read_text()
    assert sorted(d["drill"] for d in results["drills"]) == ["interrupted", "raises"]
    for name in ("raises", "interrupted"):
        assert value(found, "pgdrill_drill_verdict", drill=name, backend="local", verdict="error") == 1, name
        assert value(found, "pgdrill_drill_last_run_timestamp", drill=name, backend="local") == ts(results["finished_at"])
        assert value(found, "pgdrill_drill_last_success_timestamp", drill=name, backend="local") is None
    assert value(found, "pgdrill_run_drills", backend="local", verdict="error") == 2
    assert f"metrics: {results_json.parent / 'metrics.prom'}, {textfile}" in proc.stdout


def test_a_green_session_whose_metrics_cannot_be_pushed_fails(tmp_path):
    (tmp_path / "test_inner.py").write_text('''
import pytest
from pgdrill.results import DrillResult, Verdict

@pytest.mark.drill
def test_passes(record_drill):
    record_drill(DrillResult(drill="passes", scenario={}, backend={"name": "local"}, started_at="x",
                             finished_at="x", verdict=Verdict.PASSED, verdict_reasons=["ok"]))
''')
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--reports-dir", str(reports), "--rootdir", str(tmp_path),
                           "--pgdrill-pushgateway", f"http://drills:s3cret@127.0.0.1:{_free_port()}"],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "pgdrill: metrics not pushed to http://127.0.0.1:" in proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr
    (results_json,) = reports.glob("*/results.json")
    assert (results_json.parent / "metrics.prom").is_file()  # the local file is written regardless


def test_bad_metrics_options_stop_before_anything_starts(tmp_path):
    for option, text, expected in (("--metrics-textfile", str(tmp_path / "drills.txt"), "must be a file name ending in .prom"),
                                   ("--pushgateway", "ftp://gw:21", "is not an http(s) URL")):
        proc = subprocess.run([sys.executable, "-m", "pgdrill.cli", "run", str(ROOT / "scenarios/clean-recovery.yaml"),
                               "--reports-dir", str(tmp_path / "reports"), option, text],
                              check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 2 and expected in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert not (tmp_path / "reports").exists()


def test_pushgateway_urls_name_their_group_and_never_show_credentials():
    assert pushgateway_target("http://gw:9091", "kind") == ("http://gw:9091", "pgdrill-drills", {"backend": "kind"})
    assert pushgateway_target("https://u:p@gw/prefix/metrics/job/quarterly/tier/full", "kind") == \
        ("https://gw/prefix", "quarterly", {"tier": "full"})
    assert safe_url("https://drills:s3cret@gw:9443/metrics/job/x") == "https://gw:9443/metrics/job/x"
    with pytest.raises(Exception, match="expected .../metrics/job/NAME"):
        pushgateway_target("http://gw/metrics/job/x/tier", "kind")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pushgateway(tmp_path):
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.skip("no Pushgateway binary (Debian package prometheus-pushgateway, installed by .ci/run)")
    port = _free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}",
                             f"--persistence.file={tmp_path / 'pushgateway.data'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the Pushgateway did not start")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_run_pushed_to_a_real_pushgateway_reads_back_the_same(tmp_path, pushgateway):
    results_json = write_run(tmp_path / "reports", run_dict("r1", T0, [drill("wal-gap", "failed", rto=7.5, lost=2)]))
    gateway = pushgateway.replace("http://", "http://drills:s3cret@")  # a gateway without auth ignores it
    published = publish(results_json, pushgateway=gateway)
    assert published.errors == [] and published.written[-1] == pushgateway
    grouped = publish(results_json, pushgateway=pushgateway + "/metrics/job/quarterly/tier/full")
    assert grouped.errors == []
    text = urllib.request.urlopen(pushgateway + "/metrics", timeout=5).read().decode()
    found = samples(text)
    default = {"job": "pgdrill-drills", "instance": "", "drill": "wal-gap", "backend": "local"}
    assert value(found, "pgdrill_drill_verdict", **default, verdict="failed") == 1
    assert value(found, "pgdrill_drill_lost_writes", **default, path="recovery", kind="archive") == 2
    assert value(found, "pgdrill_drill_rto_seconds", **default, path="recovery", kind="archive") == 7.5
    full = {"job": "quarterly", "tier": "full", "instance": "", "drill": "wal-gap", "backend": "local"}
    assert value(found, "pgdrill_drill_verdict", **full, verdict="failed") == 1
    # A gateway that is down: one line naming it, without the password; the run is not green.
    down = publish(results_json, pushgateway=f"http://drills:s3cret@127.0.0.1:{_free_port()}")
    (error,) = down.errors
    assert "metrics not pushed to http://127.0.0.1:" in error and "s3cret" not in error


def test_every_declared_metric_is_emitted_with_its_labels():
    history = read_history(Path("/nonexistent"))
    good = run_dict("r1", T0, [drill("wal-gap", "passed", rto=8.0)])
    history.entries.append(history_entry(good, "x"))
    run = run_dict("r2", T0 + timedelta(days=1), [drill("wal-gap", "failed", rto=9.0)])
    from prometheus_client import generate_latest

    families = {f.name: f for f in text_string_to_metric_families(generate_latest(build_registry(run, history)).decode())}
    assert set(families) == set(HELP)
    for name, (_, labels) in HELP.items():
        assert families[name].samples, name
        assert all(set(s.labels) == set(labels) for s in families[name].samples), name
