"""The drill runner: provision, seed, back up, write, break, recover, verify, judge.

Backend-independent: it only uses the ``Backend`` protocol, so a scenario runs unchanged on
the local backend and on Kubernetes.
"""

from __future__ import annotations

import copy
import getpass
import hashlib
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .audit_hook import audit_archive
from .backends.base import Backend, ClusterHandle, RecoveryOutcome, RecoveryTarget
from .config import Config
from .digest import DigestSet
from .errors import CouldNotVerify, DrillFailed, PgdrillError, S3Error, UsageError
from .faults import FaultContext, inject
from .findings import ARCHIVE_NOT_EMPTY, BACKUP_UNUSABLE, COULD_NOT_VERIFY, RECOVERY_FAILED, Finding
from .integrity import check_integrity, record_digests
from .judge import LOSS_CODES, judge
from .ledger import Ledger
from .measures import PathKind, PathMeasure, RtoClock, rpo_findings, rto_findings
from .results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from .scenario import Scenario
from .verify import check_archive, check_ledger, check_target
from .workload import Fixture, Workload, load_fixture

log = logging.getLogger("pgdrill.drill")

__all__ = ["LOSS_CODES", "DrillContext", "Disaster", "Steps", "drill_result", "guard", "recover_and_verify",
           "run_scenario"]


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


def run_scenario(ctx: DrillContext) -> DrillResult:
    scenario, config, backend = ctx.scenario, ctx.config, ctx.backend
    # A bare record first, so whatever stops the drill from here on is recorded in it.
    result = DrillResult(drill=scenario.name, scenario=scenario.to_dict(), backend={"name": backend.name},
                         started_at=now_iso())
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    wl = scenario.workload
    workload: Workload | None = None
    with guard(result):
        full, step = drill_result(ctx)
        result.backend, result.targets, result.started_at = full.backend, full.targets, full.started_at
        step.result = result
        ledger = Ledger(ctx.state_dir / "ledger.jsonl")
        fixture = load_fixture(wl.fixture, ctx.fixtures_dir)
        with step("provision source cluster with WAL archiving"):
            source = backend.create_source(config.source.cluster_name, wl.archive_timeout_seconds)
        result.source = {"cluster": source.name, "server_name": source.server_name,
                         "destination": backend.destination.url,
                         "wal_compression": config.archive.wal_compression,
                         "archive_timeout_s": wl.archive_timeout_seconds or config.archive.archive_timeout_seconds,
                         "segment_size": segment_size, **source.details}
        workload = Workload(backend, source, fixture, ledger)
        with step(f"seed {fixture.database} and write {wl.baseline_rows} baseline rows"):
            workload.seed()
            workload.write(wl.baseline_rows, "baseline")
        for number in range(wl.base_backups):
            if number:
                with step(f"write {wl.writes_between_backups} rows between base backups"):
                    workload.write(wl.writes_between_backups, "between_backups", switch_wal_each=wl.segment_per_write)
            with step("base backup (barman-cloud-backup)"):
                backup_id = backend.take_backup(source)
                result.backups.append({"backup_id": backup_id, "taken_at": now_iso()})
        target, target_seq = _write_after_backup(scenario, workload, ledger, step)
        if wl.steady_seconds:
            with step(f"steady load for {wl.steady_seconds:.0f}s (one row every {wl.write_interval_seconds}s)"):
                workload.steady(wl.steady_seconds, wl.write_interval_seconds)
        recovery_name = scenario.recovery.cluster_name or backend.next_recovery_name(source.name)
        fault_ctx = FaultContext(backend, source, ledger, segment_size, workload, recovery_name)
        with step("audit the archive (as pgdrill audit would)"):
            result.audit["before"] = audit_archive(backend, source)
        lost_by_fault = any(f.kind == "lose_cluster" for f in scenario.faults)
        if lost_by_fault:  # the digests must be taken while the source still exists
            with step("record content digests of the source"):
                record_digests(backend, source, fixture.database, ctx.state_dir)
        disaster: Disaster | None = None
        for spec in scenario.faults:
            with step(f"inject fault {spec.kind}"):
                if spec.kind == "lose_cluster":
                    workload.close()
                    disaster = Disaster.declare(ledger)
                result.faults.append(inject(fault_ctx, spec).to_dict())
                if spec.kind == "lose_cluster" and disaster is not None:
                    disaster.source_gone()
        with step("audit the archive (as pgdrill audit would)"):
            result.audit["after"] = audit_archive(backend, source)
        if disaster is None:
            with step("record content digests of the source"):
                record_digests(backend, source, fixture.database, ctx.state_dir)
            with step("disaster: stop the source cluster hard"):
                workload.close()
                disaster = Disaster.declare(ledger)
                backend.lose(source, destroy_data=False)
                disaster.source_gone()
        result.disaster_declared_at = disaster.clock.declared_at
        measure, _ = recover_and_verify(ctx, result, step, ledger, fixture, source, recovery_name, disaster,
                                        target, target_seq)
        result.set_measures([measure] if measure else [])
        result.verdict, result.verdict_reasons = judge(scenario.expect, result, config.targets.rto_seconds)
    if workload is not None:
        workload.close()
    result.finished_at = now_iso()
    if ctx.keep and hasattr(backend, "keep_info"):
        result.keep = backend.keep_info()  # type: ignore[attr-defined]
    return result


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


