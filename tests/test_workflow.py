"""The nightly workflow and kind-config.yaml: they parse, and the steps the issue asks for exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github/workflows/nightly.yml"


def load_workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(job: dict) -> list[dict]:
    return job["steps"]


def runs(job: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(job))


def test_triggers_are_nightly_and_manual() -> None:
    on = load_workflow()["on"]
    assert "workflow_dispatch" in on
    (schedule,) = on["schedule"]
    assert len(schedule["cron"].split()) == 5


def test_local_and_kind_smoke_jobs_run_the_drills() -> None:
    jobs = load_workflow()["jobs"]
    assert set(jobs) == {"smoke-local", "smoke-kind"}
    assert "pytest drills/ -m smoke --backend local" in runs(jobs["smoke-local"])
    kind = jobs["smoke-kind"]
    assert "pytest drills/ -m smoke --backend kind" in runs(kind)
    assert kind["env"]["KIND_VERSION"] == "v0.32.0"
    assert "kind-linux-amd64" in runs(kind) and "bin/linux/amd64/kubectl" in runs(kind)
    assert "docker info" in runs(kind)
    assert ".[kube,test]" in runs(kind)


def test_reports_are_uploaded_always_and_the_verdict_is_checked() -> None:
    for name, job in load_workflow()["jobs"].items():
        uploads = [s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        assert len(uploads) == 1, name
        assert uploads[0]["if"] == "always()" and uploads[0]["with"]["path"] == "reports/"
        checks = [s for s in steps(job) if "check_verdict.py" in s.get("run", "")]
        assert len(checks) == 1 and checks[0]["if"] == "always()", name
        names = [s.get("name", s.get("uses")) for s in steps(job)]
        assert names.index("Check the drill verdict") < names.index("Upload reports"), name
        # Nothing may swallow the drill command's exit status.
        drill = next(s for s in steps(job) if "pytest drills/" in s.get("run", ""))
        assert "continue-on-error" not in drill and "|| true" not in drill["run"]


def _check(tmp_path: Path, result: dict | None) -> int:
    if result is not None:
        (tmp_path / "run1").mkdir()
        (tmp_path / "run1" / "results.json").write_text(json.dumps(result))
    return subprocess.run([sys.executable, str(ROOT / ".github/scripts/check_verdict.py"), str(tmp_path)],
                          capture_output=True, text=True).returncode


def test_verdict_check_fails_on_anything_but_a_full_pass(tmp_path: Path) -> None:
    assert _check(tmp_path / "none", None) == 1
    for i, (result, code) in enumerate([
        ({"verdict": "passed", "drills": [{"drill": "wal-gap", "verdict": "passed"}], "not_run": []}, 0),
        ({"verdict": "failed", "drills": [{"drill": "wal-gap", "verdict": "failed"}], "not_run": []}, 1),
        ({"verdict": "could_not_verify", "drills": [], "not_run": []}, 1),
        ({"verdict": "passed", "drills": [{"drill": "a", "verdict": "passed"}],
          "not_run": [{"drill": "b", "verdict": "not_run", "reason": "no Docker"}]}, 1),
        ({"verdict": "not_run", "drills": [], "not_run": [{"drill": "b", "reason": "no Docker"}]}, 1),
    ]):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert _check(folder, result) == code, result


def test_kind_config_pins_the_node_image() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    images = {node["image"] for node in config["nodes"]}
    assert images == {"kindest/node:v1.36.1"}
