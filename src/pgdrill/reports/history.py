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


def history_entry(run: dict[str, Any], results_sha256: str) -> dict[str, Any]:
    drills: dict[str, dict[str, Any]] = {}
    for drill in run.get("drills") or []:
        rpo = drill.get("rpo") or {}
        ledger = drill.get("ledger") or {}
        committed, recovered = ledger.get("committed"), ledger.get("recovered")
        drills[str(drill.get("drill"))] = {
            "verdict": drill.get("verdict"),
            "rto_s": (drill.get("rto") or {}).get("total_s"),
            "rpo_s": rpo.get("seconds"),
            "lost_writes": rpo.get("lost_writes"),
            "missing_rows": committed - recovered if isinstance(committed, int) and isinstance(recovered, int)
            else None,
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

    @property
    def message(self) -> str:
        return (f"RTO of {self.drill} grew {self.growth:.0%} against the last good run {self.previous_run}: "
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


def rto_regressions(runs: list[dict[str, Any]], run: dict[str, Any],
                    threshold: float = DEFAULT_RTO_GROWTH) -> list[Regression]:
    found: list[Regression] = []
    earlier = [e for e in runs if e.get("run_id") != run.get("run_id")]
    for drill in run.get("drills") or []:
        name = str(drill.get("drill"))
        rto = _number((drill.get("rto") or {}).get("total_s"))
        if rto is None:
            continue
        for entry in reversed(earlier):
            past = (entry.get("drills") or {}).get(name) or {}
            previous = _number(past.get("rto_s"))
            if past.get("verdict") == "passed" and previous:
                growth = (rto - previous) / previous
                if growth > threshold:
                    found.append(Regression(name, rto, previous, str(entry.get("run_id")), growth, threshold))
                break
    return found