def recover_and_verify(ctx: DrillContext, result: DrillResult, step: Steps, ledger: Ledger, fixture: Fixture,
                       source: ClusterHandle, recovery_name: str, disaster: Disaster,
                       target: RecoveryTarget | None = None, target_seq: int | None = None,
                       path: str = "recovery") -> tuple[PathMeasure | None, RecoveryOutcome | None]:
    """Recover ``source``'s archive into ``recovery_name`` and run every detector and measure of
    that recovery path into ``result``; returns the path's measure (None: nothing came up) and
    the recovery (None: refused).
    The source is gone by now (``disaster``).  The caller judges with ``pgdrill.judge``."""
    backend, config = ctx.backend, ctx.config
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    # Each path has its own clock from the same disaster: a second path's RTO never holds the
    # first path's recovery (that time is harness for it).
    clock = copy.deepcopy(disaster.clock)
    with step(f"recover into {recovery_name}"):
        begun = time.monotonic()
        try:
            recovery = backend.recover(source, recovery_name, target, archive=True)
        except S3Error as exc:
            result.add_detector(_could_not_run("recovery", f"the object store failed during recovery: {exc}"))
            return None, None
        except UsageError as exc:
            _refused(result, exc, backend, recovery_name)
            return None, None
        clock.add_phases(recovery.phases, begun)
        if not recovery.promoted and recovery.failed_step == "restore" and len(result.backups) > 1:
            recovery = _fall_back(result, backend, source, recovery, target, step, clock)
    _record_recovery(result, recovery, target, path)
    if recovery.promoted:
        step.progress(f"[pgdrill {step.name}] {recovery_name}: promoted, RTO {clock.total:.1f}s")
    else:
        step.progress(f"[pgdrill {step.name}] {recovery_name}: did NOT come up ({recovery.failed_step})")
    with step("verify: ledger vs recovered writes"):
        ledger_check, measure = check_ledger(backend, recovery.cluster if recovery.promoted else None, ledger,
                                             fixture, path, clock.kind, disaster.bound_seq, target_seq,
                                             clock.declared_at)
        result.add_detector(ledger_check.outcome)
    with step("verify: archive continuity"):
        archive_check = check_archive(backend, source, recovery, ledger, segment_size, to_latest=target is None)
        result.add_detector(archive_check.outcome)
        result.archive = archive_check.summary
    owed_until = target_seq if target_seq is not None else disaster.bound_seq
    with step("verify: recovery to the last owed write's LSN"):
        result.add_detector(check_target(backend, source, ledger, owed_until, f"{recovery_name}-target-check",
                                         recovery.backup_id, segment_size, ctx.keep))
    if recovery.promoted and recovery.cluster is not None:
        with step("verify: integrity (page checksums, amcheck, content digests)"):
            digests = DigestSet.load(ctx.state_dir)
            integrity = check_integrity(backend, recovery.cluster, fixture.database, digests,
                                        compare_content=target is None and digests is not None)
            for outcome in integrity.outcomes:
                result.add_detector(outcome)
            result.integrity = integrity.report
    result.ledger = {**ledger_check.summary, "committed": len(ledger),
                     "entries": [asdict(e) for e in ledger.all_writes]}
    if measure is not None:
        measure.rto = clock.to_dict() if recovery.promoted else None
        result.add_detector(_measure("rpo", rpo_findings(measure, config.targets.rpo_seconds),
                                     f"{path}: {_seconds(measure.rpo_seconds)}, {measure.lost_writes} "
                                     "acknowledged write(s) lost"))
    result.add_detector(_rto_detector(path, measure, recovery, config.targets.rto_seconds))
    return measure, recovery


