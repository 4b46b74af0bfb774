"""``junit.xml``: one testcase per drill, for CI test-result views.

Built with ElementTree rather than a template: XML escaping (including attribute values
holding log lines with quotes and angle brackets) is then the library's job.  The shape
follows the Jenkins xunit-plugin ``junit-10.xsd`` that GitLab, GitHub and Jenkins read.
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


def write_junit(run: dict[str, Any], path: Path, summaries: dict[str, str], results_sha256: str) -> Path:
    """``summaries`` maps drill name → one-line summary (verdict, rows, RTO, RPO, codes)."""
    drills = list(run.get("drills") or [])
    not_run = list(run.get("not_run") or [])
    failures = sum(1 for d in drills if d.get("verdict") in _LABEL)
    total_time = sum(_seconds(d) for d in drills)
    host = next((str((d.get("backend") or {}).get("host")) for d in drills if (d.get("backend") or {}).get("host")),
                "")
    suites = ET.Element("testsuites", {
        "name": "pgdrill", "tests": str(len(drills) + len(not_run)), "failures": str(failures),
        "errors": "0", "time": f"{total_time:.3f}"})
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"pgdrill drills ({run.get('backend')})", "tests": str(len(drills) + len(not_run)),
        "failures": str(failures), "errors": "0", "skipped": str(len(not_run)),
        "time": f"{total_time:.3f}", "timestamp": str(run.get("started_at") or ""), "hostname": host,
        "id": str(run.get("run_id") or "")})
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", run.get("run_id")), ("backend", run.get("backend")),
                        ("overall_verdict", run.get("verdict")), ("results_sha256", results_sha256)):
        ET.SubElement(properties, "property", {"name": name, "value": str(value)})
    classname = f"pgdrill.drills.{run.get('backend')}"
    for drill in drills:
        name = str(drill.get("drill"))
        case = ET.SubElement(suite, "testcase", {"name": name, "classname": classname,
                                                 "time": f"{_seconds(drill):.3f}"})
        verdict = str(drill.get("verdict"))
        reasons = [str(r) for r in drill.get("verdict_reasons") or []]
        if verdict in _LABEL:
            # could_not_verify is a failure, never a pass or a skip: nothing is known.
            failure = ET.SubElement(case, "failure", {
                "type": verdict,
                "message": f"{_LABEL[verdict]}: " + ("; ".join(reasons) or "no reason recorded")})
            failure.text = "\n".join([summaries.get(name, ""), *reasons, *[
                f"{f.get('severity', '').upper()} {f.get('code')}: {f.get('message')}"
                for f in drill.get("findings") or []]])
        elif verdict != "passed":
            ET.SubElement(case, "failure", {"type": verdict, "message": f"unknown verdict {verdict!r}"})
        out = ET.SubElement(case, "system-out")
        out.text = summaries.get(name, "")
    for skipped in not_run:
        case = ET.SubElement(suite, "testcase", {"name": str(skipped.get("drill")), "classname": classname,
                                                 "time": "0.000"})
        ET.SubElement(case, "skipped", {"message": f"NOT RUN: {skipped.get('reason', '')}"})
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    return path
