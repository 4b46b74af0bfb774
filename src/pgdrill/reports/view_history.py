"""Report view, the history charts: RTO or RPO per scenario (and per recovery-path kind)
over the runs in ``history.jsonl``, as SVG geometry for ``_chart.svg.j2``.
"""

from __future__ import annotations

from typing import Any

from pgdrill.reports.view import as_number, verdict_label

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
        elif as_number(drill.get(metric)) is not None:
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
            values = [as_number(p.get(metric)) for p in paths.values() if isinstance(p, dict) and p.get("kind") == kind]
            known = [v for v in values if v is not None]
            return True, (max(known) if known else None)  # several paths of one kind: the worst
        if keys == [None]:  # one series for the drill (RPO chart, or no kind recorded)
            return True, as_number(drill.get(metric))
        return False, None  # the "kind not recorded" series of a drill that now records paths
    # A line without paths (older history, or nothing measured): its one figure.
    if kind is None or None not in keys:
        return True, as_number(drill.get(metric))
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
