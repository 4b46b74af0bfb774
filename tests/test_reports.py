"""Reports (issue 7) rendered from real drill results: HTML content, JUnit against the Jenkins
schema, history.jsonl, integrity, the results JSON Schema, and secrets never written.

Fixtures under tests/data/reports/ are unmodified results.json files of real drill runs on
the local backend: ``20261125T044211Z-3b5c39`` (clean-recovery and wal-gap, both passed)
and ``20261125T043809Z-74798d`` (both could not verify: barman-cloud-backup failed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pgdrill.reports import render_run, report_main
from pgdrill.reports.history import HistoryWarning, read_history
from pgdrill.reports.redact import REDACTED
from pgdrill.reports.render import schema_errors
from pgdrill.reports.timeline import build_timeline, id_ranges

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parent.parent
PASSED_RUN = "20261125T044211Z-3b5c39"
CNV_RUN = "20261125T043809Z-74798d"
JUNIT_XSD = DATA / "junit-10.xsd"


# -- helpers -------------------------------------------------------------------------------

def stage(tmp_path: Path, run_id: str, edit: Any = None) -> Path:
    """Copy a real run into ``tmp_path/reports/<run id>/``; ``edit(dict)`` may change it."""
    folder = tmp_path / "reports" / run_id
    folder.mkdir(parents=True)
    target = folder / "results.json"
    if edit is None:
        shutil.copy(DATA / "reports" / run_id / "results.json", target)
    else:
        data = json.loads((DATA / "reports" / run_id / "results.json").read_text())
        edit(data)
        target.write_text(json.dumps(data, indent=2) + "\n")
    return target


def load(run_id: str) -> dict[str, Any]:
    return json.loads((DATA / "reports" / run_id / "results.json").read_text())


class _Sections(HTMLParser):
    """Visible text per element id (sections, the verdict banner), scripts/styles excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.text: dict[str, list[str]] = {}
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("meta", "link", "br", "img", "input", "rect", "line", "circle", "polyline"):
            return
        self.in_style = tag in ("style", "script")
        self.stack.append(dict(attrs).get("id"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("meta", "link", "br", "img", "input", "rect", "line", "circle", "polyline"):
            return
        self.in_style = False
        if self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.in_style:
            return
        for ident in self.stack:
            if ident:
                self.text.setdefault(ident, []).append(data)

    def get(self, ident: str) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text.get(ident, []))).strip()


def sections(html: str) -> _Sections:
    parser = _Sections()
    parser.feed(html)
    return parser


def seconds(value: float) -> str:
    return f"{value:.3f} s"


def validate_junit(path: Path) -> None:
    import xmlschema

    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))


def make_could_not_verify(data: dict[str, Any]) -> None:
    """The wal-gap drill of a real run, with the recovery-target check unable to run (what
    happens when the target-check cluster cannot start): verdict could_not_verify."""
    drill = next(d for d in data["drills"] if d["drill"] == "wal-gap")
    for detector in drill["detectors"]:
        if detector["name"] == "target":
            detector.update(status="could_not_verify", finding_codes=["COULD_NOT_VERIFY"],
                            summary="target check cluster did not start: port in use")
    drill["findings"] = [f for f in drill["findings"] if f["code"] != "RECOVERY_TARGET_UNREACHED"]
    drill["findings"].append({
        "code": "COULD_NOT_VERIFY", "severity": "critical", "detector": "target",
        "message": "target: target check cluster did not start: port in use",
        "remedy": "Fix the cause in the evidence and run the drill again; this is not a pass.",
        "evidence": {"error": "could not bind IPv4 address \"127.0.0.1\": Address already in use"}})
    drill["verdict"] = "could_not_verify"
    drill["verdict_reasons"] = ["detector(s) could not run: target"]
    data["verdict"] = "could_not_verify"


# -- HTML content --------------------------------------------------------------------------

