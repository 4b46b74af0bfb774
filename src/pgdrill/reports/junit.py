"""``junit.xml``: one testcase per drill, for CI test-result views.

Built with ElementTree rather than a template: XML escaping (including attribute values
holding log lines with quotes and angle brackets) is then the library's job.  The shape
follows the Jenkins xunit-plugin ``junit-10.xsd`` that GitLab, GitHub and Jenkins read.

Verdicts map to JUnit outcomes (docs/results.md): ``passed`` → no child; ``failed`` and
``could_not_verify`` → ``<failure>`` (counted in ``failures``); ``error`` → ``<error>``
(counted in ``errors``); ``not_run`` → ``<skipped>`` (counted in ``skipped`` only).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

_LABEL = {"failed": "DRILL FAILED", "could_not_verify": "COULD NOT VERIFY"}


def _seconds(drill: dict[str, Any]) -> float:
    try:
        start = datetime.fromisoformat(str(drill["started_at"]))
        end = datetime.fromisoformat(str(drill["finished_at"]))
        return max((end - start).total_seconds(), 0.0)
    except (KeyError, TypeError, ValueError):
        return 0.0


def _outcome(verdict: str) -> str:
    """``passed``, ``failure``, ``error`` or ``skipped``: the JUnit outcome of a verdict."""
    if verdict == "passed":
        return "passed"
    if verdict == "error":
        return "error"
    if verdict == "not_run":
        return "skipped"
    return "failure"  # failed, could_not_verify, and any verdict this version does not know


def _error_message(drill: dict[str, Any], reasons: list[str]) -> str:
    error = drill.get("error") or {}
    if isinstance(error, dict) and (error.get("type") or error.get("message")):
        text = f"{error.get('type') or 'error'}: {error.get('message') or ''}".rstrip(": ")
        if error.get("interrupted"):
            text = f"interrupted ({text})"
        return f"ERROR: {text}"
    return "ERROR: " + ("; ".join(reasons) or "the drill raised; no error recorded")


def write_junit(run: dict[str, Any], path: Path, summaries: dict[str, str], results_sha256: str) -> Path:
    """``summaries`` maps drill name → one-line summary (verdict, paths, RTO, RPO, codes)."""
    drills = list(run.get("drills") or [])
    not_run = list(run.get("not_run") or [])
    outcomes = [_outcome(str(d.get("verdict"))) for d in drills]
    failures = outcomes.count("failure")
    errors = outcomes.count("error")
    skipped = outcomes.count("skipped") + len(not_run)
    total_time = sum(_seconds(d) for d in drills)
    host = next((str((d.get("backend") or {}).get("host")) for d in drills if (d.get("backend") or {}).get("host")),
                "")
    suites = ET.Element("testsuites", {
        "name": "pgdrill", "tests": str(len(drills) + len(not_run)), "failures": str(failures),
        "errors": str(errors), "time": f"{total_time:.3f}"})
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"pgdrill drills ({run.get('backend')})", "tests": str(len(drills) + len(not_run)),
        "failures": str(failures), "errors": str(errors), "skipped": str(skipped),
        "time": f"{total_time:.3f}", "timestamp": str(run.get("started_at") or ""), "hostname": host,
        "id": str(run.get("run_id") or "")})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run.get("run_id")), ("backend", run.get("backend")),
                        ("overall_verdict", run.get("verdict")), ("results_sha256", results_sha256)):
        ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    classname = f"pgdrill.drills.{run.get('backend')}"
    for drill, outcome in zip(drills, outcomes):
        name = str(drill.get("drill"))
        case = ET.SubElement(suite, "testcase", {"name": name, "classname": classname,
                                                 "time": f"{_seconds(drill):.3f}"})
        verdict = str(drill.get("verdict"))
        reasons = [str(r) for r in drill.get("verdict_reasons") or []]
        findings = [f"{str(f.get('severity', '')).upper()} {f.get('code')}: {f.get('message')}"
                    for f in drill.get("findings") or []]
        if outcome == "failure":
            # could_not_verify is a failure, never a pass or a skip: nothing is known.
            label = _LABEL.get(verdict)
            message = (f"{label}: " + ("; ".join(reasons) or "no reason recorded")) if label \
                else f"unknown verdict {verdict!r}"
            failure = ET.SubElement(case, "failure", {"type": verdict, "message": message})
            failure.text = "\n".join([summaries.get(name, ""), *reasons, *findings])
        elif outcome == "error":
            error = drill.get("error") if isinstance(drill.get("error"), dict) else {}
            element = ET.SubElement(case, "error", {"type": "error", "message": _error_message(drill, reasons)})
            element.text = "\n".join([summaries.get(name, ""), *reasons,
                                      *[f"at {w}" for w in (error or {}).get("where") or []], *findings])
        elif outcome == "skipped":
            ET.SubElement(case, "skipped", {"message": "NOT RUN: " + ("; ".join(reasons) or "not run")})
        out = ET.SubElement(case, "system-out")
        out.text = summaries.get(name, "")
    for entry in not_run:
        case = ET.SubElement(suite, "testcase", {"name": str(entry.get("drill")), "classname": classname,
                                                 "time": "0.000"})
        ET.SubElement(case, "skipped", {"message": f"NOT RUN: {entry.get('reason', '')}"})
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path
