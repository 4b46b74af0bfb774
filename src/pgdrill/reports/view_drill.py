"""Report view, one drill: verdict, RTO/RPO measures against their targets (bars drawn to
scale), findings, detectors, steps and the archive audit around the drill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgdrill.findings import catalogue
from pgdrill.reports.history import Regression
from pgdrill.reports.timeline import Timeline, build_timeline
from pgdrill.reports.view import as_int, as_number, pretty, verdict_label
from pgdrill.reports.view_paths import BASIS_LABELS, loss_view, path_views, rto_view

DETECTOR_LABELS = {"clean": "clean", "findings": "findings", "could_not_verify": "COULD NOT VERIFY",
                   "not_applicable": "not applicable"}
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


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
        value = as_number(seconds) or 0.0
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
    rto_total = as_number(rto.get("total_s"))
    rto_target = as_number(targets.get("rto_s"))
    phases = rto.get("phases_s") if isinstance(rto.get("phases_s"), dict) else {}
    rto_measure = Measure("RTO", rto_total, rto_target, phases=_bar_phases(phases, rto_target, rto_total))
    rpo_seconds = as_number(rpo.get("seconds"))
    lost_writes = as_int(rpo.get("lost_writes"))
    if lost_writes is None:
        rpo_note = "not measured"
    else:
        rpo_note = (f"{lost_writes} {'acknowledged' if paths else 'committed'} write(s) lost"
                    + (f" on path {rpo.get('path')}" + (" (worst path)" if several else "") if paths else ""))
        if rpo_seconds is None and lost_writes:
            rpo_note += "; the RPO cannot be computed: the commit time of the writes around the loss is unknown"
    rpo_measure = Measure("RPO", rpo_seconds, as_number(targets.get("rpo_s")), note=rpo_note)
    missing = ledger.get("missing") if isinstance(ledger.get("missing"), dict) else {}
    missing_ids = {(str(t), i) for t, ids in missing.items() if isinstance(ids, list) for i in ids
                   if as_int(i) is not None}
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
        "rto_excluded": rto_view(rto)["excluded"],
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
        "present": headline["present"] if headline else as_int(ledger.get("recovered")),
        "expected": headline["expected"] if headline else as_int(ledger.get("committed")),
        "lost_writes": headline["lost_writes"] if headline else lost_writes,
        "loss": loss_view(drill, paths),
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
