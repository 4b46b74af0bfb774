"""``reports/history.jsonl``: one line per run, the trend of RTO and RPO per scenario.

The file is append-only and never rewritten: a corrupted line (a crash mid-write, a
hand edit, a merge) is skipped with a warning when read, and stays in the file byte for
byte so nothing is lost and it can be repaired by hand.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pgdrill.reports")

HISTORY_VERSION = 1
DEFAULT_RTO_GROWTH = 0.20


class HistoryWarning(UserWarning):
    """A history.jsonl line could not be read and was skipped."""


@dataclass(frozen=True)
class History:
    entries: list[dict[str, Any]]
    """Valid lines, the last one per run id (re-renders of a changed results.json win)."""
    warnings: list[str] = field(default_factory=list)


def headline_measure(drill: dict[str, Any]) -> dict[str, Any] | None:
    """The measure of the drill's headline (worst) path, or None (older results have no measures)."""
    measures = [m for m in drill.get("measures") or [] if isinstance(m, dict)]
    if not measures:
        return None
    headline = (drill.get("rpo") or {}).get("path") or (drill.get("rto") or {}).get("path")
    return next((m for m in measures if m.get("path") == headline), measures[0])


def _missing_rows(drill: dict[str, Any], headline: dict[str, Any] | None) -> int | None:
    """Rows owed by the headline path that are not there: rows_expected − rows_present.

    Not ``committed − recovered``: a point-in-time recovery owes only the rows up to its target,
    so that difference reported missing rows when nothing was missing."""
    if headline is not None:
        expected, present = headline.get("rows_expected"), headline.get("rows_present")
        return expected - present if isinstance(expected, int) and isinstance(present, int) else None
    ledger = drill.get("ledger") or {}
    if isinstance(ledger.get("missing"), dict):  # results before per-path measures: the missing row ids
        return sum(len(ids) for ids in ledger["missing"].values() if isinstance(ids, list))
    expected, recovered = ledger.get("expected"), ledger.get("recovered")
    return expected - recovered if isinstance(expected, int) and isinstance(recovered, int) else None


def _paths(drill: dict[str, Any]) -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for measure in drill.get("measures") or []:
        if not isinstance(measure, dict) or not measure.get("path"):
            continue
        paths[str(measure["path"])] = {"kind": measure.get("kind"),
                                       "rto_s": (measure.get("rto") or {}).get("total_s"),
                                       "rpo_s": measure.get("rpo_seconds"),
                                       "lost_writes": measure.get("lost_writes")}
    return paths


def history_entry(run: dict[str, Any], results_sha256: str) -> dict[str, Any]:
    drills: dict[str, dict[str, Any]] = {}
    for drill in run.get("drills") or []:
        rpo = drill.get("rpo") or {}
        rto = drill.get("rto") or {}
        headline = headline_measure(drill)
        drills[str(drill.get("drill"))] = {
            "verdict": drill.get("verdict"),
            "path": rpo.get("path") or rto.get("path") or (headline or {}).get("path"),
            "kind": rto.get("kind") or rpo.get("kind") or (headline or {}).get("kind"),
            "rto_s": rto.get("total_s"),
            "rpo_s": rpo.get("seconds"),
            "lost_writes": rpo.get("lost_writes"),
            "expected_writes": rpo.get("expected_writes"),
            "missing_rows": _missing_rows(drill, headline),
            "paths": _paths(drill),
            "finding_codes": sorted({f.get("code") for f in drill.get("findings") or [] if f.get("code")}),
        }
    for skipped in run.get("not_run") or []:
        drills.setdefault(str(skipped.get("drill")), {"verdict": "not_run", "rto_s": None, "rpo_s": None})
    return {
        "history_version": HISTORY_VERSION,
        "run_id": run.get("run_id"),
        "time": run.get("finished_at") or run.get("started_at"),
        "started_at": run.get("started_at"),
        "backend": run.get("backend"),
        "verdict": run.get("verdict"),
        "results_sha256": results_sha256,
        "drills": drills,
    }


def read_history(path: Path) -> History:
    if not path.exists():
        return History([])
    by_run: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    # errors="replace": a line of binary garbage must not hide the good lines after it.
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not entry.get("run_id") or not isinstance(entry.get("drills"), dict):
                    raise ValueError("not a history entry (run_id and drills required)")
            except ValueError as exc:
                problems.append(f"{path.name} line {number} skipped (corrupted: {str(exc)[:120]}); "
                                "left in the file untouched")
                continue
            by_run.pop(str(entry["run_id"]), None)  # keep file order of the latest version
            by_run[str(entry["run_id"])] = entry
    for problem in problems:
        warnings.warn(problem, HistoryWarning, stacklevel=2)
        log.warning(problem)
    return History(list(by_run.values()), problems)