def test_clean_drill_report_shows_pass_rows_and_objectives(tmp_path: Path) -> None:
    results = stage(tmp_path, PASSED_RUN)
    written = render_run(results)
    assert set(written) == {"html", "junit", "sha256", "history"}
    assert all(p.parent in (results.parent, results.parent.parent) for p in written.values())
    html = written["html"].read_text()
    page = sections(html)
    run = load(PASSED_RUN)
    clean = next(d for d in run["drills"] if d["drill"] == "clean-recovery")

    assert page.get("overall-verdict").startswith("PASS")
    text = page.get("drill-clean-recovery")
    assert "PASS" in text and "COULD NOT VERIFY" not in text and "FAIL" not in text
    assert "Rows missing none" in text
    assert f"Rows committed (ledger) {clean['ledger']['committed']}" in text
    assert seconds(clean["rto"]["total_s"]) in text
    assert seconds(clean["rpo"]["seconds"]) in text
    assert "target 300 s · within target" in text
    for phase, value in clean["rto"]["phases_s"].items():
        assert re.search(rf"{phase} {value:.3f}", text), phase
    # Every segment the archive holds is named, none marked missing.
    for number in clean["archive"]["timelines"]["1"]["segments"]:
        assert f"0000000100000000000000{number:02X}" in text
    assert "MISSING" not in text
    assert "No findings." in text
    # Header: who, where, what versions, targets.
    header = page.get("overall-verdict") + html
    backend = clean["backend"]
    for expected in (backend["user"], backend["host"], backend["versions"]["postgresql"],
                     backend["versions"]["barman"], run["run_id"]):
        assert expected in header


def test_wal_gap_report_names_missing_rows_segments_and_findings(tmp_path: Path) -> None:
    html = render_run(stage(tmp_path, PASSED_RUN))["html"].read_text()
    text = sections(html).get("drill-wal-gap")
    drill = next(d for d in load(PASSED_RUN)["drills"] if d["drill"] == "wal-gap")
    missing = drill["ledger"]["missing"]["moderation_event"]
    assert missing == [26, 27]

    assert "moderation_event ids 26, 27" in text
    for row in (26, 27):
        assert re.search(rf"moderation_event {row} 2026-", text), row
    gap = drill["archive"]["gaps"][0]["segments"][0]
    assert gap == "000000010000000000000004"
    assert f"{gap} 1 MISSING missing from the archive 26" in text
    assert "000000010000000000000005 1 archived but never replayed" in text
    for code in ("WAL_GAP", "SILENT_DATA_LOSS", "REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED"):
        assert code in text
    for finding in drill["findings"]:
        assert finding["remedy"] in text
    assert "expected by the scenario" in text
    assert "PASS means pgdrill detected and named the loss" in text
    assert seconds(drill["rpo"]["seconds"]) in text and "2 committed write(s) lost" in text
    assert seconds(drill["rto"]["total_s"]) in text
    assert "deleted WAL segment 000000010000000000000004" in text  # fault with its evidence
    assert '"rows_in_deleted_segments": [ 26 ]' in text  # evidence, unescaped by the parser

    # The picture: the missing segment drawn as missing, replay stop at the fork LSN, RPO window.
    svg = html[html.index('id="drill-wal-gap"'):]
    svg = svg[svg.index("<svg class=\"timeline\""):svg.index("</svg>")]
    assert re.search(r'<g class="seg seg-missing">\s*<title>000000010000000000000004: missing', svg)
    assert re.search(r'<g class="seg seg-not_replayed">\s*<title>000000010000000000000005', svg)
    assert "replay stopped at 0/4000000" in svg
    assert "RPO window 0.982 s, 2 write(s) lost" in svg
    assert "base backup 20261125T044237" in svg
    assert "disaster" in svg and "recovery target: latest (last write 0/5000108)" in svg
    assert svg.count('class="tick-lost"') == 2  # rows 26 and 27


