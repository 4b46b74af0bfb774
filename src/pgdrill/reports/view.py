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

VERDICT_LABELS = {"passed": "PASS", "failed": "FAIL", "could_not_verify": "COULD NOT VERIFY", "not_run": "NOT RUN",
                  "error": "ERROR"}
DETECTOR_LABELS = {"clean": "clean", "findings": "findings", "could_not_verify": "COULD NOT VERIFY",
                   "not_applicable": "not applicable"}
KIND_LABELS = {"archive": "restore from the archive", "failover": "failover to a replica",
               "crash": "crash restart"}
BASIS_LABELS = {"commit_timestamp": "from commit timestamps",
                "estimated_from_ack": "estimated from acknowledgements",
                "unknown": "basis unknown"}
#: Lost or in-doubt writes listed per path; the rest is counted ("and N more").
WRITES_SHOWN = 50
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


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _write_view(write: Any) -> dict[str, Any] | None:
    """One ledger write (lost, in doubt, ...) as a table row; None for anything unreadable."""
    if not isinstance(write, dict):
        return None
    present = write.get("present")
    return {"seq": write.get("seq"), "op": write.get("op") or "insert", "table": write.get("table"),
            "row_id": write.get("row_id"),
            "committed_at": write.get("committed_at") or (
                f"~{write['committed_at_estimated']} (estimated)" if write.get("committed_at_estimated") else None),
            "lsn": write.get("lsn"), "walfile": write.get("walfile"),
            "present": present,
            "present_label": "present" if present is True else "absent" if present is False else "cannot tell"}


def _writes(items: Any) -> dict[str, Any]:
    """The first WRITES_SHOWN writes of a list, and how many more there are."""
    rows = [w for w in (_write_view(i) for i in (items if isinstance(items, list) else [])) if w is not None]
    return {"rows": rows[:WRITES_SHOWN], "more": max(len(rows) - WRITES_SHOWN, 0), "count": len(rows)}


def _by_op(items: Any) -> list[dict[str, Any]]:
    """Lost writes grouped by op and table, with their row ids as ranges: "insert moderation_event 26, 27"."""
    groups: dict[tuple[str, str], list[int]] = {}
    for write in items if isinstance(items, list) else []:
        if isinstance(write, dict) and _int(write.get("row_id")) is not None:
            groups.setdefault((str(write.get("op") or "insert"), str(write.get("table"))), []).append(write["row_id"])
    return [{"op": op, "table": table, "ids": id_ranges(ids), "count": len(ids)}
            for (op, table), ids in groups.items()]


def _rto_view(rto: Any) -> dict[str, Any]:
    rto = rto if isinstance(rto, dict) else {}
    phases = rto.get("phases_s") if isinstance(rto.get("phases_s"), dict) else {}
    excluded = rto.get("excluded_s") if isinstance(rto.get("excluded_s"), dict) else {}
    return {"total": _num(rto.get("total_s")), "wall": _num(rto.get("wall_s")),
            "phases": [{"name": k, "seconds": _num(v)} for k, v in phases.items()],
            "excluded": [{"name": k, "seconds": _num(v)} for k, v in excluded.items()],
            "excluded_total": sum(_num(v) or 0.0 for v in excluded.values())}


def _path_view(measure: dict[str, Any], headline: str | None, several: bool) -> dict[str, Any]:
    lost = measure.get("lost") if isinstance(measure.get("lost"), list) else []
    lost_writes = _int(measure.get("lost_writes"))
    if lost_writes is None:
        lost_writes = len(lost) if "lost" in measure else None
    basis = measure.get("rpo_basis")
    return {
        "path": str(measure.get("path")),
        "kind": measure.get("kind"),
        "kind_label": KIND_LABELS.get(str(measure.get("kind")), str(measure.get("kind") or "n/a")),
        "cluster": measure.get("cluster"),
        "headline": measure.get("path") == headline,
        "worst": several and measure.get("path") == headline,
        "expected": _int(measure.get("expected_writes")),
        "present": _int(measure.get("present_writes")),
        "lost_writes": lost_writes,
        "rows_expected": _int(measure.get("rows_expected")),
        "rows_present": _int(measure.get("rows_present")),
        "rpo": _num(measure.get("rpo_seconds")),
        "rpo_basis": basis,
        "rpo_basis_label": BASIS_LABELS.get(str(basis), str(basis)) if basis else "n/a",
        "rpo_lower_bound": bool(measure.get("rpo_lower_bound")),
        "rto": _rto_view(measure.get("rto")),
        "lost": _writes(lost),
        "lost_groups": _by_op(lost),
        "in_doubt": _writes(measure.get("in_doubt")),
        "unverifiable": _writes(measure.get("unverifiable")),
        "after_target_present": _writes(measure.get("after_target_present")),
        "survivors": _writes(measure.get("survivors_after_first_loss")),
        "first_lost": _write_view(measure.get("first_lost")),
        "prefix_end": _write_view(measure.get("prefix_end")),
        "last_acknowledged": _write_view(measure.get("last_acknowledged")),
    }


