"""What every drill shares: its context, its result and step recorder, the disaster, and the one
error guard that records whatever stops a drill (docs/measures.md, "Verdicts")."""

from __future__ import annotations

import getpass
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pgdrill import __version__
from pgdrill.backends.base import Backend
from pgdrill.config import Config
from pgdrill.drill.measures import PathKind, RtoClock
from pgdrill.drill.spec import Scenario
from pgdrill.errors import CouldNotVerify, DrillFailed, PgdrillError
from pgdrill.results import DrillResult, Verdict
from pgdrill.workload.ledger import Ledger


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class DrillContext:
    scenario: Scenario
    config: Config
    backend: Backend
    state_dir: Path
    """Where the drill keeps its own state (ledger, results): outside the database under test."""
    fixtures_dir: Path
    keep: bool = False
    progress: Callable[[str], None] | None = None


class Steps:
    """Records each step's duration in ``result.steps`` and prints progress lines."""

    def __init__(self, result: DrillResult, progress: Callable[[str], None] | None = None,
                 name: str | None = None):
        self.result = result
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.name = name or result.drill

    @contextmanager
    def __call__(self, title: str) -> Iterator[None]:
        self.progress(f"[pgdrill {self.name}] {title} ...")
        started = time.monotonic()
        status = "ok"
        try:
            yield
        except BaseException as exc:
            status = f"error: {type(exc).__name__}"
            raise
        finally:
            seconds = time.monotonic() - started
            self.result.steps.append({"step": title, "seconds": round(seconds, 3), "status": status})
            self.progress(f"[pgdrill {self.name}] {title}: {status} ({seconds:.1f}s)")


def drill_result(ctx: DrillContext) -> tuple[DrillResult, Steps]:
    """A fresh result for ``ctx.scenario`` and the step recorder that fills its ``steps``."""
    scenario, config, backend = ctx.scenario, ctx.config, ctx.backend
    result = DrillResult(
        drill=scenario.name,
        scenario=scenario.to_dict(),
        backend={"name": backend.name, "pgdrill": __version__, "user": getpass.getuser(),
                 "host": socket.gethostname(), "versions": backend.versions()},
        started_at=now_iso(),
        targets={"rpo_s": config.targets.rpo_seconds, "rto_s": config.targets.rto_seconds},
    )
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    return result, Steps(result, ctx.progress, scenario.name)


@dataclass
class Disaster:
    """The moment pgdrill injects the fault that takes the source away (docs/measures.md).

    RTO is counted from here, and every recovery owes the writes acknowledged before it
    (``bound_seq``, by the client's sequence: no clocks are compared)."""

    clock: RtoClock
    bound_seq: int

    @classmethod
    def declare(cls, ledger: Ledger, kind: PathKind = "archive") -> Disaster:
        return cls(RtoClock(kind, time.monotonic(), now_iso()), ledger.acked_through())

    def source_gone(self) -> None:
        """The fault's own call returned: stopping a process and waiting for it is harness time."""
        self.clock.exclude("stop_source", time.monotonic())


@contextmanager
def guard(result: DrillResult) -> Iterator[None]:
    """The one error guard of every drill: whatever stops it is recorded in ``result``.

    ``DrillFailed`` is a verified failure; any other ``PgdrillError`` means pgdrill could not
    find out; anything else (a bug, a library error) and an interrupt are an ERROR, recorded
    before an interrupt is re-raised so the run still reports the drill (docs/results.md).
    """
    try:
        yield
    except DrillFailed as exc:
        result.verdict, result.verdict_reasons = Verdict.FAILED, [str(exc)]
    except PgdrillError as exc:
        result.verdict, result.verdict_reasons = could_not_verify(exc)
    except Exception as exc:
        _record_error(result, exc)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it unwind
        _record_error(result, exc)
        result.finished_at = now_iso()
        exc.pgdrill_result = result  # type: ignore[attr-defined]
        raise


def _record_error(result: DrillResult, exc: BaseException) -> None:
    import traceback

    interrupted = isinstance(exc, KeyboardInterrupt)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    result.verdict = Verdict.ERROR
    result.error = {"type": type(exc).__name__, "message": message or ("interrupted" if interrupted else ""),
                    "interrupted": interrupted,
                    "where": [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in where]}
    step = result.steps[-1]["step"] if result.steps else "before the first step"
    result.verdict_reasons = [("interrupted" if interrupted else f"{type(exc).__name__}: {message}")
                              + f" (last step: {step}); nothing about this drill is known"]


def error_result(drill: str, backend: str, exc: BaseException | None, text: str) -> DrillResult:
    interrupted = isinstance(exc, KeyboardInterrupt)
    message = (str(exc).strip().splitlines() or [""])[0] if exc is not None else ""
    if not message:
        message = text.strip().splitlines()[-1] if text.strip() else ""
    return DrillResult(drill=drill, scenario={"name": drill}, backend={"name": backend}, started_at=now_iso(),
                       finished_at=now_iso(), verdict=Verdict.ERROR,
                       verdict_reasons=[("interrupted" if interrupted else "the drill raised")
                                        + f": {message[:300]}; nothing about this drill is known"],
                       error={"type": type(exc).__name__ if exc else "error", "message": message[:300],
                              "interrupted": interrupted, "where": []})


def could_not_verify(exc: PgdrillError) -> tuple[Verdict, list[str]]:
    """The verdict of a drill that an error stopped before it could judge anything."""
    reason = str(exc) if isinstance(exc, CouldNotVerify) else f"{type(exc).__name__}: {exc}"
    return Verdict.COULD_NOT_VERIFY, [reason]