def test_timeline_geometry_places_markers_in_wal_order() -> None:
    drill = next(d for d in load(PASSED_RUN)["drills"] if d["drill"] == "wal-gap")
    timeline = build_timeline(drill)
    assert timeline is not None
    x = {m.kind: m.x for m in timeline.markers}
    # base backup (segment 2) < replay stop (start of 4) < last write (in 5) < disaster (end of 5)
    assert x["backup"] < x["fork"] < x["target"] < x["disaster"]
    assert timeline.rpo_window is not None
    assert timeline.rpo_window.x < x["fork"] < timeline.rpo_window.x + timeline.rpo_window.width
    states = {s["name"]: s["state"] for s in timeline.segments}
    assert states == {
        "000000010000000000000001": "before_backup", "000000010000000000000002": "replayed",
        "000000010000000000000003": "replayed", "000000010000000000000004": "missing",
        "000000010000000000000005": "not_replayed", "000000020000000000000004": "new_timeline"}
    labels = sorted((m.label_y, m.x) for m in timeline.markers)
    assert len(set(labels)) == len(labels)
    assert id_ranges([1, 2, 3, 7, 8, 12]) == "1-3, 7, 8, 12"


def test_could_not_verify_report_is_distinct_and_never_green(tmp_path: Path) -> None:
    written = render_run(stage(tmp_path, PASSED_RUN, make_could_not_verify))
    html = written["html"].read_text()
    page = sections(html)
    assert page.get("overall-verdict").startswith("COULD NOT VERIFY")
    assert "This is not a pass" in page.get("overall-verdict")
    text = page.get("drill-wal-gap")
    assert "COULD NOT VERIFY: detector(s) target did not run" in text
    assert re.search(r'<span class="badge s-could_not_verify">COULD NOT VERIFY</span>', html)
    # The could-not-verify styles use the amber palette, never the green one.
    css = html[html.index("<style>"):html.index("</style>")]
    for selector in (".v-could_not_verify", ".s-could_not_verify"):
        rule = css[css.index(selector):]
        rule = rule[:rule.index("}")]
        assert "--ok" not in rule and "#e8f5e9" not in rule and "green" not in rule
        assert "--cnv" in rule
    assert "#1b5e20" not in css[css.index(".v-could_not_verify"):css.index(".v-not_run")]

    junit = written["junit"]
    validate_junit(junit)
    xml = junit.read_text()
    assert re.search(r'<failure type="could_not_verify" message="COULD NOT VERIFY: detector\(s\) could not run: '
                     r'target"', xml)


def test_real_could_not_verify_run_stopped_before_recovery(tmp_path: Path) -> None:
    written = render_run(stage(tmp_path, CNV_RUN))
    page = sections(written["html"].read_text())
    assert page.get("overall-verdict").startswith("COULD NOT VERIFY")
    for name in ("clean-recovery", "wal-gap"):
        text = page.get(f"drill-{name}")
        assert "Stopped at step “base backup (barman-cloud-backup)”" in text
        assert "Backup failed uploading data (EOFError)" in text
        assert "No timeline: the drill stopped before the archive was examined" in text
        assert "No findings because no detector ran" in text
        assert "not measured" in text
    assert "Planned fault(s) delete_wal were not injected" in page.get("drill-wal-gap")
    validate_junit(written["junit"])
    assert written["junit"].read_text().count('type="could_not_verify"') == 2


def test_audit_section_renders_before_after_when_present(tmp_path: Path) -> None:
    def add_audit(data: dict[str, Any]) -> None:
        data["drills"][1]["audit"] = {
            "before": {"status": "healthy", "server_name": "postgres-cluster", "audited_at": "2026-11-25T04:42:30Z",
                       "base_backups": {"count": 1, "newest_completed": "20261125T044237"},
                       "wal": {"segments": 5, "missing_segments": 0, "newest_segment": "000000010000000000000005"},
                       "findings": []},
            "after": {"status": "alert", "server_name": "postgres-cluster", "audited_at": "2026-11-25T04:42:50Z",
                      "base_backups": {"count": 1}, "wal": {"segments": 4, "missing_segments": 1},
                      "findings": [{"code": "WAL_GAP", "severity": "critical", "message": "1 segment missing"}]},
        }

    page = sections(render_run(stage(tmp_path, PASSED_RUN, add_audit))["html"].read_text())
    text = page.get("drill-wal-gap")
    assert "Status healthy alert" in text
    assert "Missing segments 0 1" in text
    assert "CRITICAL WAL_GAP: 1 segment missing" in text
    assert "No archive audit recorded" in page.get("drill-clean-recovery")


