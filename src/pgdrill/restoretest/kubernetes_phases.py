"""The RTO phases and the failure reason of a restore-test recovery on Kubernetes, read from the
CNPG full-recovery Job's pod logs (pure: tested on recorded log lines).

With CNPG 1.30 + plugin v0.14 the ``<cluster>-1-full-recovery`` Job restores the base backup,
starts PostgreSQL, replays WAL through the plugin and promotes; the instance pod starts after it
(cnpg-notes §3).  Its log lines are CNPG's JSON (``ts`` RFC 3339, PostgreSQL records under
``record``), so the phases are taken from their timestamps.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pgdrill.backends.kubernetes import status as st

CONSISTENT = "consistent recovery state reached"
REDO_DONE = "redo done at"


def _stamp(entry: dict[str, Any]) -> float | None:
    value = entry.get("ts")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            return None
    return None


def recovery_marks(logs: dict[str, str]) -> dict[str, float]:
    """Wall-clock times of PostgreSQL's start, consistency and "redo done" in the Job pod whose
    recovery finished (the last one with a "redo done" line); empty when no pod has one."""
    best: dict[str, float] = {}
    for text in logs.values():
        marks: dict[str, float] = {}
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or entry.get("logger") != "postgres":
                continue
            when = _stamp(entry)
            message = str((entry.get("record") or {}).get("message", ""))
            if when is None:
                continue
            marks.setdefault("postgres_start", when)
            if CONSISTENT in message:
                marks.setdefault("consistent", when)
            if message.startswith(REDO_DONE):
                marks.setdefault("redo_done", when)
        if "redo_done" in marks and marks["redo_done"] >= best.get("redo_done", float("-inf")):
            best = marks
    return best


def split_phases(created: float, ready: float, written: float, job_done: float | None,
                 logs: dict[str, str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Contiguous phases (the local backend's names, summing to ``written - created``) from wall
    clock times: ``restore`` (Cluster created → PostgreSQL starts in the Job pod: scheduling, the
    plugin's begin-WAL check, ``barman-cloud-restore``), ``replay_to_consistency``, ``replay_to_end``
    (→ "redo done"), ``promote`` (→ Cluster Ready: end-of-recovery checkpoint, Job exit and the
    instance pod's start) and ``first_write``.  Without those log lines: ``restore`` up to the
    Job's completion and no replay phases (so no replay rate and no forecast is made up)."""
    marks = recovery_marks(logs)
    end = max(ready - created, 0.0)

    def offset(when: float, floor: float) -> float:
        return min(max(when - created, floor), end)

    details: dict[str, Any] = {"job_done_s": round(job_done - created, 3) if job_done else None}
    if "postgres_start" in marks and "redo_done" in marks:
        start = offset(marks["postgres_start"], 0.0)
        consistent = offset(marks.get("consistent", marks["postgres_start"]), start)
        redo = offset(marks["redo_done"], consistent)
        phases = {"restore": start, "replay_to_consistency": consistent - start, "replay_to_end": redo - consistent,
                  "promote": end - redo}
        details["basis"] = ("full-recovery Job pod log timestamps (the node's clock), clamped between pgdrill's own "
                            "times of Cluster creation and Ready")
        if job_done:
            details["instance_start_s"] = round(max(ready - job_done, 0.0), 3)
    else:
        restore = offset(job_done, 0.0) if job_done else end
        phases = {"restore": restore, "promote": end - restore}
        details["basis"] = ("job level only: no PostgreSQL start/redo-done lines in the recovery Job's log, so "
                            "'restore' includes WAL replay and no replay rate is derived")
    phases["first_write"] = max(written - ready, 0.0)
    return phases, details


_INFRASTRUCTURE = re.compile(r"AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|"
                             r"Could not connect to the endpoint|certificate verify failed|ImagePullBackOff|"
                             r"ErrImagePull|unknown plugin", re.IGNORECASE)


def failed_step(verdict: st.WaitState, job_seen: bool) -> str:
    """Whose problem a failed recovery is: ``timeout`` / ``infrastructure`` (could not verify,
    no fallback) or ``preflight`` / ``replay`` (the backup's: fall back to the previous one)."""
    if verdict.state == "timeout":
        return "timeout"
    text = " ".join((verdict.summary, *verdict.evidence))
    if not job_seen or _INFRASTRUCTURE.search(text):
        return "infrastructure"
    if "first needed WAL" in text:
        return "preflight"
    return "replay"
