"""Render one run's ``results.json`` into report.html, junit.xml, the sha256 file and history."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import socket
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from pgdrill import __version__
from pgdrill.reports.history import (
    DEFAULT_RTO_GROWTH,
    append_history,
    history_entry,
    read_history,
    rto_regressions,
    runs_up_to,
)
from pgdrill.reports.junit import write_junit
from pgdrill.reports.redact import environment_secrets, redact
from pgdrill.reports.timeline import STATES
from pgdrill.reports.view import page_verdict, verdict_counts, verdict_label
from pgdrill.reports.view_drill import drill_view
from pgdrill.reports.view_history import history_chart
from pgdrill.results import SCHEMA_VERSION, summary_line

log = logging.getLogger("pgdrill.reports")

HISTORY_FILE = "history.jsonl"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgdrill", "templates"),
        autoescape=True,  # every template, whatever its extension: evidence is untrusted text
        # Results vary (a drill that stopped early has no recovery, older files lack newer
        # keys): a missing key renders empty instead of failing the whole audit report.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = _seconds
    env.filters["verdict_label"] = verdict_label
    return env


def _seconds(value: Any, digits: int = 3) -> str:
    """``1.234 s``; ``n/a`` for anything that is not a number (null, a missing key)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    return f"{float(value):.{digits}f} s"


def schema() -> dict[str, Any]:
    text = resources.files("pgdrill").joinpath("schemas/drill-result-v1.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def schema_errors(document: Any, limit: int = 10) -> list[str]:
    """Validation problems of a results.json (a run) or a drills/<name>.json (one drill)."""
    import jsonschema

    full = schema()
    # Validate against the branch the document claims to be: oneOf alone would only say
    # "not valid under any of the given schemas", which tells nobody what to fix.
    branch = "run" if isinstance(document, dict) and "run_id" in document else \
        "drill" if isinstance(document, dict) and "drill" in document else None
    target = {"$schema": full["$schema"], "$defs": full["$defs"], "$ref": f"#/$defs/{branch}"} if branch else full
    validator = jsonschema.Draft202012Validator(target)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message[:200]}" for e in errors[:limit]]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def render_run(results_json: Path, *, rto_growth_threshold: float = DEFAULT_RTO_GROWTH,
               history: bool = True) -> dict[str, Path]:
    """Write report.html, junit.xml and results.json.sha256 next to ``results_json`` and
    append the run to ``<reports dir>/history.jsonl`` (the folder above the run's).

    Returns the paths written, by kind: ``html``, ``junit``, ``sha256`` and ``history``.
    Raises ``OSError`` / ``ValueError`` when results.json cannot be read as JSON."""
    results_json = Path(results_json)
    folder = results_json.parent
    raw = results_json.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    loaded = json.loads(raw)
    if not isinstance(loaded, dict):
        raise ValueError(f"{results_json}: not a pgdrill run (expected a JSON object)")
    problems = schema_errors(loaded)
    run: dict[str, Any] = redact(loaded, environment_secrets())

    written: dict[str, Path] = {}
    sha_path = folder / "results.json.sha256"
    # sha256sum's format, so `sha256sum -c results.json.sha256` checks it in the folder.
    sha_path.write_text(f"{digest}  {results_json.name}\n", encoding="utf-8")
    written["sha256"] = sha_path

    history_path = folder.parent / HISTORY_FILE
    if history:
        append_history(history_path, history_entry(run, digest))
        written["history"] = history_path
    past = read_history(history_path)
    runs = runs_up_to(past, run) if history else []
    regressions = rto_regressions(runs, run, rto_growth_threshold)

    drills = [drill_view(d, regressions) for d in run.get("drills") or []]
    summaries = {str(d.get("drill")): _summary(d) for d in run.get("drills") or []}
    first_backend = next((d.get("backend") or {} for d in run.get("drills") or []), {})
    targets = next((d.get("targets") for d in run.get("drills") or [] if d.get("targets")), {})
    shown = page_verdict(run)
    context = {
        "run": run,
        "verdict": shown,
        "verdict_label": verdict_label(shown),
        "stated_verdict": run.get("verdict"),
        "verdict_counts": verdict_counts(run),
        "drills": drills,
        "not_run": run.get("not_run") or [],
        "backend": first_backend,
        "versions": (first_backend.get("versions") or {}),
        "targets": targets or {},
        "sha256": digest,
        "results_name": results_json.name,
        "schema_version": SCHEMA_VERSION,
        "schema_problems": problems,
        "history_runs": runs,
        "history_warnings": past.warnings,
        "rto_chart": history_chart(runs, "rto_s", (targets or {}).get("rto_s"), str(run.get("run_id")), by_kind=True),
        "rpo_chart": history_chart(runs, "rpo_s", (targets or {}).get("rpo_s"), str(run.get("run_id"))),
        "regressions": regressions,
        "threshold": rto_growth_threshold,
        "states": STATES,
        "rendered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rendered_by": f"{_user()}@{socket.gethostname()}",
        "pgdrill_version": __version__,
        "summaries": summaries,
    }
    html = _environment().get_template("report.html.j2").render(context)
    html_path = folder / "report.html"
    html_path.write_text(html, encoding="utf-8")
    written["html"] = html_path
    written["junit"] = write_junit(run, folder / "junit.xml", summaries, digest)
    return written


def _summary(drill: dict[str, Any]) -> str:
    """``summary_line``, or the verdict alone for a result too broken to summarise (the report
    of a file that fails the schema still shows what could be read)."""
    try:
        return summary_line(drill)
    except (KeyError, TypeError, AttributeError, ValueError):
        return f"{drill.get('drill')}: {str(drill.get('verdict')).upper()}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers with arbitrary uids)
        return str(os.getuid())