def _seconds(value: float | None) -> str:
    return "RPO unknown" if value is None else f"RPO {value:.3f}s"


def _rto_detector(path: str, measure: PathMeasure | None, recovery: RecoveryOutcome,
                  bound_seconds: float) -> DetectorOutcome:
    if not recovery.promoted:
        return DetectorOutcome("rto", DetectorStatus.NOT_APPLICABLE,
                               f"{path}: no RTO, the recovered cluster never came up (see RECOVERY_FAILED)")
    rto = measure.rto if measure is not None else None
    if not rto:
        return _could_not_run("rto", f"{path}: the recovery came up but its RTO was not measured")
    return _measure("rto", rto_findings(path, rto, bound_seconds),
                    f"{path}: {rto['total_s']:.2f}s (" + ", ".join(f"{k} {v:.2f}s" for k, v in rto["phases_s"].items())
                    + ")")


def _could_not_run(name: str, why: str) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, why, [Finding(COULD_NOT_VERIFY, why, name)])


def _write_after_backup(scenario: Scenario, workload: Workload, ledger: Ledger,
                        step: Steps) -> tuple[RecoveryTarget | None, int | None]:
    """Write the post-backup rows; for a PITR scenario, place the target after write N and
    return it with that write's sequence number."""
    wl, spec = scenario.workload, scenario.recovery
    if spec.target == "latest" or spec.after_write is None:
        with step(f"write {wl.writes_after_backup} rows after the backup"):
            workload.write(wl.writes_after_backup, "after_backup", switch_wal_each=wl.segment_per_write)
            if not wl.segment_per_write:
                workload.close_segment()
        return None, None
    with step(f"write {spec.after_write} rows, set a {spec.target} target, write "
              f"{wl.writes_after_backup - spec.after_write} more"):
        before = workload.write(spec.after_write, "after_backup", switch_wal_each=wl.segment_per_write)
        last = before[-1]
        if spec.target == "name":
            name = f"pgdrill-after-row-{last.row_id}"
            workload.restore_point(name)
            target = RecoveryTarget(name=name)
        elif spec.target == "time":
            # Server clock just after the commit; the next write commits later, and recovery
            # stops at the first commit after the target time.
            time.sleep(0.05)
            target = RecoveryTarget(time=last.committed_at)
        else:
            target = RecoveryTarget(lsn=last.position)
        workload.write(wl.writes_after_backup - spec.after_write, "after_backup",
                       switch_wal_each=wl.segment_per_write)
        if not wl.segment_per_write:
            workload.close_segment()
    return target, last.seq


