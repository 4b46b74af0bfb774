"""Prometheus metrics of a drill run: ``metrics.prom`` beside ``results.json`` (docs/metrics.md).

Built from the run's ``results.json`` with ``prometheus_client`` (registry, atomic
``write_to_textfile``, ``push_to_gateway``), so every figure is one results.json already holds.
The file describes *this* run's drills only: a drill a run did not select says nothing about it,
so one selection (nightly smoke, quarterly full) should publish to its own textfile or
Pushgateway group, and the staleness alert then sees a selection that stopped running.

The one figure a single run cannot know is when a drill last *passed*.  It is the latest of
(1) this run, if the drill passed, (2) the runs in ``<reports dir>/history.jsonl`` (same backend,
up to this run), and (3) the previous content of the requested ``--metrics-textfile``, which
survives where the reports directory does not (an ephemeral CI runner or pod).  A run that fails
therefore keeps the last passing timestamp instead of resetting it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    push_to_gateway,
    write_to_textfile,
)

from pgdrill.errors import UsageError
from pgdrill.pushgateway import credentials_handler
from pgdrill.reports.history import History, read_history, rto_series, runs_up_to
from pgdrill.reports.render import HISTORY_FILE
from pgdrill.runs import check_writable_dir

METRICS_FILE = "metrics.prom"
DEFAULT_JOB = "pgdrill-drills"
VERDICTS = ("passed", "failed", "could_not_verify", "error", "not_run")
DRILL = ("drill", "backend")
PATH = (*DRILL, "path", "kind")

HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "pgdrill_drill_last_run_timestamp": ("When the run that last ran the drill (this run) finished (Unix time).",
                                         DRILL),
    "pgdrill_drill_last_success_timestamp": (
        ("When the last run in which the drill passed finished (Unix time): this run, reports/history.jsonl "
         "or the previous textfile; absent if it never passed."), DRILL),
    "pgdrill_drill_verdict": ("1 for the drill's verdict in this run, 0 for the other verdicts.", (*DRILL, "verdict")),
    "pgdrill_drill_rto_seconds": ("RTO of a recovery path in this run (docs/measures.md).", PATH),
    "pgdrill_drill_rpo_seconds": ("Achieved RPO of a recovery path in this run.", PATH),
    "pgdrill_drill_lost_writes": ("Acknowledged writes lost by a recovery path in this run.", PATH),
    "pgdrill_drill_last_good_rto_seconds": (
        "RTO of the same path and kind in the last earlier run in which the drill passed.", PATH),
    "pgdrill_run_timestamp": ("When the run finished (Unix time).", ("backend",)),
    "pgdrill_run_drills": ("Drills of the run, by verdict.", ("backend", "verdict")),
}
"""Every metric this module emits: name -> (help, labels).  The alert rules' tests read it."""


@dataclass
class Published:
    written: list[str] = field(default_factory=list)
    """Where the metrics went: file paths and Pushgateway URLs (without credentials)."""
    errors: list[str] = field(default_factory=list)
    """One line per destination that failed (metrics.prom beside results.json included)."""


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def previous_successes(textfile: Path | None) -> dict[tuple[str, str], float]:
    """``pgdrill_drill_last_success_timestamp`` of an earlier textfile, by (drill, backend).
    An unreadable or foreign file gives nothing: it only ever adds a figure, never hides one."""
    if textfile is None or not textfile.is_file():
        return {}
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(textfile.read_text(encoding="utf-8")):
            for sample in family.samples:
                if sample.name == "pgdrill_drill_last_success_timestamp":
                    key = (sample.labels.get("drill", ""), sample.labels.get("backend", ""))
                    found[key] = max(found.get(key, 0.0), float(sample.value))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"pgdrill: {textfile}: previous metrics not read ({exc})", file=sys.stderr)
        return {}
    return found


def _last_good_rto(earlier: list[dict[str, Any]], drill: str, series: tuple[str | None, str | None],
                   only_path: bool) -> float | None:
    """The same comparison as the report's RTO regression (history.rto_regressions): the latest
    earlier passing run that measured this path and kind; a figure from before per-path measures
    (kind unknown) counts only for a drill's only path."""
    for entry in reversed(earlier):
        past = (entry.get("drills") or {}).get(drill) or {}
        if past.get("verdict") != "passed":
            continue
        rtos = rto_series(past)
        value = rtos.get(series, rtos.get((None, None)) if only_path else None)
        if value:
            return value
    return None


