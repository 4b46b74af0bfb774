"""What the HTML template shows: results.json turned into display-ready values.

All decisions (labels, which status is alarming, chart geometry) live here, so the
template only lays things out and tests can check the decisions without parsing HTML.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..findings import catalogue
from .history import Regression
from .timeline import Timeline, build_timeline, id_ranges

VERDICT_LABELS = {"passed": "PASS", "failed": "FAIL", "could_not_verify": "COULD NOT VERIFY", "not_run": "NOT RUN"}
DETECTOR_LABELS = {"clean": "clean", "findings": "findings", "could_not_verify": "COULD NOT VERIFY"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def verdict_label(verdict: Any) -> str:
    return VERDICT_LABELS.get(str(verdict), str(verdict).upper())


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str, ensure_ascii=False)


@dataclass
class Measure:
    """RTO or RPO against its target, with a bar drawn to scale."""

    name: str
    value: float | None
    target: float | None
    unit: str = "s"
    phases: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    @property
    def status(self) -> str:
        if self.value is None:
            return "unknown"
        if self.target is None:
            return "no_target"
        return "within" if self.value <= self.target else "over"

    @property
    def status_label(self) -> str:
        return {"unknown": "not measured", "no_target": "no target set",
                "within": "within target", "over": "OVER TARGET"}[self.status]


def _scale(target: float | None, total: float | None) -> float:
    """The bar spans the measured RTO: a 6 s recovery against a 300 s target would
    otherwise be a sliver whose phases nobody can see.  Only an RTO over target stretches
    the scale to include the target line."""
    if total:
        return max(total, target or 0.0) if target is not None and total > target else total
    return max(target or 0.0, 1e-9)


def _bar_phases(phases: dict[str, Any], target: float | None, total: float | None) -> list[dict[str, Any]]:
    """Stacked bar segments in % of the bar's scale."""
    scale = _scale(target, total)
    out: list[dict[str, Any]] = []
    offset = 0.0
    for index, (name, seconds) in enumerate(phases.items()):
        value = _num(seconds) or 0.0
        width = 100.0 * value / scale
        out.append({"name": name, "seconds": value, "x": round(offset, 3), "width": round(width, 3),
                    "index": index % 6,
                    "share": (value / total) if total else 0.0})
        offset += width
    return out


def _target_pct(target: float | None, total: float | None) -> float | None:
    """Where the target line goes on the bar; None when the RTO is within target."""
    if target is None or total is None or total <= target:
        return None
    return round(100.0 * target / _scale(target, total), 3)


def drill_view(drill: dict[str, Any], regressions: list[Regression]) -> dict[str, Any]:
    codes = catalogue()
    targets = drill.get("targets") or {}
    rto = drill.get("rto") or {}
    rpo = drill.get("rpo") or {}
    ledger = drill.get("ledger") or {}
    rto_total = _num(rto.get("total_s"))
    rto_target = _num(targets.get("rto_s"))
    rto_measure = Measure("RTO", rto_total, rto_target,
                          phases=_bar_phases(rto.get("phases_s") or {}, rto_target, rto_total))
    rpo_measure = Measure("RPO", _num(rpo.get("seconds")), _num(targets.get("rpo_s")),
                          note=(f"{rpo.get('lost_writes')} committed write(s) lost"
                                if rpo.get("lost_writes") is not None else "not measured"))
    missing = ledger.get("missing") or {}
    missing_ids = {(str(t), int(i)) for t, ids in missing.items() for i in ids}
    missing_rows = [e for e in ledger.get("entries") or []
                    if isinstance(e, dict) and (str(e.get("table")), int(e.get("row_id", -1))) in missing_ids]
    findings = sorted(drill.get("findings") or [],
                      key=lambda f: (SEVERITY_ORDER.get(str(f.get("severity")), 9), str(f.get("code"))))
    expected_codes = set((scenario_expect := (drill.get("scenario") or {}).get("expect") or {}).get("findings") or [])
    finding_views = []
    for finding in findings:
        code = codes.get(str(finding.get("code")))
        finding_views.append({
            **finding,
            "title": code.title if code else "",
            "remedy": finding.get("remedy") or (code.remedy if code else ""),
            "evidence_text": pretty(finding.get("evidence") or {}),
            # A loss drill passes *because* these were found: say so next to the red badge.
            "expected": finding.get("code") in expected_codes,
        })
    detectors = [{**d, "label": DETECTOR_LABELS.get(str(d.get("status")), str(d.get("status")))}
                 for d in drill.get("detectors") or []]
    unverified = [d["name"] for d in detectors if d.get("status") == "could_not_verify"]
    timeline: Timeline | None = build_timeline(drill)
    failed_step = next((s for s in drill.get("steps") or [] if str(s.get("status")) != "ok"), None)
    scenario = drill.get("scenario") or {}
    audit = drill.get("audit")
    return {
        "name": drill.get("drill"),
        "anchor": "drill-" + "".join(c if c.isalnum() else "-" for c in str(drill.get("drill"))),
        "verdict": drill.get("verdict"),
        "verdict_label": verdict_label(drill.get("verdict")),
        "reasons": drill.get("verdict_reasons") or [],
        "scenario": scenario,
        "expect": scenario_expect,
        "expect_text": pretty(scenario.get("expect") or {}),
        "workload_text": pretty(scenario.get("workload") or {}),
        "backend": drill.get("backend") or {},
        "started_at": drill.get("started_at"),
        "finished_at": drill.get("finished_at"),
        "disaster_declared_at": drill.get("disaster_declared_at"),
        "source": drill.get("source") or {},
        "backups": drill.get("backups") or [],
        "faults": [{**f, "evidence_text": pretty(f.get("evidence") or {})} for f in drill.get("faults") or []],
        "recovery": drill.get("recovery") or {},
        "timeline": timeline,
        "rto": rto_measure,
        "rto_target_pct": _target_pct(rto_target, rto_total),
        "rpo": rpo_measure,
        "rpo_detail": rpo,
        "ledger": ledger,
        "has_ledger": bool(ledger),
        "missing": {t: id_ranges([int(i) for i in ids]) for t, ids in missing.items() if ids},
        "missing_count": len(missing_ids),
        "missing_rows": missing_rows,
        "findings": finding_views,
        "detectors": detectors,
        "unverified": unverified,
        "steps": drill.get("steps") or [],
        "failed_step": failed_step,
        "audit": audit if isinstance(audit, dict) else None,
        "audit_sides": _audit_sides(audit) if isinstance(audit, dict) else [],
        "regressions": [r for r in regressions if r.drill == drill.get("drill")],
    }