# -- JUnit ---------------------------------------------------------------------------------

def test_junit_one_testcase_per_drill_and_not_run_is_skipped(tmp_path: Path) -> None:
    def add_not_run(data: dict[str, Any]) -> None:
        data["not_run"] = [{"drill": "lose-cluster", "verdict": "not_run", "reason": "kind not installed"}]

    written = render_run(stage(tmp_path, PASSED_RUN, add_not_run))
    validate_junit(written["junit"])
    import xml.etree.ElementTree as ET

    suite = ET.parse(written["junit"]).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {"clean-recovery", "wal-gap", "lose-cluster"}
    assert cases["clean-recovery"].find("failure") is None and cases["wal-gap"].find("failure") is None
    skipped = cases["lose-cluster"].find("skipped")
    assert skipped is not None and skipped.get("message") == "NOT RUN: kind not installed"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "0", "1")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["results_sha256"] == hashlib.sha256((written["html"].parent / "results.json").read_bytes()).hexdigest()
    html = written["html"].read_text()
    assert "NOT RUN" in html and "kind not installed" in html and "1 drill(s) were not run" in html


def test_junit_failed_drill_is_a_failure(tmp_path: Path) -> None:
    def fail(data: dict[str, Any]) -> None:
        data["drills"][0]["verdict"] = "failed"
        data["drills"][0]["verdict_reasons"] = ["clean recovery expected, but only 26/27 rows came back"]
        data["verdict"] = "failed"

    written = render_run(stage(tmp_path, PASSED_RUN, fail))
    validate_junit(written["junit"])
    xml = written["junit"].read_text()
    assert 'type="failed" message="DRILL FAILED: clean recovery expected, but only 26/27 rows came back"' in xml
    assert sections(written["html"].read_text()).get("overall-verdict").startswith("FAIL")


