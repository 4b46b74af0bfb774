"""One run of drills (a pytest session or a ``pgdrill run``): its id, its folder, its results.

``reports/<run id>/results.json`` holds every drill result of the run; renderers (HTML,
JUnit, history) read that file, so a report can be rebuilt later with ``pgdrill report``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgdrill.errors import UsageError
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

    _keys: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Drill name -> the key (``state/<key>``, ``drills/<key>.json``) of its latest drill."""

    @property
    def folder(self) -> Path:
        return self.reports_dir / self.run_id

    def state_dir(self, drill: str) -> Path:
        """The drill's own state (ledger), outside the database under test.

        Stable while the drill runs; once a drill of that name has a result, the next one gets
        its own key (``<name>-2``...), so two drills never share a ledger or a result file."""
        key = self._keys.get(drill)
        if key is None or self._recorded(key):
            key = self._keys[drill] = self._fresh(drill)
        return self.folder / "state" / key

    def _recorded(self, key: str) -> bool:
        return any(r.drill == key for r in self.results)

    def _fresh(self, drill: str) -> str:
        taken = {*self._keys.values(), *(r.drill for r in self.results)}
        if drill not in taken:
            return drill
        return next(f"{drill}-{n}" for n in range(2, len(taken) + 3) if f"{drill}-{n}" not in taken)

    def add(self, result: DrillResult) -> Path | None:
        """Record a drill's result; a NOT_RUN result is recorded once, as skipped.

        A second drill of a name already recorded is recorded under its own key (its state
        dir's), never over the first one's ``drills/<name>.json``."""
        if result.verdict == Verdict.NOT_RUN:
            self.skipped(result.drill, "; ".join(result.verdict_reasons) or "not run")
            return None
        if any(r is result for r in self.results):
            return self.folder / "drills" / f"{result.drill}.json"
        key = self._keys.get(result.drill, result.drill)
        if self._recorded(key):
            key = self._fresh(result.drill)
        self._keys[result.drill] = key
        result.drill = key
        self.results.append(result)
        return result.write_json(self.folder / "drills" / f"{key}.json")

    def has_result(self, drill: str) -> bool:
        """Whether the drill of that name (its latest one, see ``state_dir``) is recorded."""
        return self._recorded(self._keys.get(drill, drill)) or any(s["drill"] == drill for s in self.not_run)

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


def check_writable_dir(path: Path, fix: str) -> None:
    """Raise a one-line ``UsageError`` unless ``path`` is a directory pgdrill can write in, or
    one it can create; checked before anything starts, and creates nothing."""
    probe = path.absolute()
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        is_dir = probe.is_dir()
    except OSError as exc:
        raise UsageError(f"{path} cannot be checked ({exc.strerror or exc}): {fix}") from None
    if not is_dir:
        where = "" if probe == path.absolute() else f" ({probe} is not a directory)"
        raise UsageError(f"{path} is not a directory{where}: {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path.absolute() else f" ({probe} does not allow creating it)"
        raise UsageError(f"{path} is not writable{where}: {fix}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C, so every ``finally`` releases processes and ports."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous: dict[int, Callable[..., Any] | int | None] = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)
