"""A drill that raises, or is interrupted, is an ERROR in every output, and the run is not passed.

Issue 12 item 10: before, such a drill vanished from results.json and the run said "passed".
The inner pytest sessions load pgdrill's plugin through its entry point, as a user's would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _inner_session(tmp_path: Path, body: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    (tmp_path / "test_inner.py").write_text(body)
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--reports-dir", str(reports), "--rootdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    (results,) = reports.glob("*/results.json")
    return proc, json.loads(results.read_text())


def _junit(results: dict, reports: Path) -> ET.Element:
    return ET.parse(reports / results["run_id"] / "junit.xml").getroot()


def test_a_drill_that_raises_is_an_error_everywhere(tmp_path):
    proc, results = _inner_session(tmp_path, '''
import pytest

@pytest.mark.drill
def test_raises(pgdrill_run):
    raise ValueError("a bug in a drill")
''')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (drill,) = results["drills"]
    assert drill["verdict"] == "error" and drill["error"]["type"] == "ValueError"
    assert "a bug in a drill" in drill["error"]["message"]
    assert results["verdict"] == "error"
    suite = _junit(results, tmp_path / "reports").find("testsuite")
    assert suite.get("errors") == "1" and suite.get("failures") == "0"
    assert suite.find("testcase/error") is not None
    history = [json.loads(line) for line in (tmp_path / "reports" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["verdict"] == "error"
    assert history[-1]["drills"]["raises"]["verdict"] == "error"


def test_a_drill_interrupted_by_ctrl_c_is_an_error_and_the_run_is_not_passed(tmp_path):
    proc, results = _inner_session(tmp_path, '''
import pytest

@pytest.mark.drill
def test_passes_first(pgdrill_run):
    pass

@pytest.mark.drill
def test_interrupted(pgdrill_run):
    raise KeyboardInterrupt
''')
    assert proc.returncode == 2, proc.stdout + proc.stderr  # pytest's "interrupted"
    (drill,) = results["drills"]
    assert drill["drill"] == "interrupted" and drill["verdict"] == "error" and drill["error"]["interrupted"]
    assert results["verdict"] == "error"
    assert _junit(results, tmp_path / "reports").find("testsuite").get("errors") == "1"


def test_a_check_failing_after_a_passed_verdict_turns_the_record_to_failed(tmp_path):
    proc, results = _inner_session(tmp_path, '''
import pytest
from pgdrill.results import DrillResult, Verdict

@pytest.mark.drill
def test_checked_after(record_drill):
    result = DrillResult(drill="checked-after", scenario={}, backend={"name": "local"}, started_at="x",
                         finished_at="x", verdict=Verdict.PASSED, verdict_reasons=["ok"])
    record_drill(result)
    assert 1 == 2, "a drill-specific check"
''')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (drill,) = results["drills"]
    assert drill["verdict"] == "failed" and any("a drill-specific check" in r for r in drill["verdict_reasons"])
    assert results["verdict"] == "failed"
    on_disk = json.loads((tmp_path / "reports" / results["run_id"] / "drills" / "checked-after.json").read_text())
    assert on_disk["verdict"] == "failed"


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_under_pytest_is_an_error_too(tmp_path, signame):
    proc, results = _inner_session(tmp_path, f'''
import os, signal
import pytest

@pytest.mark.drill
def test_terminated(pgdrill_run):
    os.kill(os.getpid(), signal.{signame})
''')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    (drill,) = results["drills"]
    assert drill["verdict"] == "error" and drill["error"]["interrupted"]


@pytest.mark.integration
def test_sigint_during_a_real_drill_records_it_as_an_error(tmp_path):
    """``pgdrill run`` on the local backend, SIGINT while the drill runs: exit 130, the drill is in
    results.json as an error, and the run's verdict is not passed."""
    reports = tmp_path / "reports"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "pgdrill"), "run", str(ROOT / "scenarios/wal-gap.yaml"),
                             "--reports-dir", str(reports)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if "base backup (barman-cloud-backup): ok" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    (results,) = reports.glob("*/results.json")
    data = json.loads(results.read_text())
    (drill,) = data["drills"]
    assert drill["drill"] == "wal-gap" and drill["verdict"] == "error" and drill["error"]["interrupted"], drill
    assert data["verdict"] == "error"