def test_junit_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The schema check is not vacuous: a testcase without a name is refused."""
    import xmlschema

    broken = tmp_path / "broken.xml"
    broken.write_text('<testsuites><testsuite name="x" tests="1" failures="0" errors="0">'
                      "<testcase/></testsuite></testsuites>")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        validate_junit(broken)


# -- integrity, history --------------------------------------------------------------------

def test_sha256_recorded_in_html_and_checkable(tmp_path: Path) -> None:
    results = stage(tmp_path, PASSED_RUN)
    written = render_run(results)
    digest = hashlib.sha256(results.read_bytes()).hexdigest()
    assert written["sha256"].read_text() == f"{digest}  results.json\n"
    html = written["html"].read_text()
    assert f'<meta name="pgdrill-results-sha256" content="{digest}">' in html
    assert sections(html).get("results-sha256") == digest
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "results.json.sha256"], cwd=results.parent, check=True,
                       capture_output=True)


def test_history_survives_corrupted_lines_and_loses_nothing(tmp_path: Path) -> None:
    cnv = stage(tmp_path, CNV_RUN)
    render_run(cnv)
    history = tmp_path / "reports" / "history.jsonl"
    good_line = history.read_bytes()
    # A garbage line in the middle, then a line torn by a crash (no newline at the end).
    history.write_bytes(good_line + b"{not json at all\n" + b'{"run_id": "20261124T000000Z-aaaaaa", "dri')
    before = history.read_bytes()

    with pytest.warns(HistoryWarning) as caught:
        written = render_run(stage(tmp_path, PASSED_RUN))
    assert len(caught) == 2
    after = history.read_bytes()
    assert after.startswith(before)  # nothing rewritten, nothing lost
    lines = after.decode().splitlines()
    assert len(lines) == 4
    new = json.loads(lines[-1])  # the torn line did not swallow the new one
    assert new["run_id"] == PASSED_RUN and new["drills"]["wal-gap"]["rpo_s"] == 0.982

    with pytest.warns(HistoryWarning):
        entries = read_history(history).entries
    assert [e["run_id"] for e in entries] == [CNV_RUN, PASSED_RUN]
    page = sections(written["html"].read_text())
    assert "history.jsonl line 2 skipped (corrupted" in page.get("history")
    assert "history.jsonl line 3 skipped" in page.get("history")
    assert CNV_RUN in page.get("history") and f"{PASSED_RUN} (this run)" in page.get("history")

    # Re-rendering the same results is idempotent: no second line for the same run and sha256.
    with pytest.warns(HistoryWarning):
        render_run(tmp_path / "reports" / PASSED_RUN / "results.json")
    assert history.read_bytes() == after


def test_history_chart_and_rto_regression_against_last_good_run(tmp_path: Path) -> None:
    run = load(PASSED_RUN)
    rto = {d["drill"]: d["rto"]["total_s"] for d in run["drills"]}
    history = tmp_path / "reports" / "history.jsonl"
    history.parent.mkdir(parents=True)

    def line(run_id: str, time: str, verdict: str, factor: float) -> str:
        return json.dumps({"history_version": 1, "run_id": run_id, "time": time, "backend": "local",
                           "verdict": verdict, "results_sha256": "0" * 64,
                           "drills": {n: {"verdict": verdict, "rto_s": round(v * factor, 3), "rpo_s": 0.0}
                                      for n, v in rto.items()}})

    history.write_text("\n".join([
        line("20261120T000000Z-000001", "2026-11-20T00:00:00+00:00", "passed", 0.5),  # older good run
        line("20261121T000000Z-000002", "2026-11-21T00:00:00+00:00", "passed", 0.7),  # last good run
        line("20261122T000000Z-000003", "2026-11-22T00:00:00+00:00", "failed", 0.1),  # failed: ignored
        line("20261130T000000Z-000004", "2026-11-30T00:00:00+00:00", "passed", 0.1),  # after this run
    ]) + "\n")
    html = render_run(stage(tmp_path, PASSED_RUN))["html"].read_text()
    text = sections(html).get("history")
    # 1/0.7 - 1 = 43 % growth against the 0.7 run, not 100 % against the 0.5 one.
    assert "RTO grew more than 20 %" in text
    assert re.search(r"RTO of clean-recovery grew 43% against the last good run 20261121T000000Z-000002", text)
    assert "RTO regression" in sections(html).get("drill-wal-gap")
    assert "20261130T000000Z-000004" not in text  # later runs are not part of this run's history
    chart = html[html.index('aria-label="RTO per scenario over past runs"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count("<polyline") == 2  # one line per scenario
    assert chart.count("<circle") == 2 * 4  # 4 runs up to this one (incl. the failed one)

    # A higher threshold: no note.
    with_threshold = tmp_path / "second"
    html = render_run(stage(with_threshold, PASSED_RUN), rto_growth_threshold=0.5)["html"].read_text()
    assert "No RTO grew more than 50 %" in sections(html).get("history") or "first run" in html


# -- schema --------------------------------------------------------------------------------

def test_schema_validates_real_results_and_rejects_broken_ones() -> None:
    for run_id in (PASSED_RUN, CNV_RUN):
        run = load(run_id)
        assert schema_errors(run) == []
        for drill in run["drills"]:
            assert schema_errors(drill) == []  # the per-drill files drills/<name>.json
    broken = copy.deepcopy(load(PASSED_RUN))
    broken["drills"][1]["verdict"] = "maybe"
    broken["drills"][1]["archive"]["gaps"][0]["segments"] = ["not-a-segment"]
    del broken["drills"][0]["ledger"]
    errors = " ".join(schema_errors(broken))
    assert errors  # oneOf reports the run branch failing
    drill_errors = schema_errors(broken["drills"][1])
    assert any("verdict" in e for e in drill_errors) and any("gaps" in e for e in drill_errors)
    assert any("ledger" in e for e in schema_errors(broken["drills"][0]))


def test_reports_written_from_local_runs_validate() -> None:
    """Every results file under reports/ (local runs, not committed) matches the schema."""
    found = list((REPO / "reports").glob("*/results.json")) + list((REPO / "reports").glob("*/drills/*.json"))
    if not found:
        pytest.skip("no local drill runs under reports/")
    for path in found:
        assert schema_errors(json.loads(path.read_text())) == [], path


# -- CLI entry -----------------------------------------------------------------------------

def test_report_main_rerenders_many_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = stage(tmp_path, PASSED_RUN), stage(tmp_path, CNV_RUN)
    assert report_main([str(first), str(second.parent)]) == 0
    out = capsys.readouterr().out
    assert f"{first}: sha256" in out and "report.html" in out
    assert (second.parent / "report.html").exists()
    assert report_main([str(tmp_path / "nope" / "results.json")]) == 1
    assert "nope" in capsys.readouterr().err
    assert report_main([]) == 2
    assert report_main(["--help"]) == 0


# -- secrets -------------------------------------------------------------------------------

def test_secret_values_in_evidence_and_environment_are_redacted(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    key_id = "AKIAIOSFODNN7EXAMPLE"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)

    def leak(data: dict[str, Any]) -> None:
        drill = data["drills"][1]
        drill["faults"][0]["evidence"]["env"] = {"AWS_SECRET_ACCESS_KEY": secret, "aws_access_key_id": key_id}
        drill["findings"][0]["evidence"]["log"] = [f"barman-cloud: using key {key_id} secret {secret}"]
        drill["source"]["destination"] = f"https://{key_id}:{secret}@s3.example.com/backups"
        drill["verdict_reasons"] = [f"leaked {secret}"]

    results = stage(tmp_path, PASSED_RUN, leak)
    written = render_run(results)
    for path in written.values():
        content = path.read_text()
        assert secret not in content and key_id not in content, path
    assert REDACTED in written["html"].read_text()


def _drill_subprocess_files(tmp_path: Path) -> tuple[Path, Path]:
    conftest = tmp_path / "conftest.py"
    conftest.write_text(textwrap.dedent("""
        import json, os
        import pgdrill.plugin as plugin

        _make = plugin.make_backend

        def make_backend(*args, **kwargs):
            # Record the S3 credentials this drill really uses, outside the reports dir.
            backend = _make(*args, **kwargs)
            with open(os.environ["PGDRILL_TEST_SECRETS"], "a") as handle:
                handle.write(json.dumps(list(backend.credentials.secrets())) + "\\n")
            return backend

        plugin.make_backend = make_backend
    """))
    test = tmp_path / "test_one_drill.py"
    test.write_text(textwrap.dedent(f"""
        from pathlib import Path
        import pytest
        from pgdrill.plugin import assert_drill
        from pgdrill.scenario import load_scenarios

        SCENARIOS = [s for s in load_scenarios(Path({str(REPO / "scenarios")!r})) if s.name == "clean-recovery"]

        @pytest.mark.drill
        @pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
        def test_drill(run_drill, scenario):
            assert_drill(run_drill(scenario))
    """))
    return conftest, test


@pytest.mark.integration
def test_real_drill_through_the_plugin_writes_no_secret(tmp_path: Path) -> None:
    """Run one real drill through the pytest plugin (real PostgreSQL, barman-cloud, S3 server
    with per-run keys) and grep every file of the reports dir for the keys it used."""
    _drill_subprocess_files(tmp_path)
    reports = tmp_path / "reports"
    secrets_file = tmp_path / "secrets.jsonl"
    env = {**os.environ, "PGDRILL_TEST_SECRETS": str(secrets_file)}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGDRILL_REPORTS_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", os.devnull, "--reports-dir", str(reports), str(tmp_path / "test_one_drill.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    secrets = [s for line in secrets_file.read_text().splitlines() for s in json.loads(line)]
    assert len(secrets) == 2 and all(len(s) >= 16 for s in secrets)  # the test is not vacuous
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    # The plugin rendered the reports at session finish.
    for name in ("results.json", "report.html", "junit.xml", "results.json.sha256"):
        assert (run_dir / name).is_file(), name
    assert (reports / "history.jsonl").is_file()
    files = [p for p in reports.rglob("*") if p.is_file()]
    assert len(files) >= 7
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{path} contains an S3 credential"
    run = json.loads((run_dir / "results.json").read_text())
    assert run["verdict"] == "passed" and schema_errors(run) == []
    validate_junit(run_dir / "junit.xml")
    html = (run_dir / "report.html").read_text()
    assert hashlib.sha256((run_dir / "results.json").read_bytes()).hexdigest() in html
