"""What the HTML template shows: results.json turned into display-ready values.

All decisions (labels, which status is alarming, chart geometry) live in the view modules,
so the template only lays things out and tests can check the decisions without parsing HTML.

This module holds the labels and value coercion every section shares, and the page's
overview (the run's verdict); the sections are :mod:`pgdrill.reports.view_drill` (one drill),
:mod:`pgdrill.reports.view_paths` (its recovery paths and lost writes) and
:mod:`pgdrill.reports.view_history` (the history charts).
"""

from __future__ import annotations

import json
from typing import Any

VERDICT_LABELS = {"passed": "PASS", "failed": "FAIL", "could_not_verify": "COULD NOT VERIFY", "not_run": "NOT RUN",
                  "error": "ERROR"}


def verdict_label(verdict: Any) -> str:
    return VERDICT_LABELS.get(str(verdict), str(verdict).upper())


def as_number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False)


# -- the page's overview -------------------------------------------------------------

_WORST_FIRST = ("failed", "error", "could_not_verify")


def page_verdict(run: dict[str, Any]) -> str:
    """The verdict the page shows: the run's, but never better than its worst drill (a drill
    that raised is not a pass even if a results.json says so)."""
    stated = str(run.get("verdict"))
    verdicts = [str(d.get("verdict")) for d in run.get("drills") or [] if isinstance(d, dict)]
    for verdict in _WORST_FIRST:
        if verdict == stated or verdict in verdicts:
            return verdict
    unknown = [v for v in verdicts + [stated] if v not in ("passed", "not_run")]
    if unknown:
        return unknown[0]
    return "passed" if "passed" in verdicts else "not_run"


def verdict_counts(run: dict[str, Any]) -> list[dict[str, Any]]:
    """How many drills got each verdict, worst first (not-run drills included)."""
    verdicts = [str(d.get("verdict")) for d in run.get("drills") or [] if isinstance(d, dict)]
    verdicts += ["not_run"] * len(run.get("not_run") or [])
    order = list(_WORST_FIRST) + ["passed", "not_run"]
    seen = sorted(set(verdicts), key=lambda v: order.index(v) if v in order else -1)
    return [{"verdict": v, "label": verdict_label(v), "count": verdicts.count(v)} for v in seen]