def build_registry(run: dict[str, Any], history: History | None = None,
                   previous: dict[tuple[str, str], float] | None = None) -> CollectorRegistry:
    """The metrics of one run (a parsed results.json).  ``history``: the reports dir's history
    (this run may be in it or not); ``previous``: last-success figures of an earlier textfile."""
    registry = CollectorRegistry(auto_describe=True)
    g = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in HELP.items()}
    backend = str(run.get("backend") or "")
    run_time = _timestamp(run.get("finished_at")) or _timestamp(run.get("started_at"))
    earlier = [e for e in (runs_up_to(history, run) if history is not None else [])
               if e.get("run_id") != run.get("run_id")]
    counts = dict.fromkeys(VERDICTS, 0)
    entries = [(d, str(d.get("verdict"))) for d in run.get("drills") or [] if isinstance(d, dict)]
    ran_names = {str(d.get("drill")) for d, _ in entries}
    # A drill with a result is never also counted as not run: its real verdict wins.
    entries += [(s, "not_run") for s in run.get("not_run") or []
                if isinstance(s, dict) and str(s.get("drill")) not in ran_names]
    for drill, verdict in entries:
        name = str(drill.get("drill"))
        # Anything unknown (a result too broken to say) counts as an error: never missing, never a pass.
        verdict = verdict if verdict in VERDICTS else "error"
        counts[verdict] += 1
        for candidate in VERDICTS:
            g["pgdrill_drill_verdict"].labels(name, backend, candidate).set(1 if candidate == verdict else 0)
        # The run's time, not the drill's own: history.jsonl keeps only that, and a pass must read
        # the same in this run's file as in every later run's.
        ran = run_time if verdict != "not_run" else None
        if ran is not None:
            g["pgdrill_drill_last_run_timestamp"].labels(name, backend).set(ran)
        passes = [ran if verdict == "passed" else None, (previous or {}).get((name, backend))]
        passes += [_timestamp(e.get("time")) for e in earlier
                   if ((e.get("drills") or {}).get(name) or {}).get("verdict") == "passed"]
        known = [t for t in passes if t is not None]
        if known:
            g["pgdrill_drill_last_success_timestamp"].labels(name, backend).set(max(known))
        measures = [m for m in drill.get("measures") or [] if isinstance(m, dict) and m.get("path")]
        for measure in measures:
            labels = (name, backend, str(measure["path"]), str(measure.get("kind") or ""))
            # Not measured is left out, never 0: a 0 RTO or RPO would read as perfect.
            for metric, value in (("pgdrill_drill_rto_seconds", (measure.get("rto") or {}).get("total_s")),
                                  ("pgdrill_drill_rpo_seconds", measure.get("rpo_seconds")),
                                  ("pgdrill_drill_lost_writes", measure.get("lost_writes"))):
                if (number := _number(value)) is not None:
                    g[metric].labels(*labels).set(number)
            good = _last_good_rto(earlier, name, (labels[2], measure.get("kind")), len(measures) == 1)
            if good is not None:
                g["pgdrill_drill_last_good_rto_seconds"].labels(*labels).set(good)
    if run_time is not None:
        g["pgdrill_run_timestamp"].labels(backend).set(run_time)
    for verdict, count in counts.items():
        g["pgdrill_run_drills"].labels(backend, verdict).set(count)
    return registry


def _netloc(url: str) -> str:
    """host[:port] of ``url``, without user and password."""
    return urlsplit(url).netloc.rpartition("@")[2]


def safe_url(url: str) -> str:
    """The URL without user and password: what messages may show."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, _netloc(url), parts.path, "", ""))


def pushgateway_target(url: str, backend: str) -> tuple[str, str, dict[str, str]]:
    """(gateway, job, grouping key) of ``--pushgateway``.  A URL ending in
    ``/metrics/job/NAME[/LABEL/VALUE]...`` names its group, as curl users write it; otherwise the
    group is job ``pgdrill-drills``, backend ``<backend>``."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"pushgateway URL {safe_url(url)!r}: the port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"pushgateway URL {safe_url(url)!r} is not an http(s) URL (e.g. http://pushgateway:9091)")
    base, _, group = parts.path.partition("/metrics/job/")
    gateway = urlunsplit((parts.scheme, _netloc(url), base, "", ""))
    if not group:
        return gateway, DEFAULT_JOB, {"backend": backend}
    pieces = [unquote(p) for p in group.strip("/").split("/")]
    if len(pieces) % 2 != 1 or not all(pieces):
        raise UsageError(f"pushgateway URL {safe_url(url)!r}: expected .../metrics/job/NAME[/LABEL/VALUE]...")
    return gateway, pieces[0], dict(zip(pieces[1::2], pieces[2::2]))


def check_destinations(textfile: str | None, pushgateway: str | None) -> None:
    """Bad metrics options, found before any drill starts: one ``UsageError`` line."""
    if textfile is not None:
        path = Path(textfile)
        if path.suffix != ".prom" or path.is_dir():
            raise UsageError(f"metrics textfile {textfile} must be a file name ending in .prom "
                             "(node-exporter's textfile collector reads only those)")
        check_writable_dir(path.parent, "fix the metrics textfile path")
    if pushgateway is not None:
        pushgateway_target(pushgateway, "")


def publish(results_json: Path, *, textfile: str | None = None, pushgateway: str | None = None,
            history: bool = True) -> Published:
    """Write ``metrics.prom`` beside ``results_json``, and to ``textfile`` and ``pushgateway``
    when given.  Never raises for a destination: each failure is one line in ``errors``."""
    results_json = Path(results_json)
    out = Published()
    try:
        run = json.loads(results_json.read_bytes())
    except (OSError, ValueError) as exc:
        out.errors.append(f"{results_json}: metrics not built, results.json unreadable ({exc})")
        return out
    if not isinstance(run, dict):
        out.errors.append(f"{results_json}: metrics not built, not a pgdrill run (expected a JSON object)")
        return out
    past = read_history(results_json.parent.parent / HISTORY_FILE) if history else None
    registry = build_registry(run, past, previous_successes(Path(textfile) if textfile else None))
    targets = [results_json.parent / METRICS_FILE] + ([Path(textfile)] if textfile else [])
    for target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(target), registry)  # temp file + rename: a scrape never sees half a file
            out.written.append(str(target))
        except OSError as exc:
            out.errors.append(f"metrics not written to {target}: {exc.strerror or exc}")
    if pushgateway:
        shown = safe_url(pushgateway)
        try:
            gateway, job, group = pushgateway_target(pushgateway, str(run.get("backend") or ""))
            # PUT: the group holds exactly this run's drills, like the textfile.
            push_to_gateway(gateway, job, registry, grouping_key=group, timeout=30, handler=credentials_handler(pushgateway))
            out.written.append(shown)
        except (OSError, UsageError, ValueError) as exc:
            reason = str(getattr(exc, "reason", None) or exc).replace(pushgateway, shown)
            out.errors.append(f"metrics not pushed to {shown}: {reason}")
    return out