def path_views(drill: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recovery path of a drill, the headline (worst) one first."""
    measures = [m for m in drill.get("measures") or [] if isinstance(m, dict)]
    headline = (drill.get("rpo") or {}).get("path") or (drill.get("rto") or {}).get("path")
    if measures and not any(m.get("path") == headline for m in measures):
        headline = measures[0].get("path")
    views = [_path_view(m, headline, len(measures) > 1) for m in measures]
    return sorted(views, key=lambda v: not v["headline"])


def _loss_view(drill: dict[str, Any], paths: list[dict[str, Any]]) -> dict[str, Any]:
    """What the "Writes lost" / "Rows missing" line says.  ``none`` only when every path was
    measured and none lost a write: never "none" next to a path that lost writes."""
    rpo = drill.get("rpo") if isinstance(drill.get("rpo"), dict) else {}
    ledger = drill.get("ledger") if isinstance(drill.get("ledger"), dict) else {}
    if paths:
        lost = [p for p in paths if (p["lost_writes"] or 0) > 0]
        if lost:
            # Per path, never summed: one write lost on two paths is one write.
            return {"label": "Writes lost", "status": "lost", "count": max(p["lost_writes"] for p in lost),
                    "paths": [{"path": p["path"], "count": p["lost_writes"], "groups": p["lost_groups"],
                               "worst": p["worst"]} for p in lost]}
        measured = all(p["lost_writes"] is not None for p in paths)
        return {"label": "Writes lost", "status": "none" if measured else "not_measured", "count": 0, "paths": []}
    # A result from before per-path measures: the ledger's missing row ids.
    missing = ledger.get("missing") if isinstance(ledger.get("missing"), dict) else {}
    ids = {t: [i for i in v if _int(i) is not None] for t, v in missing.items() if isinstance(v, list)}
    count = sum(len(v) for v in ids.values())
    headline_lost = _int(rpo.get("lost_writes")) or 0
    if count:
        return {"label": "Rows missing", "status": "lost", "count": count,
                "paths": [{"path": None, "count": count, "worst": False,
                           "groups": [{"op": None, "table": t, "ids": id_ranges(v), "count": len(v)}
                                      for t, v in ids.items() if v]}]}
    if headline_lost:
        return {"label": "Writes lost", "status": "lost", "count": headline_lost,
                "paths": [{"path": rpo.get("path"), "count": headline_lost, "worst": False,
                           "groups": _by_op(rpo.get("lost"))}]}
    measured = "missing" in ledger and _int(ledger.get("recovered")) is not None
    return {"label": "Rows missing", "status": "none" if measured else "not_measured", "count": 0, "paths": []}


def _error_view(drill: dict[str, Any]) -> dict[str, Any] | None:
    error = drill.get("error") if isinstance(drill.get("error"), dict) else {}
    if not error and drill.get("verdict") != "error":
        return None
    where = error.get("where")
    return {"type": error.get("type") or "error", "message": error.get("message") or "",
            "interrupted": bool(error.get("interrupted")),
            "where": [str(w) for w in where] if isinstance(where, list) else []}


def drill_view(drill: dict[str, Any], regressions: list[Regression]) -> dict[str, Any]:
    codes = catalogue()
    targets = drill.get("targets") if isinstance(drill.get("targets"), dict) else {}
    rto = drill.get("rto") if isinstance(drill.get("rto"), dict) else {}
    rpo = drill.get("rpo") if isinstance(drill.get("rpo"), dict) else {}
    ledger = drill.get("ledger") if isinstance(drill.get("ledger"), dict) else {}
    paths = path_views(drill)
    several = len(paths) > 1
    headline = paths[0] if paths else None
    rto_total = _num(rto.get("total_s"))
    rto_target = _num(targets.get("rto_s"))
    phases = rto.get("phases_s") if isinstance(rto.get("phases_s"), dict) else {}
    rto_measure = Measure("RTO", rto_total, rto_target, phases=_bar_phases(phases, rto_target, rto_total))
    rpo_seconds = _num(rpo.get("seconds"))
    lost_writes = _int(rpo.get("lost_writes"))
    if lost_writes is None:
        rpo_note = "not measured"
    else:
        rpo_note = (f"{lost_writes} {'acknowledged' if paths else 'committed'} write(s) lost"
                    + (f" on path {rpo.get('path')}" + (" (worst path)" if several else "") if paths else ""))
        if rpo_seconds is None and lost_writes:
            rpo_note += "; the RPO cannot be computed: the commit time of the writes around the loss is unknown"
    rpo_measure = Measure("RPO", rpo_seconds, _num(targets.get("rpo_s")), note=rpo_note)
    missing = ledger.get("missing") if isinstance(ledger.get("missing"), dict) else {}
    missing_ids = {(str(t), i) for t, ids in missing.items() if isinstance(ids, list) for i in ids
                   if _int(i) is not None}
    missing_rows = [e for e in ledger.get("entries") or []
                    if isinstance(e, dict) and (str(e.get("table")), e.get("row_id")) in missing_ids]
    findings = sorted([f for f in drill.get("findings") or [] if isinstance(f, dict)],
                      key=lambda f: (SEVERITY_ORDER.get(str(f.get("severity")), 9), str(f.get("code"))))
    scenario = drill.get("scenario") if isinstance(drill.get("scenario"), dict) else {}
    scenario_expect = scenario.get("expect") if isinstance(scenario.get("expect"), dict) else {}
    expected_codes = set(scenario_expect.get("findings") or [])
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
                 for d in drill.get("detectors") or [] if isinstance(d, dict)]
    unverified = [str(d.get("name")) for d in detectors if d.get("status") == "could_not_verify"]
    timeline: Timeline | None = build_timeline(drill)
    failed_step = next((s for s in drill.get("steps") or [] if isinstance(s, dict) and str(s.get("status")) != "ok"),
                       None)
    audit = drill.get("audit")
    rto_share = (100.0 * rto_total / rto_target) if rto_total is not None and rto_target else None
    return {
        "name": drill.get("drill"),
        "anchor": "drill-" + "".join(c if c.isalnum() else "-" for c in str(drill.get("drill"))),
        "verdict": drill.get("verdict"),
        "verdict_label": verdict_label(drill.get("verdict")),
        "reasons": drill.get("verdict_reasons") or [],
        "error": _error_view(drill),
        "scenario": scenario,
        "expect": scenario_expect,
        "expect_text": pretty(scenario_expect),
        "workload_text": pretty(scenario.get("workload") or {}),
        "backend": drill.get("backend") or {},
        "started_at": drill.get("started_at"),
        "finished_at": drill.get("finished_at"),
        "disaster_declared_at": drill.get("disaster_declared_at"),
        "source": drill.get("source") or {},
        "backups": [b for b in drill.get("backups") or [] if isinstance(b, dict)],
        "faults": [{**f, "evidence_text": pretty(f.get("evidence") or {})} for f in drill.get("faults") or []
                   if isinstance(f, dict)],
        "recovery": drill.get("recovery") or {},
        "timeline": timeline,
        "rto": rto_measure,
        "rto_path": rto.get("path"),
        "rto_kind": rto.get("kind"),
        "rto_excluded": _rto_view(rto)["excluded"],
        "rto_target_pct": _target_pct(rto_target, rto_total),
        "rto_target_share": rto_share,
        "rpo": rpo_measure,
        "rpo_detail": rpo,
        "rpo_basis_label": BASIS_LABELS.get(str(rpo.get("rpo_basis")), str(rpo.get("rpo_basis")))
        if rpo.get("rpo_basis") else None,
        "rpo_lower_bound": bool(rpo.get("rpo_lower_bound")),
        "paths": paths,
        "several_paths": several,
        "headline": headline,
        "present": headline["present"] if headline else _int(ledger.get("recovered")),
        "expected": headline["expected"] if headline else _int(ledger.get("committed")),
        "lost_writes": headline["lost_writes"] if headline else lost_writes,
        "loss": _loss_view(drill, paths),
        "ledger": ledger,
        "has_ledger": bool(ledger) or bool(paths),
        "missing_rows": missing_rows,
        "findings": finding_views,
        "detectors": detectors,
        "unverified": unverified,
        "steps": [s for s in drill.get("steps") or [] if isinstance(s, dict)],
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
            "findings": [f"{str(f.get('severity') or '').upper()} {f.get('code')}: {f.get('message')}"
                         for f in report.get("findings") or [] if isinstance(f, dict)],
        })
    return sides


# -- history chart --------------------------------------------------------------------

CHART_W, CHART_H = 900, 220
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 60, 170, 16, 36


def _series_keys(runs: list[dict[str, Any]], name: str, metric: str, by_kind: bool) -> list[str | None]:
    """The series of one drill: one per path kind (``by_kind``), else one."""
    if not by_kind:
        return [None]
    kinds: set[str] = set()
    legacy = False
    for entry in runs:
        drill = (entry.get("drills") or {}).get(name)
        if not isinstance(drill, dict):
            continue
        paths = drill.get("paths")
        if isinstance(paths, dict) and paths:
            kinds |= {str(p["kind"]) for p in paths.values() if isinstance(p, dict) and p.get("kind")}
        elif _num(drill.get(metric)) is not None:
            legacy = True
    keys: list[str | None] = list(sorted(kinds))
    # A figure from before per-path history has no kind: it joins the drill's only kind, or
    # stays a series of its own when the drill has several (never mixed into one of them).
    if not keys or (legacy and len(keys) > 1):
        keys.append(None)
    return keys


def _series_value(drill: dict[str, Any], metric: str, kind: str | None,
                  keys: list[str | None]) -> tuple[bool, float | None]:
    """(whether this series has a point or a gap in this run, the value) for one drill entry."""
    paths = drill.get("paths")
    if isinstance(paths, dict) and paths:
        if kind is not None:
            values = [_num(p.get(metric)) for p in paths.values() if isinstance(p, dict) and p.get("kind") == kind]
            known = [v for v in values if v is not None]
            return True, (max(known) if known else None)  # several paths of one kind: the worst
        if keys == [None]:  # one series for the drill (RPO chart, or no kind recorded)
            return True, _num(drill.get(metric))
        return False, None  # the "kind not recorded" series of a drill that now records paths
    # A line without paths (older history, or nothing measured): its one figure.
    if kind is None or None not in keys:
        return True, _num(drill.get(metric))
    return False, None


def history_chart(runs: list[dict[str, Any]], metric: str, target: float | None, current_run: str,
                  by_kind: bool = False) -> dict[str, Any]:
    """One SVG line chart: ``metric`` (``rto_s`` / ``rpo_s``) per scenario over ``runs``.

    ``by_kind``: one series per drill and recovery-path kind (the RTO of a failover and that
    of a restore from the archive are different quantities and never share a line)."""
    names = sorted({n for e in runs for n in (e.get("drills") or {})})
    keyed = [(n, k) for n in names for k in _series_keys(runs, n, metric, by_kind)]
    collected: dict[tuple[str, str | None], list[tuple[int, dict[str, Any], dict[str, Any], float | None]]] = {}
    for name, kind in keyed:
        keys = _series_keys(runs, name, metric, by_kind)
        rows = []
        for i, entry in enumerate(runs):
            drill = (entry.get("drills") or {}).get(name)
            if not isinstance(drill, dict):
                continue
            shown, value = _series_value(drill, metric, kind, keys)
            if shown:
                rows.append((i, entry, drill, value))
        collected[(name, kind)] = rows
    known = [v for rows in collected.values() for (_, _, _, v) in rows if v is not None]
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
    for index, (name, kind) in enumerate(keyed):
        points, gaps = [], []
        for i, entry, drill, value in collected[(name, kind)]:
            if value is None:  # could not verify / not run: show the hole, do not hide it
                gaps.append({"x": x_of(i), "y": y_of(0), "run_id": entry.get("run_id"),
                             "verdict_label": verdict_label(drill.get("verdict"))})
                continue
            points.append({"x": x_of(i), "y": y_of(value), "value": value, "run_id": entry.get("run_id"),
                           "verdict": drill.get("verdict"), "verdict_label": verdict_label(drill.get("verdict")),
                           "current": entry.get("run_id") == current_run})
        label = name if not by_kind else (f"{name} · {kind}" if kind else
                                          (f"{name} · kind not recorded" if len([k for n, k in keyed if n == name]) > 1
                                           else name))
        series.append({"name": label, "drill": name, "kind": kind, "index": index % 6, "points": points,
                       "gaps": gaps, "polyline": " ".join(f"{p['x']},{p['y']}" for p in points)})
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