def _audit_sides(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """``audit.before`` / ``audit.after`` (``pgdrill audit`` reports), summarised side by side."""
    sides = []
    for key in ("before", "after"):
        report = audit.get(key)
        if not isinstance(report, dict):
            sides.append({"side": key, "present": False})
            continue
        wal = report.get("wal") or {}
        backups = report.get("base_backups") or {}
        sides.append({
            "side": key, "present": True, "status": report.get("status"),
            "audited_at": report.get("audited_at"), "location": report.get("location"),
            "server_name": report.get("server_name"),
            "backups": backups.get("count"), "newest_backup": backups.get("newest_completed"),
            "segments": wal.get("segments"), "missing_segments": wal.get("missing_segments"),
            "newest_segment": wal.get("newest_segment"),
            "findings": [f"{f.get('severity', '').upper()} {f.get('code')}: {f.get('message')}"
                         for f in report.get("findings") or []],
        })
    return sides


# -- history chart --------------------------------------------------------------------

CHART_W, CHART_H = 900, 220
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 60, 170, 16, 36


def history_chart(runs: list[dict[str, Any]], metric: str, target: float | None, current_run: str) -> dict[str, Any]:
    """One SVG line chart: ``metric`` (``rto_s`` / ``rpo_s``) per scenario over ``runs``."""
    names = sorted({n for e in runs for n in (e.get("drills") or {})})
    values = [_num(((e.get("drills") or {}).get(n) or {}).get(metric)) for e in runs for n in names]
    known = [v for v in values if v is not None]
    # Scale to the data, not to the target: RTOs of seconds against a 300 s target would all
    # sit on the zero line.  The target line is drawn when it falls inside the scale.
    top_value = max(known + [1e-3]) * 1.25
    if target is not None and target <= top_value * 1.6:
        top_value = max(top_value, target * 1.1)
    plot_w = CHART_W - CHART_LEFT - CHART_RIGHT
    plot_h = CHART_H - CHART_TOP - CHART_BOTTOM
    step = plot_w / max(len(runs) - 1, 1)

    def y_of(v: float) -> float:
        return round(CHART_TOP + plot_h - plot_h * v / top_value, 1)

    def x_of(i: int) -> float:
        return round(CHART_LEFT + (i * step if len(runs) > 1 else plot_w / 2), 1)

    series = []
    for index, name in enumerate(names):
        points, gaps = [], []
        for i, entry in enumerate(runs):
            drill = (entry.get("drills") or {}).get(name)
            if drill is None:
                continue
            value = _num(drill.get(metric))
            if value is None:  # could not verify / not run: show the hole, do not hide it
                gaps.append({"x": x_of(i), "y": y_of(0), "run_id": entry.get("run_id"),
                             "verdict_label": verdict_label(drill.get("verdict"))})
                continue
            points.append({"x": x_of(i), "y": y_of(value), "value": value, "run_id": entry.get("run_id"),
                           "verdict": drill.get("verdict"), "verdict_label": verdict_label(drill.get("verdict")),
                           "current": entry.get("run_id") == current_run})
        series.append({"name": name, "index": index % 6, "points": points, "gaps": gaps,
                       "polyline": " ".join(f"{p['x']},{p['y']}" for p in points)})
    in_scale = target is not None and target <= top_value
    ticks = [{"y": y_of(top_value * f), "label": f"{top_value * f:.3g} s"} for f in (0, 0.25, 0.5, 0.75, 1)]
    xlabels = [{"x": x_of(i), "label": str(e.get("run_id", ""))[:15], "current": e.get("run_id") == current_run}
               for i, e in enumerate(runs)]
    # Too many run ids on the axis overlap: label about eight of them.
    every = max(1, len(xlabels) // 8)
    xlabels = [x for i, x in enumerate(xlabels) if i % every == 0 or x["current"]]
    return {"width": CHART_W, "height": CHART_H, "left": CHART_LEFT, "right": CHART_W - CHART_RIGHT,
            "top": CHART_TOP, "bottom": CHART_H - CHART_BOTTOM, "series": series, "yticks": ticks,
            "xlabels": xlabels, "target_y": y_of(target) if in_scale and target is not None else None, "target": target,
            "target_above": target is not None and not in_scale,
            "metric": metric}
