"""One recovery path: recover the archive into a fresh ``<source>-vN``, run every detector of it and
measure it against the ledger (lost writes, RPO, RTO)."""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict

from pgdrill.backends.base import (
    Backend,
    ClusterHandle,
    RecoveryOutcome,
    RecoveryTarget,
)
from pgdrill.detectors.archive import check_archive
from pgdrill.detectors.digest import DigestSet
from pgdrill.detectors.integrity import check_integrity
from pgdrill.detectors.ledger import check_ledger
from pgdrill.detectors.target import check_target
from pgdrill.drill.context import Disaster, DrillContext, Steps
from pgdrill.drill.measures import PathMeasure, RtoClock, rpo_findings, rto_findings
from pgdrill.errors import PgdrillError, S3Error, UsageError
from pgdrill.findings import (
    ARCHIVE_NOT_EMPTY,
    BACKUP_UNUSABLE,
    COULD_NOT_VERIFY,
    RECOVERY_FAILED,
    Finding,
)
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult
from pgdrill.workload.fixture import Fixture
from pgdrill.workload.ledger import Ledger


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
    recovery: RecoveryOutcome | None = None
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
        except (PgdrillError, OSError) as exc:  # pgdrill could not start it: nothing is known about the backup
            result.recovery = {**result.recovery, "path": path, "cluster": recovery_name, "promoted": False,
                               "failed_step": "start", "error": str(exc)}
            cause = f"{recovery_name} could not be started: {exc}"
        else:
            clock.add_phases(recovery.phases, begun)
            if not recovery.promoted and recovery.failed_step == "restore" and len(result.backups) > 1:
                recovery = _fall_back(result, backend, source, recovery, target, step, clock)
            cause = _start_failure(recovery, recovery_name)
            _record_recovery(result, recovery, target, path, failed=cause is None)
    if cause is not None:
        # Not the archive's fault and not PostgreSQL's verdict: every later detector would only
        # measure a cluster that never started, so none runs and the drill cannot be verified.
        result.add_detector(_could_not_run("recovery", cause))
        if result.steps:
            result.steps[-1]["status"] = "could not verify"
        step.progress(f"[pgdrill {step.name}] COULD NOT VERIFY: {cause}")
        return None, recovery
    assert recovery is not None
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


#: Server log lines of a postmaster that could not start at all (its port, its lock file, shared
#: memory): the machine got in the way, the backup and its WAL were never tried.
START_FAILURES = ("could not create any TCP/IP sockets", "Address already in use", "could not bind IPv",
                  "could not create lock file", "could not create shared memory segment",
                  "could not create semaphores", "could not create listen socket")


def _start_failure(recovery: RecoveryOutcome, name: str) -> str | None:
    """Why the recovery could not be verified (pgdrill's own timeout, a server that could not
    start), or None: a genuine PostgreSQL failure (a FATAL in replay) stays RECOVERY_FAILED."""
    if recovery.promoted:
        return None
    if recovery.failed_step == "timeout":
        why = recovery.fatal_lines[-1] if recovery.fatal_lines else "pgdrill's wait for promotion timed out"
        return f"{name}: {why}"
    if recovery.failed_step == "replay":
        hit = next((ln for ln in [*recovery.fatal_lines, *recovery.log_excerpt]
                    if any(marker in ln for marker in START_FAILURES)), None)
        if hit is not None:
            return f"{name}: the server could not start (not a recovery failure): {hit.strip()}"
    return None


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
                     path: str, failed: bool = True) -> None:
    """Record the recovery in ``result``; one that did not promote is RECOVERY_FAILED when
    ``failed`` (PostgreSQL's verdict), else the caller records why it could not be verified."""
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
        "wal_fetch": recovery.wal_fetch or {"max_parallel": 1},
        "log_excerpt": recovery.log_excerpt[-30:],
        "details": recovery.cluster.details if recovery.cluster else {},
    }
    if not recovery.promoted and failed:
        result.add_detector(DetectorOutcome("recovery", DetectorStatus.FINDINGS, "recovered cluster did not come up", [
            Finding(RECOVERY_FAILED, f"{result.recovery['cluster']} did not promote: "
                    + (recovery.fatal_lines[-1] if recovery.fatal_lines else "no error logged"),
                    "recovery", evidence={"fatal": recovery.fatal_lines[-10:], "log": recovery.log_excerpt[-20:],
                                          "failed_step": recovery.failed_step})]))


def _measure(name: str, findings: list[Finding], summary: str) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN, summary, findings)
