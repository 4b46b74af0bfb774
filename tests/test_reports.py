"""Reports (issue 7) rendered from real drill results: HTML content, JUnit against the Jenkins
schema, history.jsonl, integrity, the results JSON Schema, and secrets never written.

Fixtures under tests/data/reports/ are unmodified results.json files of real drill runs on
the local backend, written before per-path measures existed (they must still render):
``20261125T044211Z-3b5c39`` (clean-recovery and wal-gap, both passed) and
``20261125T043809Z-74798d`` (both could not verify: barman-cloud-backup failed).
``tests/data/drills/wal-gap.json`` is a real wal-gap drill result of the current shape
(``measures``, headline ``rpo``/``rto``, ``error``), trimmed (no audit, no integrity, a short
log); the multi-path, error and minimal results below are plain dicts built from it.
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
from pgdrill.reports.history import (
    HistoryWarning,
    history_entry,
    read_history,
    rto_regressions,
)
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

    # A higher threshold, same history (re-rendering appends nothing): 43 % is no regression.
    html = render_run(tmp_path / "reports" / PASSED_RUN / "results.json", rto_growth_threshold=0.5)["html"].read_text()
    text = sections(html).get("history")
    assert "No RTO grew more than 50 % against its last good run" in text
    assert "RTO grew more than 50 %:" not in text and "RTO regression" not in sections(html).get("drill-wal-gap")


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


def test_schema_accepts_the_new_fields_and_rejects_broken_ones() -> None:
    drill = new_drill()
    assert schema_errors(drill) == [] and schema_errors(failover_drill()) == []
    assert schema_errors(error_drill()) == []
    no_error = error_drill()
    del no_error["error"]
    assert any("error" in e for e in schema_errors(no_error))  # verdict error must say what was raised
    # Only an error result may lack the expectation and the backend's details.
    assert any("expect" in e for e in schema_errors({**error_drill(), "verdict": "failed"}))
    broken = failover_drill()
    del broken["measures"][0]["path"]
    broken["measures"][1]["kind"] = "teleport"
    broken["rpo"]["rpo_basis"] = "guess"
    broken["detectors"][0]["status"] = "maybe"
    errors = " ".join(schema_errors(broken))
    for part in ("measures/0", "measures/1/kind", "rpo/rpo_basis", "detectors/0/status"):
        assert part in errors, part
    # Ledger rows of the new shape: nullable commit time and position, ops, states.
    entry = {**drill["ledger"]["entries"][-1], "committed_at": None, "lsn": None, "walfile": None, "state": "in_doubt"}
    assert schema_errors({**drill, "ledger": {**drill["ledger"], "entries": [entry]}}) == []
    assert schema_errors({**drill, "ledger": {**drill["ledger"], "entries": [{**entry, "op": "upsert"}]}})


def test_reports_written_from_local_runs_validate() -> None:
    """Every results file under reports/ (local runs, not committed) matches the schema."""
    found = list((REPO / "reports").glob("*/results.json")) + list((REPO / "reports").glob("*/drills/*.json"))
    if not found:
        pytest.skip("no local drill runs under reports/")
    for path in found:
        assert schema_errors(json.loads(path.read_text())) == [], path



# -- results of the current shape: per-path measures, headline, error ---------------------

NEW_RUN = "20261201T213208Z-cffad9"
T0 = "2026-12-01T21:32:16.050+00:00"


def new_drill(**changes: Any) -> dict[str, Any]:
    """The real wal-gap result of the current shape (one path, ``recovery``, 2 writes lost)."""
    drill = json.loads((DATA / "drills" / "wal-gap.json").read_text())
    drill.update(changes)
    return drill


def make_run(drills: list[dict[str, Any]], verdict: str | None = None, run_id: str = NEW_RUN,
             not_run: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    order = ["failed", "error", "could_not_verify"]
    verdicts = [d["verdict"] for d in drills]
    overall = verdict or next((v for v in order if v in verdicts), "passed" if verdicts else "not_run")
    return {"schema_version": 1, "run_id": run_id, "backend": "local", "started_at": "2026-12-01T21:32:08+00:00",
            "finished_at": "2026-12-01T21:32:25+00:00", "verdict": overall, "drills": drills,
            "not_run": not_run or []}


def stage_run(tmp_path: Path, run: dict[str, Any]) -> Path:
    assert schema_errors(run) == []  # every input here is a result the schema accepts
    folder = tmp_path / "reports" / run["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "results.json"
    target.write_text(json.dumps(run, indent=2) + "\n")
    return target


def write(seq: int, op: str = "insert", row_id: int | None = None) -> dict[str, Any]:
    return {"seq": seq, "table": "moderation_event", "row_id": row_id or seq, "op": op,
            "committed_at": f"2026-12-01T21:32:{10 + seq // 20:02d}.{seq % 20:02d}0000+00:00",
            "lsn": f"0/{seq:X}000118", "walfile": f"0000000100000000000000{seq % 256:02X}"}


def measure(path: str, kind: str, expected: int, lost: list[dict[str, Any]], rpo_s: float | None,
            rto_s: float | None, in_doubt: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    present = expected - len(lost)
    return {
        "path": path, "kind": kind, "cluster": f"pg-{path}", "disaster_at": T0, "bound_seq": expected,
        "target_seq": None, "expected_writes": expected, "present_writes": present, "lost_writes": len(lost),
        "rows_expected": expected, "rows_present": present, "rpo_seconds": rpo_s, "rpo_basis": "commit_timestamp",
        "rpo_lower_bound": False, "last_acknowledged": write(expected),
        "prefix_end": write(lost[0]["seq"] - 1) if lost else write(expected),
        "first_lost": lost[0] if lost else None, "lost": lost, "survivors_after_first_loss": [],
        "in_doubt": in_doubt or [], "unverifiable": [], "after_target_present": [],
        "rto": None if rto_s is None else {"kind": kind, "declared_at": T0, "total_s": rto_s, "wall_s": rto_s + 0.25,
                                           "phases_s": {"detect": 0.25 * rto_s, "promote": 0.75 * rto_s},
                                           "excluded_s": {"stop_source": 0.25}},
    }


def with_measures(drill: dict[str, Any], measures: list[dict[str, Any]], headline: str) -> dict[str, Any]:
    """``drill`` with these paths; ``headline`` becomes rpo/rto, as DrillResult.set_measures does."""
    worst = next(m for m in measures if m["path"] == headline)
    drill["measures"] = measures
    drill["rpo"] = {"path": worst["path"], "kind": worst["kind"], "seconds": worst["rpo_seconds"],
                    "lost_writes": worst["lost_writes"], "expected_writes": worst["expected_writes"],
                    "present_writes": worst["present_writes"], "rpo_basis": worst["rpo_basis"],
                    "rpo_lower_bound": worst["rpo_lower_bound"], "last_committed": worst["last_acknowledged"],
                    "last_recovered": worst["prefix_end"], "lost": worst["lost"], "lost_out_of_order": [],
                    "in_doubt": worst["in_doubt"]}
    rto = worst["rto"] or {}
    drill["rto"] = {"total_s": rto.get("total_s"), "phases_s": rto.get("phases_s", {}),
                    "excluded_s": rto.get("excluded_s", {}), "kind": worst["kind"], "path": worst["path"]}
    return drill


def failover_drill(failover_rto: float = 1.2, s3_rto: float = 8.0, s3_lost: int = 10,
                   total: int = 40) -> dict[str, Any]:
    """A failover drill: the replica promoted with nothing lost; the restore from the bucket
    lost the last ``s3_lost`` of ``total`` writes, so s3_recovery is the worst path."""
    lost = [write(seq) for seq in range(total + 1 - s3_lost, total + 1)]
    in_doubt = [{**write(total + 1), "committed_at": None, "lsn": None, "walfile": None, "present": False}]
    drill = new_drill(drill="lose-primary", verdict="passed",
                      verdict_reasons=[], archive={}, recovery={"path": "failover", "promoted": True},
                      ledger={"committed": total, "in_doubt": 1, "expected": total, "recovered": total - s3_lost})
    drill["scenario"] = {**drill["scenario"], "name": "lose-primary"}
    return with_measures(drill, [measure("failover", "failover", total, [], 0.0, failover_rto, in_doubt),
                                 measure("s3_recovery", "archive", total, lost, 4.5, s3_rto, in_doubt)],
                         "s3_recovery")


def error_drill(name: str = "crashy") -> dict[str, Any]:
    """What pgdrill.plugin.error_result writes for a drill that raised: almost nothing."""
    return {"schema_version": 1, "drill": name, "scenario": {"name": name}, "backend": {"name": "local"},
            "started_at": "2026-12-01T21:32:10+00:00", "finished_at": "2026-12-01T21:32:11+00:00",
            "verdict": "error", "verdict_reasons": ["RuntimeError: psql exited 2 (last step: recover into pg-v2); "
                                                    "nothing about this drill is known"],
            "targets": {}, "source": {}, "backups": [], "faults": [], "disaster_declared_at": None, "recovery": {},
            "rto": {"total_s": None, "phases_s": {}, "excluded_s": {}, "kind": None, "path": None}, "rpo": {},
            "measures": [], "ledger": {}, "archive": {}, "detectors": [], "findings": [], "steps": [], "keep": {},
            "error": {"type": "RuntimeError", "message": "psql exited 2 <stderr: 'FATAL'>", "interrupted": False,
                      "where": ["drill.py:187 in run_scenario"]}}


def test_real_new_result_validates_and_renders_its_path(tmp_path: Path) -> None:
    drill = new_drill()
    assert schema_errors(drill) == []
    written = render_run(stage_run(tmp_path, make_run([drill])))
    html = written["html"].read_text()
    text = sections(html).get("drill-wal-gap")
    # The path table: the one path, its writes, lost writes, RPO with its basis, RTO, phases, excluded.
    paths = sections(html).get("drill-wal-gap-paths")
    assert re.search(r"recovery archive 25 / 27 2 0\.712 s from commit timestamps 2\.980 s preflight 0\.275 s, "
                     r"restore 0\.431 s, replay 1\.425 s, promote 0\.848 s, first_write 0\.002 s stop_source 0\.202 s",
                     paths), paths
    assert "worst path" not in paths  # one path: no "worst" label
    assert "2 acknowledged write(s) lost : insert moderation_event ids 26, 27" in text
    assert "Writes lost 2" in text and "Rows missing" not in text
    assert "Not in the RTO (harness waits): stop_source 0.202 s" in text
    assert "RPO from commit timestamps" in text
    # The timeline marks the lost writes by their sequence (the result has no ledger.missing).
    svg = html[html.index('id="drill-wal-gap"'):]
    svg = svg[svg.index('<svg class="timeline"'):svg.index("</svg>")]
    assert svg.count('class="tick-lost"') == 2
    assert "RPO window 0.712 s, 2 write(s) lost" in svg
    validate_junit(written["junit"])


def test_two_path_result_shows_the_worst_path_and_its_lost_writes(tmp_path: Path) -> None:
    drill = failover_drill()
    html = render_run(stage_run(tmp_path, make_run([drill])))["html"].read_text()
    page = sections(html)
    text = page.get("drill-lose-primary")
    paths = page.get("drill-lose-primary-paths")
    assert re.search(r"s3_recovery worst path archive 30 / 40 10 4\.500 s from commit timestamps 8\.000 s", paths)
    assert re.search(r"failover failover 40 / 40 0 0\.000 s from commit timestamps 1\.200 s", paths)
    assert paths.index("s3_recovery") < paths.index("failover failover")  # the headline first
    # The 10 lost writes by op, table and id; the table of them has exactly 10 rows.
    assert "10 acknowledged write(s) lost : insert moderation_event ids 31-40" in text
    section = html[html.index('id="drill-lose-primary"'):]
    lost_table = section[section.index('<table class="lost-writes">'):]
    lost_table = lost_table[:lost_table.index("</table>")]
    assert lost_table.count("<tr>") == 1 + 10
    assert "moderation_event 31 " in text and "moderation_event 40 " in text
    assert "No acknowledged write lost on this path." in text  # the failover path
    assert "Writes lost path s3_recovery (worst) 10 : insert moderation_event ids 31-40" in text
    assert "Rows missing none" not in text and "Writes lost none" not in text and "Rows missing" not in text
    assert "10 acknowledged write(s) lost on path s3_recovery (worst path)" in text
    # In-doubt write: listed with whether it came back.
    assert re.search(r"1 write\(s\) in doubt .* 41 insert moderation_event 41 absent", text)
    summary = page.get("summary")
    assert re.search(r"lose-primary PASS s3_recovery of 2 30 / 40 10 8\.000 s 4\.500 s", summary), summary


def test_more_than_fifty_lost_writes_are_listed_then_counted(tmp_path: Path) -> None:
    html = render_run(stage_run(tmp_path, make_run([failover_drill(s3_lost=60, total=100)])))["html"].read_text()
    section = html[html.index('id="drill-lose-primary"'):]
    lost_table = section[section.index('<table class="lost-writes">'):]
    assert lost_table[:lost_table.index("</table>")].count("<tr>") == 1 + 50
    assert "… and 10 more lost write(s)" in sections(html).get("drill-lose-primary")


def test_error_drill_is_prominent_not_passed_and_a_junit_error(tmp_path: Path) -> None:
    passed = new_drill(verdict="passed", verdict_reasons=[])
    # A results.json that claims "passed" (an older writer): the page still says ERROR.
    written = render_run(stage_run(tmp_path, make_run([passed, error_drill()], verdict="passed")))
    page = sections(written["html"].read_text())
    banner = page.get("overall-verdict")
    assert banner.startswith("ERROR") and "This is not a pass" in banner
    assert "states the verdict “passed”" in banner
    assert "Drills: ERROR 1 · PASS 1" in banner
    box = page.get("drill-crashy-error")
    assert box.startswith("ERROR: RuntimeError") and "psql exited 2 <stderr: 'FATAL'>" in box
    assert "at drill.py:187 in run_scenario" in box
    assert "No recovery path was measured: the drill raised" in page.get("drill-crashy")
    assert re.search(r"crashy ERROR none measured \? / \? \? n/a n/a", page.get("summary"))

    validate_junit(written["junit"])
    import xml.etree.ElementTree as ET

    suite = ET.parse(written["junit"]).getroot().find("testsuite")
    assert suite is not None
    counts = (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped"))
    assert counts == ("2", "0", "1", "0")
    case = next(c for c in suite.findall("testcase") if c.get("name") == "crashy")
    assert case.find("failure") is None and case.find("skipped") is None
    error = case.find("error")
    assert error is not None and error.get("type") == "error"
    assert error.get("message") == "ERROR: RuntimeError: psql exited 2 <stderr: 'FATAL'>"
    out = case.find("system-out")
    assert out is not None and "crashy: ERROR" in (out.text or "") and "error: RuntimeError" in (out.text or "")


def test_junit_not_run_is_skipped_only_and_failures_count_failed_and_could_not_verify(tmp_path: Path) -> None:
    skipped_drill = new_drill(drill="lose-cluster", verdict="not_run", verdict_reasons=["kind not installed"],
                              measures=[], rpo={}, rto={"total_s": None, "phases_s": {}})
    failed = new_drill(drill="failing")  # the real result: verdict failed
    cnv = new_drill(drill="unsure", verdict="could_not_verify", verdict_reasons=["detector(s) could not run: target"])
    run = make_run([skipped_drill, failed, cnv],
                   not_run=[{"drill": "other", "verdict": "not_run", "reason": "deselected"}])
    written = render_run(stage_run(tmp_path, run))
    validate_junit(written["junit"])
    import xml.etree.ElementTree as ET

    suite = ET.parse(written["junit"]).getroot().find("testsuite")
    assert suite is not None
    counts = (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped"))
    assert counts == ("4", "2", "0", "2")  # not_run: skipped only; failed + could_not_verify: failures
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    for name in ("lose-cluster", "other"):
        assert cases[name].find("failure") is None and cases[name].find("error") is None
        assert cases[name].find("skipped") is not None
    skipped = cases["lose-cluster"].find("skipped")
    assert skipped is not None and skipped.get("message") == "NOT RUN: kind not installed"
    assert cases["failing"].find("failure").get("type") == "failed"  # type: ignore[union-attr]
    assert cases["unsure"].find("failure").get("type") == "could_not_verify"  # type: ignore[union-attr]


def test_history_records_paths_and_missing_rows_of_the_headline() -> None:
    # PITR: the recovery owes 25 writes (up to the target) and has all 25; 27 were committed.
    pitr = new_drill(drill="pitr", verdict="passed")
    pitr_path = measure("pitr-inside-window", "archive", 25, [], 0.0, 3.0)
    pitr_path["target_seq"] = 25
    pitr = with_measures(pitr, [pitr_path], "pitr-inside-window")
    pitr["ledger"] = {**{k: v for k, v in pitr["ledger"].items() if k != "entries"},
                      "committed": 27, "expected": 25, "recovered": 25, "lost_writes": 0}
    entry = history_entry(make_run([pitr, failover_drill(), error_drill()]), "0" * 64)["drills"]
    assert entry["pitr"]["missing_rows"] == 0  # not committed − recovered = 2
    assert entry["pitr"]["lost_writes"] == 0 and entry["pitr"]["expected_writes"] == 25
    assert entry["lose-primary"] | {} == {
        **entry["lose-primary"], "verdict": "passed", "path": "s3_recovery", "kind": "archive", "rto_s": 8.0,
        "rpo_s": 4.5, "lost_writes": 10, "expected_writes": 40, "missing_rows": 10,
        "paths": {"failover": {"kind": "failover", "rto_s": 1.2, "rpo_s": 0.0, "lost_writes": 0},
                  "s3_recovery": {"kind": "archive", "rto_s": 8.0, "rpo_s": 4.5, "lost_writes": 10}}}
    assert entry["crashy"]["verdict"] == "error" and entry["crashy"]["rto_s"] is None
    # Results from before per-path measures: the missing row ids.
    old = history_entry(load(PASSED_RUN), "0" * 64)["drills"]
    assert old["wal-gap"]["missing_rows"] == 2 and old["clean-recovery"]["missing_rows"] == 0


def _line(run_id: str, drills: dict[str, Any], verdict: str = "passed") -> dict[str, Any]:
    return {"history_version": 1, "run_id": run_id, "time": run_id[:4] + "-" + run_id[4:6] + "-" + run_id[6:8]
            + "T00:00:00+00:00", "backend": "local", "verdict": verdict, "results_sha256": "0" * 64, "drills": drills}


def _paths_entry(failover: float, s3: float) -> dict[str, Any]:
    return {"verdict": "passed", "rto_s": failover, "rpo_s": 0.0, "path": "failover", "kind": "failover",
            "paths": {"failover": {"kind": "failover", "rto_s": failover, "rpo_s": 0.0, "lost_writes": 0},
                      "s3_recovery": {"kind": "archive", "rto_s": s3, "rpo_s": 0.0, "lost_writes": 0}}}


def test_rto_regression_compares_failover_with_failover_and_archive_with_archive(tmp_path: Path) -> None:
    # Last good run: the failover took 1.0 s, the restore from the bucket 9.5 s; its headline
    # (rto_s) was the failover.  This run's headline is s3_recovery at 8.0... 10.0 s.
    past = [_line("20261120T000000Z-000001", {"lose-primary": _paths_entry(1.0, 9.5)})]
    run = make_run([failover_drill(failover_rto=1.1, s3_rto=10.0)])
    assert rto_regressions(past, run) == []  # 10.0 s archive vs 1.0 s failover would be +900 %
    grown = rto_regressions(past, make_run([failover_drill(failover_rto=1.1, s3_rto=12.0)]))
    assert [(r.path, r.kind, r.previous_rto_s, r.rto_s) for r in grown] == [("s3_recovery", "archive", 9.5, 12.0)]
    assert grown[0].message.startswith("RTO of lose-primary path s3_recovery (archive) grew 26% against the last "
                                       "good run 20261120T000000Z-000001")
    failover_grew = rto_regressions(past, make_run([failover_drill(failover_rto=1.5, s3_rto=9.5)]))
    assert [(r.path, r.kind) for r in failover_grew] == [("failover", "failover")]
    # An old line holds one RTO of unknown kind: compared with a one-path drill only.
    legacy = [_line("20261120T000000Z-000001", {"lose-primary": {"verdict": "passed", "rto_s": 1.0},
                                                "wal-gap": {"verdict": "passed", "rto_s": 2.0}})]
    assert rto_regressions(legacy, make_run([failover_drill()])) == []
    (one,) = rto_regressions(legacy, make_run([new_drill()]))
    assert (one.drill, one.path, one.previous_rto_s, one.rto_s) == ("wal-gap", "recovery", 2.0, 2.98)

    # The chart keeps the two kinds apart: one line per drill and kind.
    history = tmp_path / "reports" / "history.jsonl"
    history.parent.mkdir(parents=True)
    history.write_text(json.dumps(past[0]) + "\n")
    results = stage_run(tmp_path, make_run([failover_drill(failover_rto=1.1, s3_rto=10.0)]))
    html = render_run(results)["html"].read_text()
    chart = html[html.index('aria-label="RTO per scenario over past runs"'):]
    chart = chart[:chart.index("</svg>")]
    assert "● lose-primary · archive" in chart and "● lose-primary · failover" in chart
    assert chart.count("<polyline") == 2
    assert "lose-primary · archive, run 20261120T000000Z-000001: 9.500 s" in chart
    assert "lose-primary · archive, run 20261201T213208Z-cffad9: 10.000 s" in chart
    assert "lose-primary · failover, run 20261201T213208Z-cffad9: 1.100 s" in chart
    text = sections(html).get("history")
    assert "No RTO grew more than 20 %" in text
    assert "s3_recovery (worst) (archive: 10.000 s, 4.500 s, 10)" in text


def test_minimal_results_render_whatever_is_missing_or_null(tmp_path: Path) -> None:
    """The template renders for any result the schema accepts: here every optional figure is
    missing or null (the 'int * NoneType' crash was an RTO with phases but no total)."""
    base = {"schema_version": 1, "scenario": {"name": "x", "expect": {"outcome": "complete"}},
            "backend": {"name": "local", "pgdrill": "0.1.0", "user": "u", "host": "h"},
            "started_at": "2026-12-01T00:00:00+00:00", "finished_at": None, "verdict": "could_not_verify",
            "verdict_reasons": [], "targets": {"rto_s": 300.0, "rpo_s": 300.0}, "source": {}, "backups": [],
            "faults": [], "disaster_declared_at": None, "recovery": {}, "rpo": {}, "ledger": {}, "archive": {},
            "detectors": [], "findings": [], "steps": []}
    phases_no_total = {**base, "drill": "phases-no-total", "rto": {"total_s": None, "phases_s": {"restore": 1.5,
                                                                                               "replay": None}}}
    nothing = {**base, "drill": "nothing", "rto": {"total_s": None, "phases_s": {}}, "measures": [], "error": {}}
    unknown = measure("recovery", "archive", 5, [], None, None)
    unknown.update(lost_writes=3, present_writes=2, last_acknowledged=None, prefix_end=None)
    null_path = {**base, "drill": "null-path", "rto": {"total_s": None, "phases_s": {}, "excluded_s": {},
                                                       "kind": None, "path": None},
                 "rpo": {"path": "recovery", "seconds": None, "lost_writes": 3}, "measures": [unknown],
                 "detectors": [{"name": "rto", "status": "not_applicable", "summary": "never came up",
                                "finding_codes": [], "seconds": 0}]}
    no_targets = {**nothing, "drill": "no-targets", "targets": {}, "verdict": "passed"}
    drills = [phases_no_total, nothing, null_path, no_targets, error_drill()]
    for drill in drills:
        assert schema_errors(drill) == [], drill["drill"]
    written = render_run(stage_run(tmp_path, make_run(drills)))
    page = sections(written["html"].read_text())
    assert page.get("overall-verdict").startswith("ERROR")
    assert "restore: 1.500 s" in page.get("drill-phases-no-total")
    assert "n/a / target 300 s · not measured" in page.get("drill-phases-no-total")
    text = page.get("drill-null-path")
    assert "Writes lost 3" in text and "none" not in text.split("Writes lost")[1][:20]
    assert "RPO cannot be computed" in text
    assert re.search(r"recovery archive 2 / 5 3 n/a from commit timestamps n/a not measured", text)
    assert "not applicable" in text
    assert "Not compared: no comparison of the ledger" in page.get("drill-nothing")
    assert "No recovery path was measured." in page.get("drill-nothing")
    validate_junit(written["junit"])

# -- CLI entry -----------------------------------------------------------------------------

def test_report_main_rerenders_many_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = stage(tmp_path, PASSED_RUN), stage(tmp_path, CNV_RUN)
    assert report_main([str(first), str(second.parent)]) == 0
    out = capsys.readouterr().out
    assert f"{first}: sha256" in out and "report.html" in out
    assert (second.parent / "report.html").exists()
    assert report_main([str(tmp_path / "nope" / "results.json")]) == 2  # bad input: exit 2
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
        from pgdrill.drill.spec import load_scenarios

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