def append_history(path: Path, entry: dict[str, Any]) -> bool:
    """Append ``entry`` unless this exact result (run id and sha256) is already recorded.

    Re-rendering a run with ``pgdrill report`` is therefore idempotent. Returns whether a
    line was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        # Two pytest sessions may share a reports dir: serialise check-and-append.
        fcntl.flock(fd, fcntl.LOCK_EX)
        with os.fdopen(os.dup(fd), "rb") as reader:
            content = reader.read()
        for existing in content.splitlines():
            try:
                old = json.loads(existing)
            except ValueError:
                continue
            if isinstance(old, dict) and old.get("run_id") == entry["run_id"] \
                    and old.get("results_sha256") == entry["results_sha256"]:
                return False
        # A torn last line (no newline) would swallow ours into one unreadable line.
        prefix = b"\n" if content and not content.endswith(b"\n") else b""
        os.write(fd, prefix + line.encode("utf-8"))
        os.fsync(fd)
        return True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class Regression:
    drill: str
    rto_s: float
    previous_rto_s: float
    previous_run: str
    growth: float
    threshold: float
    path: str | None = None
    """The recovery path compared (None: a result or history line from before per-path measures)."""
    kind: str | None = None
    """``archive``, ``failover`` or ``crash``: only RTOs of the same kind are compared."""

    @property
    def message(self) -> str:
        what = self.drill
        if self.path is not None:
            what += f" path {self.path}" + (f" ({self.kind})" if self.kind else "")
        return (f"RTO of {what} grew {self.growth:.0%} against the last good run {self.previous_run}: "
                f"{self.previous_rto_s:.3f} s → {self.rto_s:.3f} s (threshold {self.threshold:.0%})")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def runs_up_to(history: History, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Runs of the same backend, oldest first, up to and including ``run``.

    Re-rendering an old run shows the history as it stood then.  Other backends are left
    out: RTO on kind and on the local backend are not comparable."""
    this_time = str(run.get("finished_at") or run.get("started_at") or "")
    same = [e for e in history.entries if e.get("backend") == run.get("backend")]
    same = [e for e in same if e.get("run_id") == run.get("run_id") or str(e.get("time") or "") <= this_time]
    return sorted(same, key=lambda e: (str(e.get("time") or ""), str(e.get("run_id"))))


Series = tuple[str | None, str | None]
"""An RTO series of one drill: (path, kind); (None, None) for a figure recorded before paths."""


def rto_series(entry: dict[str, Any]) -> dict[Series, float]:
    """The RTOs of one history drill entry, by (path, kind)."""
    paths = entry.get("paths")
    if isinstance(paths, dict) and paths:
        return {(str(name), p.get("kind")): value for name, p in paths.items()
                if isinstance(p, dict) and (value := _number(p.get("rto_s"))) is not None}
    legacy = _number(entry.get("rto_s"))
    if legacy is None:
        return {}
    if isinstance(paths, dict) and entry.get("kind"):  # new line, but no path measured: the headline's
        return {(entry.get("path"), entry.get("kind")): legacy}
    return {(None, None): legacy}


def _previous(past: dict[Series, float], series: Series, current: dict[Series, float]) -> float | None:
    """The past RTO comparable with ``series``: same path and kind.  A line from before paths
    (one figure, kind unknown) compares only with a drill that has one path, and the reverse."""
    if series in past:
        return past[series]
    if (None, None) in past and len(current) == 1:
        return past[(None, None)]
    if series == (None, None) and len(past) == 1:
        return next(iter(past.values()))
    return None


def rto_regressions(runs: list[dict[str, Any]], run: dict[str, Any],
                    threshold: float = DEFAULT_RTO_GROWTH) -> list[Regression]:
    """RTO growth above ``threshold`` against the last earlier run in which the drill passed,
    per drill and per recovery path: a failover RTO is never compared with an archive one."""
    found: list[Regression] = []
    earlier = [e for e in runs if e.get("run_id") != run.get("run_id")]
    for drill in run.get("drills") or []:
        name = str(drill.get("drill"))
        current = rto_series(history_entry({"drills": [drill]}, "")["drills"][name])
        for series, rto in current.items():
            for entry in reversed(earlier):
                past = (entry.get("drills") or {}).get(name) or {}
                if past.get("verdict") != "passed":
                    continue
                previous = _previous(rto_series(past), series, current)
                if previous:
                    growth = (rto - previous) / previous
                    if growth > threshold:
                        found.append(Regression(name, rto, previous, str(entry.get("run_id")), growth, threshold,
                                                series[0], series[1]))
                    break
    return found
