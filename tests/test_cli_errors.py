"""One exit-code contract for every ``pgdrill`` command (README "Exit codes").

Bad input or usage is exit 2 with exactly one line on stderr naming what to fix, no traceback
(unless ``-v``), and nothing created: no reports folder, no run directory, no server started.
Each command runs as a subprocess, as CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PGDRILL = str(Path(sys.executable).parent / "pgdrill")
WAL_GAP = ROOT / "scenarios" / "wal-gap.yaml"
NOT_UTF8 = b"# caf\xe9 \xff\xfe\n"


class Sandbox:
    """A fresh working directory, its own TMPDIR (where the local backend makes run directories)
    and a reports folder that must never appear."""

    def __init__(self, root: Path):
        self.root = root
        self.cwd = root / "cwd"
        self.tmp = root / "tmp"
        self.reports = root / "reports"
        self.cwd.mkdir()
        self.tmp.mkdir()

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    def scenario(self, name: str = "wal-gap") -> Path:
        path = self.cwd / "scenarios" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WAL_GAP, path)
        if name != "wal-gap":
            path.write_text(path.read_text().replace("name: wal-gap", f"name: {name}", 1))
        return path

    def run(self, *args: str, verbose: bool = False) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PGDRILL_CONFIG", "AWS_ENDPOINT_URL") and not k.startswith("PYTEST")}
        env["TMPDIR"] = str(self.tmp)
        argv = [PGDRILL, *(["-v"] if verbose else []), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.cwd, env=env)

    def created(self) -> list[str]:
        """What a failed command left behind: reports folders, run directories."""
        found = [str(p) for p in (self.reports, self.cwd / "reports") if p.exists()]
        return found + [str(p) for p in self.tmp.iterdir()]


def assert_bad_input(box: Sandbox, proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert lines[0].startswith("pgdrill"), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert box.created() == []


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


Case = Callable[[Sandbox], tuple[list[str], list[str]]]


def _run_args(box: Sandbox, *extra: str) -> list[str]:
    return ["run", "--reports-dir", str(box.reports), *extra]


CASES: dict[str, Case] = {
    # -- pgdrill run -------------------------------------------------------------------------
    "run: config not UTF-8": lambda b: (
        _run_args(b, "--config", str(b.file("bad.toml", b'backend = "local"\n' + NOT_UTF8)), str(b.scenario())),
        ["bad.toml", "UTF-8", "line 2"]),
    "run: scenario not UTF-8": lambda b: (
        _run_args(b, str(b.file("scenarios/wal-gap.yaml", b"name: wal-gap\n" + NOT_UTF8))),
        ["wal-gap.yaml", "UTF-8"]),
    "run: scenario missing": lambda b: (_run_args(b, "nope.yaml"), ["nope.yaml", "does not exist"]),
    "run: scenario is a directory": lambda b: (
        _run_args(b, str(b.scenario().parent)), ["is a directory", "--scenarios-dir"]),
    "run: scenario invalid": lambda b: (
        _run_args(b, str(b.file("scenarios/x.yaml", "name: x\ndescription: d\nexpect: {outcome: maybe}\n"))),
        ["expect.outcome", "allowed"]),
    "run: scenario not YAML": lambda b: (
        _run_args(b, str(b.file("scenarios/x.yaml", "name: [x\n  y: :\n"))), ["x.yaml", "not valid YAML"]),
    "run: endpoint_url not a URL (external)": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", '[s3]\nmode = "external"\nendpoint_url = "not a url"\n')),
                  str(b.scenario())),
        ["s3.endpoint_url", "not a url", "http://"]),
    "run: endpoint_url not a URL (embedded)": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", '[s3]\nendpoint_url = "not a url"\n')), str(b.scenario())),
        ["s3.endpoint_url"]),
    "run: endpoint_url bad port": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", '[s3]\nmode = "external"\nendpoint_url = "http://h:99999"\n')),
                  str(b.scenario())),
        ["s3.endpoint_url", "port"]),
    "run: bucket name invalid": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", '[s3]\nbucket = "Bad_Bucket!"\n')), str(b.scenario())),
        ["s3.bucket", "Bad_Bucket!", "not a valid S3 bucket name"]),
    "run: bucket name too short": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", '[s3]\nbucket = "ab"\n')), str(b.scenario())),
        ["s3.bucket", "3 to 63"]),
    "run: config missing": lambda b: (_run_args(b, "--config", "nope.toml", str(b.scenario())),
                                      ["nope.toml", "does not exist"]),
    "run: config is a directory": lambda b: (_run_args(b, "--config", str(b.cwd), str(b.scenario())),
                                             ["is a directory"]),
    "run: config unknown key": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", "[targets]\nrpo_secs = 1\n")), str(b.scenario())),
        ["unknown key targets.rpo_secs"]),
    "run: config not TOML": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", "[targets\n")), str(b.scenario())), ["not valid TOML"]),
    "run: reports_dir under a file": lambda b: (
        ["run", "--reports-dir", str(b.file("afile", "x") / "reports"), str(b.scenario())],
        ["not a directory", "--reports-dir"]),
    "run: reports_dir from the config under a file": lambda b: (
        ["run", "--config", str(b.file("c.toml", f'reports_dir = "{b.file("afile", "x") / "reports"}"\n')),
         str(b.scenario())],
        ["not a directory", "reports_dir"]),
    "run: local.workdir under a file": lambda b: (
        _run_args(b, "--config", str(b.file("c.toml", f'[local]\nworkdir = "{b.file("afile", "x") / "w"}"\n')),
                  str(b.scenario())),
        ["local.workdir"]),
    "run: same scenario twice": lambda b: (
        _run_args(b, str(b.scenario()), str(b.scenario())), ["wal-gap", "twice"]),
    "run: same scenario twice by two paths": lambda b: (
        _run_args(b, str(b.scenario()), os.path.relpath(b.scenario(), b.cwd)), ["wal-gap", "twice"]),
    "run: scenarios dir missing": lambda b: (_run_args(b, "--scenarios-dir", "nope"), ["nope", "does not exist"]),
    "run: nothing selected": lambda b: (_run_args(b, str(b.scenario()), "-k", "zzz"), ["no scenario selected"]),
    "run: bad option value": lambda b: (_run_args(b, "--tier", "nightly"), ["--tier", "invalid choice"]),
    "run: unknown option": lambda b: (_run_args(b, "--bogus"), ["unrecognized arguments: --bogus"]),
    # -- pgdrill scenarios -------------------------------------------------------------------
    "scenarios: dir missing": lambda b: (["scenarios", "--scenarios-dir", "nope"], ["nope", "does not exist"]),
    "scenarios: file not UTF-8": lambda b: (
        ["scenarios", "--scenarios-dir", str(b.file("s/x.yaml", NOT_UTF8).parent)], ["x.yaml", "UTF-8"]),
    "scenarios: unknown option": lambda b: (["scenarios", "--bogus"], ["unrecognized arguments"]),
    # -- pgdrill audit -----------------------------------------------------------------------
    "audit: no location": lambda b: (["audit"], ["pgdrill audit", "required"]),
    "audit: not an S3 URL": lambda b: (["audit", "backups/postgres"], ["not an S3 URL"]),
    "audit: bad bucket": lambda b: (["audit", "s3://bad!bucket/x"], ["not a valid S3 bucket name"]),
    "audit: bad endpoint URL": lambda b: (["audit", "s3://backups/x", "--endpoint-url", "not a url"],
                                          ["--endpoint-url", "not a url"]),
    "audit: config not UTF-8": lambda b: (
        ["audit", "s3://backups/x", "--config", str(b.file("bad.toml", NOT_UTF8))], ["bad.toml", "UTF-8"]),
    "audit: config missing": lambda b: (["audit", "s3://backups/x", "--config", "nope.toml"], ["does not exist"]),
    "audit: unknown option": lambda b: (["audit", "s3://backups/x", "--bogus"], ["unrecognized arguments"]),
    # -- pgdrill plan ------------------------------------------------------------------------
    "plan: no scenario": lambda b: (["plan"], ["pgdrill plan", "required"]),
    "plan: scenario missing": lambda b: (["plan", "nope.yaml"], ["nope.yaml", "does not exist"]),
    "plan: scenario is a directory": lambda b: (["plan", str(b.cwd)], ["is a directory"]),
    "plan: scenario not UTF-8": lambda b: (
        ["plan", str(b.file("scenarios/wal-gap.yaml", NOT_UTF8))], ["UTF-8"]),
    "plan: config not UTF-8": lambda b: (
        ["plan", str(b.scenario()), "--config", str(b.file("bad.toml", NOT_UTF8))], ["bad.toml", "UTF-8"]),
    "plan: bad backend": lambda b: (["plan", str(b.scenario()), "--backend", "local"], ["invalid choice"]),
    # -- pgdrill report ----------------------------------------------------------------------
    "report: no file": lambda b: (["report"], ["pgdrill report", "required"]),
    "report: file missing": lambda b: (["report", "nope/results.json"], ["nope/results.json", "does not exist"]),
    "report: folder without results.json": lambda b: (["report", str(b.cwd)], ["results.json", "does not exist"]),
    "report: not JSON": lambda b: (["report", str(b.file("results.json", NOT_UTF8))], ["not valid JSON"]),
    "report: not a run": lambda b: (["report", str(b.file("results.json", "[1, 2]"))], ["JSON object"]),
    "report: bad threshold": lambda b: (
        ["report", str(b.file("results.json", "{}")), "--rto-growth-threshold", "lots"], ["--rto-growth-threshold"]),
    # -- pgdrill clean -----------------------------------------------------------------------
    "clean: workdir missing": lambda b: (["clean", "--workdir", str(b.root / "nonexistent")], ["nonexistent"]),
    "clean: unknown option": lambda b: (["clean", "--bogus"], ["unrecognized arguments"]),
    # -- pgdrill -----------------------------------------------------------------------------
    "no command": lambda b: ([], ["required"]),
    "unknown command": lambda b: (["frobnicate"], ["invalid choice"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_creates_nothing(box: Sandbox, case: str) -> None:
    args, needles = CASES[case](box)
    assert_bad_input(box, box.run(*args), *needles)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_unwritable_reports_dir_is_refused_before_anything_starts(box: Sandbox) -> None:
    locked = box.root / "locked"
    locked.mkdir(mode=0o500)
    try:
        proc = box.run("run", "--reports-dir", str(locked / "reports"), str(box.scenario()))
        assert_bad_input(box, proc, "not writable", "--reports-dir")
        assert not (locked / "reports").exists()
    finally:
        locked.chmod(0o700)


def test_verbose_adds_the_traceback_and_keeps_the_line_last(box: Sandbox) -> None:
    for args in (["run", "--reports-dir", str(box.reports), "nope.yaml"], ["plan", "nope.yaml"]):
        proc = box.run(*args, verbose=True)
        assert proc.returncode == 2
        assert "Traceback" in proc.stderr
        assert proc.stderr.splitlines()[-1].startswith(f"pgdrill {args[0]}: error: scenario file nope.yaml")
        assert box.created() == []


def test_help_documents_the_exit_codes(box: Sandbox) -> None:
    for args in ([], ["run"], ["scenarios"], ["plan"], ["audit"], ["report"]):
        proc = box.run(*args, "--help")
        assert proc.returncode == 0, proc.stderr
        text = " ".join(proc.stdout.split())
        assert "2 could not verify" in text and "130 interrupted" in text, (args, proc.stdout)
        assert "bad input" in text


def test_report_of_a_good_run_still_renders(box: Sandbox) -> None:
    run = box.cwd / "reports" / "run-1"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "schema_version": 1, "run_id": "run-1", "backend": "local", "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00", "verdict": "not_run", "drills": [], "not_run": []}))
    proc = box.run("report", str(run), "--no-history")
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file()


# -- the same drill twice ---------------------------------------------------------------------

def test_run_gives_a_second_drill_of_a_name_its_own_state_and_result_file(tmp_path: Path) -> None:
    from pgdrill.results import DrillResult, Verdict
    from pgdrill.runs import Run

    run = Run("r", tmp_path, "local")
    first_state = run.state_dir("wal-gap")
    assert run.state_dir("wal-gap") == first_state  # stable while the drill runs
    first = DrillResult("wal-gap", {}, {}, "t", verdict=Verdict.PASSED)
    assert run.add(first) == tmp_path / "r" / "drills" / "wal-gap.json"
    second_state = run.state_dir("wal-gap")
    assert second_state != first_state and second_state.name == "wal-gap-2"
    assert not run.has_result("wal-gap")  # the running one, not the recorded one
    second = DrillResult("wal-gap", {}, {}, "t", verdict=Verdict.FAILED)
    assert run.add(second) == tmp_path / "r" / "drills" / "wal-gap-2.json"
    assert [r.drill for r in run.results] == ["wal-gap", "wal-gap-2"]
    assert json.loads((tmp_path / "r" / "drills" / "wal-gap.json").read_text())["verdict"] == "passed"
    # A result recorded without a state dir (a Python drill) never overwrites either.
    third = DrillResult("wal-gap", {}, {}, "t", verdict=Verdict.PASSED)
    assert run.add(third).name == "wal-gap-3.json"
    # A real drill named like a generated key gets its own key too.
    assert run.state_dir("wal-gap-2").name not in {"wal-gap", "wal-gap-2", "wal-gap-3"}


def test_plugin_run_never_shares_state_or_result_of_two_drills_of_one_name(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text('''
import pytest
from pgdrill.results import DrillResult, Verdict

@pytest.mark.drill
@pytest.mark.parametrize("n", [1, 2])
def test_same_name(pgdrill_run, record_drill, n):
    state = pgdrill_run.state_dir("same")
    state.mkdir(parents=True, exist_ok=True)
    (state / "ledger.jsonl").write_text(str(n))
    record_drill(DrillResult("same", {}, {"name": "local"}, "t", verdict=Verdict.PASSED,
                             verdict_reasons=[f"drill {n}"]))
''')
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--reports-dir", str(reports), "--rootdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder,) = [p for p in reports.iterdir() if p.is_dir()]
    assert sorted(p.name for p in (folder / "drills").iterdir()) == ["same-2.json", "same.json"]
    assert (folder / "state" / "same" / "ledger.jsonl").read_text() == "1"
    assert (folder / "state" / "same-2" / "ledger.jsonl").read_text() == "2"
    results = json.loads((folder / "results.json").read_text())
    assert [(d["drill"], d["verdict_reasons"]) for d in results["drills"]] == [
        ("same", ["drill 1"]), ("same-2", ["drill 2"])]


def test_plugin_refuses_an_unwritable_reports_dir_before_any_drill(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text("import pytest\n\n@pytest.mark.drill\n"
                                            "def test_x(pgdrill_config):\n    pass\n")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                           "--reports-dir", str(blocker / "reports"), "--rootdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0
    assert "not a directory" in proc.stdout + proc.stderr
    assert not (blocker.parent / "reports").exists()


# -- a recovery pgdrill could not start or wait for is could-not-verify -------------------------

def test_start_failures_are_told_apart_from_postgresql_failures() -> None:
    from pgdrill.backends.base import ClusterHandle, RecoveryOutcome
    from pgdrill.drill.recovery import _start_failure

    handle = ClusterHandle("v2", "v2", True)
    timeout = RecoveryOutcome(handle, False, "b", failed_step="timeout",
                              fatal_lines=["pgdrill stopped waiting: ... (local.startup_timeout_seconds)"])
    assert "startup_timeout_seconds" in (_start_failure(timeout, "v2") or "")
    port = RecoveryOutcome(handle, False, "b", failed_step="replay", fatal_lines=[
        '2026-01-01 00:00:00.000 UTC [1] FATAL:  could not create any TCP/IP sockets'], log_excerpt=[
        '2026-01-01 00:00:00.000 UTC [1] LOG:  could not bind IPv4 address "127.0.0.1": Address already in use'])
    assert "could not start" in (_start_failure(port, "v2") or "")
    genuine = RecoveryOutcome(handle, False, "b", failed_step="replay", fatal_lines=[
        "FATAL:  recovery ended before configured recovery target was reached"])
    assert _start_failure(genuine, "v2") is None
    restore = RecoveryOutcome(handle, False, "b", failed_step="restore", fatal_lines=["tar: unexpected EOF"])
    assert _start_failure(restore, "v2") is None
    assert _start_failure(RecoveryOutcome(handle, True, "b"), "v2") is None


def test_a_recovery_whose_start_raises_is_could_not_verify(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pgdrill.backends.base import ClusterHandle
    from pgdrill.config import Config
    from pgdrill.drill.context import Disaster, Steps
    from pgdrill.drill.judge import judge
    from pgdrill.drill.measures import RtoClock
    from pgdrill.drill.recovery import recover_and_verify
    from pgdrill.drill.spec import Expectation
    from pgdrill.errors import CouldNotVerify
    from pgdrill.results import DetectorStatus, DrillResult, Verdict

    class Backend:
        def recover(self, *args: object, **kwargs: object) -> None:
            raise CouldNotVerify("pg_ctl start failed for v2: could not start server")

    result = DrillResult("x", {}, {}, "t")
    ctx = SimpleNamespace(backend=Backend(), config=Config(), state_dir=tmp_path, keep=False)
    disaster = Disaster(RtoClock("archive", 0.0, "t"), 0)
    measure, outcome = recover_and_verify(ctx, result, Steps(result, lambda line: None), None, None,  # type: ignore[arg-type]
                                          ClusterHandle("src", "src", True), "v2", disaster)
    assert measure is None and outcome is None
    (recovery,) = result.detectors
    assert recovery.status == DetectorStatus.COULD_NOT_VERIFY and "pg_ctl start failed" in recovery.summary
    assert "RECOVERY_FAILED" not in result.finding_codes()
    assert result.steps[-1]["status"] == "could not verify"
    verdict, reasons = judge(Expectation(outcome="complete"), result, 300)
    assert verdict == Verdict.COULD_NOT_VERIFY and any("pg_ctl start failed" in r for r in reasons)


@pytest.mark.integration
def test_a_recovery_that_times_out_is_could_not_verify_not_failed(box: Sandbox) -> None:
    """Real local backend: clean-recovery with ``startup_timeout_seconds = 0``: pgdrill's own
    timeout, not PostgreSQL's verdict, so exit 2 and could_not_verify with the cause."""
    # Reachable by the PostgreSQL OS user (pytest's tmp_path is not), and short: barman-cloud puts
    # AF_UNIX sockets under it (paths over ~107 bytes fail).
    workdir = Path(tempfile.mkdtemp(prefix="pgd-"))
    workdir.chmod(0o755)
    try:
        config = box.file("pgdrill.toml", f'[local]\nstartup_timeout_seconds = 0\nworkdir = "{workdir}"\n')
        proc = box.run("run", "--config", str(config), "--reports-dir", str(box.reports),
                       str(ROOT / "scenarios" / "clean-recovery.yaml"))
        leftovers = list(workdir.iterdir())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    found = list(box.reports.glob("*/results.json"))
    assert len(found) == 1, proc.stdout + proc.stderr
    results_file = found[0]
    results = json.loads(results_file.read_text())
    (drill,) = results["drills"]
    assert results["verdict"] == drill["verdict"] == "could_not_verify", drill["verdict_reasons"]
    assert drill["recovery"], drill["verdict_reasons"]
    assert "RECOVERY_FAILED" not in {f["code"] for f in drill["findings"]}
    recovery = next(d for d in drill["detectors"] if d["name"] == "recovery")
    assert recovery["status"] == "could_not_verify" and "startup_timeout_seconds" in recovery["summary"]
    assert drill["recovery"]["failed_step"] == "timeout"
    assert any("startup_timeout_seconds" in reason for reason in drill["verdict_reasons"])
    assert "COULD NOT VERIFY" in proc.stderr and "CLEAN-RECOVERY: FAILED" not in proc.stdout.upper()
    assert leftovers == []  # every process and directory of the drill released