def _refused(result: DrillResult, exc: UsageError, backend: Backend, recovery_name: str) -> None:
    """The recovery was refused before it started; prove nothing was overwritten."""
    evidence: dict[str, object] = {"error": str(exc), "cluster": recovery_name}
    occupied = [f for f in result.faults if f["kind"] == "occupy_recovery_server_name"]
    intact = True
    for fault in occupied:
        key, digest = fault["evidence"]["key"], fault["evidence"]["sha256"]
        now = hashlib.sha256(backend.store.get(key)).hexdigest()
        evidence[key] = {"sha256_before": digest, "sha256_after": now}
        intact &= now == digest
    code = ARCHIVE_NOT_EMPTY if "Expected empty archive" in str(exc) else RECOVERY_FAILED
    result.recovery = {"cluster": recovery_name, "refused": True, "error": str(exc),
                       "archive_untouched": intact, "promoted": False}
    result.add_detector(DetectorOutcome("recovery", DetectorStatus.FINDINGS, "recovery refused",
                                        [Finding(code, str(exc), "recovery", evidence=evidence)]))


def _fall_back(result: DrillResult, backend: Backend, source: ClusterHandle, failed: RecoveryOutcome,
               target: RecoveryTarget | None, step: Steps, clock: RtoClock) -> RecoveryOutcome:
    """What an operator does when the newest backup will not restore: take the previous one.
    The failed attempt is part of the RTO (an operator waits for it too)."""
    result.add_detector(DetectorOutcome("restore", DetectorStatus.FINDINGS, "newest base backup unusable", [
        Finding(BACKUP_UNUSABLE, f"base backup {failed.backup_id} is listed as completed but could not be "
                f"restored: {(failed.fatal_lines or ['no error'])[-1]}", "restore",
                evidence={"backup_id": failed.backup_id, "errors": failed.fatal_lines[-5:],
                          "failed_attempt_s": round(sum(failed.phases.values()), 3)})]))
    clock.phases = {"failed_attempt": sum(clock.phases.values())}
    older = sorted(b["backup_id"] for b in result.backups if b["backup_id"] != failed.backup_id)
    if failed.cluster is not None:
        backend.destroy(failed.cluster)
    name = backend.next_recovery_name(source.name)
    with step(f"fall back to base backup {older[-1]}: recover into {name}"):
        begun = time.monotonic()
        outcome = backend.recover(source, name, RecoveryTarget(
            lsn=target.lsn if target else None, time=target.time if target else None,
            name=target.name if target else None, backup_id=older[-1]), archive=True)
        clock.add_phases(outcome.phases, begun)
    result.recovery["fallback"] = {"from": failed.backup_id, "to": older[-1], "cluster": name}
    return outcome


def _record_recovery(result: DrillResult, recovery: RecoveryOutcome, target: RecoveryTarget | None,
                     path: str) -> None:
    result.recovery = {
        **result.recovery,
        "path": path,
        "cluster": recovery.cluster.name if recovery.cluster else None,
        "server_name": recovery.cluster.server_name if recovery.cluster else None,
        "backup_id": recovery.backup_id, "promoted": recovery.promoted, "failed_step": recovery.failed_step,
        "target": None if target is None else {"lsn": str(target.lsn) if target.lsn else None,
                                               "time": target.time, "name": target.name},
        "timeline": recovery.timeline, "fork_lsn": str(recovery.fork_lsn) if recovery.fork_lsn else None,
        "phases_s": {k: round(v, 3) for k, v in recovery.phases.items()},
        "restored_segments": recovery.restored_segments, "fatal": recovery.fatal_lines[-10:],
        "log_excerpt": recovery.log_excerpt[-30:],
        "details": recovery.cluster.details if recovery.cluster else {},
    }
    if not recovery.promoted:
        result.add_detector(DetectorOutcome("recovery", DetectorStatus.FINDINGS, "recovered cluster did not come up", [
            Finding(RECOVERY_FAILED, f"{result.recovery['cluster']} did not promote: "
                    + (recovery.fatal_lines[-1] if recovery.fatal_lines else "no error logged"),
                    "recovery", evidence={"fatal": recovery.fatal_lines[-10:], "log": recovery.log_excerpt[-20:],
                                          "failed_step": recovery.failed_step})]))


def _measure(name: str, findings: list[Finding], summary: str) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN, summary, findings)
