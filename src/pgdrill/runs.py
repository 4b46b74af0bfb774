"""One run of drills (a pytest session or a ``pgdrill run``): its id, its folder, its results.

``reports/<run id>/results.json`` holds every drill result of the run; renderers (HTML,
JUnit, history) read that file, so a report can be rebuilt later with ``pgdrill report``.
"""

from __future__ import annotations

import json
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgdrill.results import SCHEMA_VERSION, DrillResult, Verdict


def new_run_id() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass
class Run:
    run_id: str
    reports_dir: Path
    backend: str
    results: list[DrillResult] = field(default_factory=list)
    not_run: list[dict[str, str]] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def folder(self) -> Path:
        return self.reports_dir / self.run_id

    def state_dir(self, drill: str) -> Path:
        """The drill's own state (ledger), outside the database under test."""
        return self.folder / "state" / drill

    def add(self, result: DrillResult) -> Path | None:
        """Record a drill's result; a NOT_RUN result is recorded once, as skipped."""
        if result.verdict == Verdict.NOT_RUN:
            self.skipped(result.drill, "; ".join(result.verdict_reasons) or "not run")
            return None
        if any(r is result for r in self.results):
            return self.folder / "drills" / f"{result.drill}.json"
        self.results.append(result)
        return result.write_json(self.folder / "drills" / f"{result.drill}.json")

    def has_result(self, drill: str) -> bool:
        return any(r.drill == drill for r in self.results) or any(s["drill"] == drill for s in self.not_run)

    def skipped(self, drill: str, reason: str) -> None:
        if not any(s["drill"] == drill for s in self.not_run):
            self.not_run.append({"drill": drill, "verdict": "not_run", "reason": reason})

    def overall(self) -> str:
        """failed > error > could_not_verify > passed; not_run only when nothing ran at all."""
        verdicts = [r.verdict.value for r in self.results]
        for verdict in ("failed", "error", "could_not_verify"):
            if verdict in verdicts:
                return verdict
        if not verdicts:
            return "not_run"
        return "passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "backend": self.backend,
            "started_at": self.started_at,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "verdict": self.overall(),
            "drills": [r.to_dict() for r in self.results],
            "not_run": self.not_run,
        }

    def write(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "results.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so every ``finally`` releases processes and ports."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous: Callable[..., Any] | int | None = None
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

