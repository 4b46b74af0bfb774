"""Report view, one drill's recovery paths: per path its RTO, RPO and ledger counts, the lost
and in-doubt writes, and the "Writes lost" line that sums them up.
"""

from __future__ import annotations

from typing import Any

from pgdrill.reports.timeline import id_ranges
from pgdrill.reports.view import as_int, as_number

KIND_LABELS = {"archive": "restore from the archive", "failover": "failover to a replica",
               "crash": "crash restart"}
BASIS_LABELS = {"commit_timestamp": "from commit timestamps",
                "estimated_from_ack": "estimated from acknowledgements",
                "unknown": "basis unknown"}
#: Lost or in-doubt writes listed per path; the rest is counted ("and N more").
WRITES_SHOWN = 50


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
        if isinstance(write, dict) and as_int(write.get("row_id")) is not None:
            groups.setdefault((str(write.get("op") or "insert"), str(write.get("table"))), []).append(write["row_id"])
    return [{"op": op, "table": table, "ids": id_ranges(ids), "count": len(ids)}
            for (op, table), ids in groups.items()]


def rto_view(rto: Any) -> dict[str, Any]:
    rto = rto if isinstance(rto, dict) else {}
    phases = rto.get("phases_s") if isinstance(rto.get("phases_s"), dict) else {}
    excluded = rto.get("excluded_s") if isinstance(rto.get("excluded_s"), dict) else {}
    return {"total": as_number(rto.get("total_s")), "wall": as_number(rto.get("wall_s")),
            "phases": [{"name": k, "seconds": as_number(v)} for k, v in phases.items()],
            "excluded": [{"name": k, "seconds": as_number(v)} for k, v in excluded.items()],
            "excluded_total": sum(as_number(v) or 0.0 for v in excluded.values())}


def _path_view(measure: dict[str, Any], headline: str | None, several: bool) -> dict[str, Any]:
    lost = measure.get("lost") if isinstance(measure.get("lost"), list) else []
    lost_writes = as_int(measure.get("lost_writes"))
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
        "expected": as_int(measure.get("expected_writes")),
        "present": as_int(measure.get("present_writes")),
        "lost_writes": lost_writes,
        "rows_expected": as_int(measure.get("rows_expected")),
        "rows_present": as_int(measure.get("rows_present")),
        "rpo": as_number(measure.get("rpo_seconds")),
        "rpo_basis": basis,
        "rpo_basis_label": BASIS_LABELS.get(str(basis), str(basis)) if basis else "n/a",
        "rpo_lower_bound": bool(measure.get("rpo_lower_bound")),
        "rto": rto_view(measure.get("rto")),
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


def loss_view(drill: dict[str, Any], paths: list[dict[str, Any]]) -> dict[str, Any]:
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
    ids = {t: [i for i in v if as_int(i) is not None] for t, v in missing.items() if isinstance(v, list)}
    count = sum(len(v) for v in ids.values())
    headline_lost = as_int(rpo.get("lost_writes")) or 0
    if count:
        return {"label": "Rows missing", "status": "lost", "count": count,
                "paths": [{"path": None, "count": count, "worst": False,
                           "groups": [{"op": None, "table": t, "ids": id_ranges(v), "count": len(v)}
                                      for t, v in ids.items() if v]}]}
    if headline_lost:
        return {"label": "Writes lost", "status": "lost", "count": headline_lost,
                "paths": [{"path": rpo.get("path"), "count": headline_lost, "worst": False,
                           "groups": _by_op(rpo.get("lost"))}]}
    measured = "missing" in ledger and as_int(ledger.get("recovered")) is not None
    return {"label": "Rows missing", "status": "none" if measured else "not_measured", "count": 0, "paths": []}
