"""The drill runner: provision, seed, back up, write, break, recover, verify, judge.

Backend-independent: it only uses the ``Backend`` protocol, so a scenario runs unchanged on
the local backend and on Kubernetes.
"""

from __future__ import annotations

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
from .backends.base import Backend, ClusterHandle, RecoveryOutcome, RecoveryTarget
from .config import Config
from .errors import CouldNotVerify, PgdrillError, UsageError
from .audit_hook import audit_archive
from .digest import DigestSet
from .faults import FaultContext, inject
from .integrity import check_integrity, record_digests
from .findings import (
    ARCHIVE_NOT_EMPTY, BACKUP_UNUSABLE, COULD_NOT_VERIFY, RECOVERY_FAILED, RECOVERY_TARGET_UNREACHED, Finding,
    Severity,
)
from .ledger import Ledger
from .measures import compute_rpo, rpo_findings, rto_findings
from .results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from .scenario import Expectation, Scenario
from .verify import TARGET_NOT_REACHED, check_archive, check_ledger, check_target
from .wal import Lsn
from .workload import Fixture, Workload, load_fixture

log = logging.getLogger("pgdrill.drill")

#: Codes that mean "data is gone or unreachable"; a ``complete`` expectation allows none.
LOSS_CODES = {"WAL_GAP", "SILENT_DATA_LOSS", "REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED",
              "RECOVERY_FAILED", "RPO_EXCEEDED", "WAL_SEGMENT_UNREADABLE"}


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


def run_scenario(ctx: DrillContext) -> DrillResult:
    scenario, config, backend = ctx.scenario, ctx.config, ctx.backend
    try:
        result, step = drill_result(ctx)
    except PgdrillError as exc:
        result = DrillResult(drill=scenario.name, scenario=scenario.to_dict(), backend={"name": backend.name},
                             started_at=now_iso(), finished_at=now_iso(), verdict=Verdict.COULD_NOT_VERIFY,
                             verdict_reasons=[f"{type(exc).__name__}: {exc}"])
        return result
    ledger = Ledger(ctx.state_dir / "ledger.jsonl")
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    wl = scenario.workload
    try:
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
        target, target_index = _write_after_backup(scenario, workload, ledger, step)
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
        for spec in scenario.faults:
            with step(f"inject fault {spec.kind}"):
                result.faults.append(inject(fault_ctx, spec).to_dict())
        with step("audit the archive (as pgdrill audit would)"):
            result.audit["after"] = audit_archive(backend, source)
        if not lost_by_fault:
            with step("record content digests of the source"):
                record_digests(backend, source, fixture.database, ctx.state_dir)
            with step("disaster: stop the source cluster hard"):
                backend.lose(source, destroy_data=False)
        judge_recovery(ctx, result, step, ledger, fixture, source, recovery_name, target, target_index)
        result.verdict, result.verdict_reasons = evaluate(scenario.expect, result)
    except PgdrillError as exc:
        result.verdict, result.verdict_reasons = could_not_verify(exc)
    finally:
        result.finished_at = now_iso()
        if ctx.keep and hasattr(backend, "keep_info"):
            result.keep = backend.keep_info()  # type: ignore[attr-defined]
    return result


def could_not_verify(exc: PgdrillError) -> tuple[Verdict, list[str]]:
    """The verdict of a drill that an error stopped before it could judge anything."""
    reason = str(exc) if isinstance(exc, CouldNotVerify) else f"{type(exc).__name__}: {exc}"
    return Verdict.COULD_NOT_VERIFY, [reason]


def judge_recovery(ctx: DrillContext, result: DrillResult, step: Steps, ledger: Ledger, fixture: Fixture,
                   source: ClusterHandle, recovery_name: str, target: RecoveryTarget | None = None,
                   target_index: int | None = None) -> None:
    """Declare the disaster (the source is gone by now), recover into ``recovery_name`` and run
    every detector and measure into ``result`` (a refused recovery is recorded as such).
    Shared by scenario drills and Python drills; the caller judges with ``evaluate``."""
    backend, config = ctx.backend, ctx.config
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    # RTO starts when the loss is declared, i.e. once the source is gone.
    disaster_wall = datetime.now(timezone.utc)
    disaster = time.monotonic()
    result.disaster_declared_at = disaster_wall.isoformat(timespec="milliseconds")
    with step(f"recover into {recovery_name}"):
        try:
            recovery = backend.recover(source, recovery_name, target, archive=True)
        except UsageError as exc:
            _refused(result, exc, backend, recovery_name)
            return
        if not recovery.promoted and recovery.failed_step == "restore" and len(result.backups) > 1:
            recovery = _fall_back(result, backend, source, recovery, target, step)
    _record_recovery(result, recovery, disaster, target)
    with step("verify: ledger vs recovered rows"):
        ledger_check = check_ledger(backend, recovery, ledger, fixture, target_index)
        result.add_detector(ledger_check.outcome)
    with step("verify: archive continuity"):
        archive_check = check_archive(backend, source, recovery, ledger, segment_size, to_latest=target is None)
        result.add_detector(archive_check.outcome)
        result.archive = archive_check.summary
    if target is None:
        with step("verify: recovery to the last ledger LSN"):
            end = archive_check.summary.get("backup_end_lsn")
            target_outcome, _ = check_target(backend, source, ledger, f"{recovery_name}-target-check", ctx.keep,
                                             recovery, Lsn.parse(end) if end else None)
            result.add_detector(target_outcome)
    else:
        # The drill's recovery had the target itself: PostgreSQL's verdict is the check.
        result.add_detector(_target_from_recovery(recovery, target))
    if recovery.promoted and recovery.cluster is not None:
        with step("verify: integrity (page checksums, amcheck, content digests)"):
            digests = DigestSet.load(ctx.state_dir)
            integrity = check_integrity(backend, recovery.cluster, fixture.database, digests,
                                        compare_content=target is None and digests is not None)
            for outcome in integrity.outcomes:
                result.add_detector(outcome)
            result.integrity = integrity.report
    expected = ledger.entries if target_index is None else ledger.entries[: target_index + 1]
    expected = [e for e in expected if e.op == "insert"]
    rpo = compute_rpo(expected, ledger_check.recovered, disaster_wall) if ledger_check.recovered else None
    result.ledger = {**ledger_check.summary, "committed": len(ledger),
                     "entries": [asdict(e) for e in ledger.entries]}
    if rpo is not None:
        result.rpo = rpo.to_dict()
        result.add_detector(_measure("rpo", rpo_findings(rpo, config.targets.rpo_seconds),
                                     f"{rpo.seconds:.1f}s, {rpo.lost_writes} writes lost"))
    result.add_detector(_measure("rto", rto_findings(result.rto.total, result.rto.phases, config.targets.rto_seconds),
                                 f"{result.rto.total:.1f}s" if result.rto.total is not None
                                 else "not measured: no promotion"))


def _write_after_backup(scenario: Scenario, workload: Workload, ledger: Ledger,
                        step: Steps) -> tuple[RecoveryTarget | None, int | None]:
    """Write the post-backup rows; for a PITR scenario, place the target after write N."""
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
        target_index = ledger.entries.index(last)
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
            target = RecoveryTarget(lsn=Lsn.parse(last.lsn))
        workload.write(wl.writes_after_backup - spec.after_write, "after_backup",
                       switch_wal_each=wl.segment_per_write)
        if not wl.segment_per_write:
            workload.close_segment()
    return target, target_index


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
               target: RecoveryTarget | None, step: Steps) -> RecoveryOutcome:
    """What an operator does when the newest backup will not restore: take the previous one."""
    result.add_detector(DetectorOutcome("restore", DetectorStatus.FINDINGS, "newest base backup unusable", [
        Finding(BACKUP_UNUSABLE, f"base backup {failed.backup_id} is listed as completed but could not be "
                f"restored: {(failed.fatal_lines or ['no error'])[-1]}", "restore",
                evidence={"backup_id": failed.backup_id, "errors": failed.fatal_lines[-5:]})]))
    older = sorted(b["backup_id"] for b in result.backups if b["backup_id"] != failed.backup_id)
    if failed.cluster is not None:
        backend.destroy(failed.cluster)
    name = backend.next_recovery_name(source.name)
    with step(f"fall back to base backup {older[-1]}: recover into {name}"):
        outcome = backend.recover(source, name, RecoveryTarget(
            lsn=target.lsn if target else None, time=target.time if target else None,
            name=target.name if target else None, backup_id=older[-1]), archive=True)
    outcome.phases = {"failed_attempt": sum(failed.phases.values()), **outcome.phases}
    result.recovery["fallback"] = {"from": failed.backup_id, "to": older[-1], "cluster": name}
    return outcome


def _record_recovery(result: DrillResult, recovery: RecoveryOutcome, disaster: float,
                     target: RecoveryTarget | None) -> None:
    rto_total = (time.monotonic() - disaster) if recovery.promoted else None
    phases = dict(recovery.phases)
    if rto_total is not None:
        phases = {"preflight": max(rto_total - sum(phases.values()), 0.0), **phases}
    result.rto.total, result.rto.phases = rto_total, phases
    result.recovery = {
        **result.recovery,
        "cluster": recovery.cluster.name if recovery.cluster else None,
        "server_name": recovery.cluster.server_name if recovery.cluster else None,
        "backup_id": recovery.backup_id, "promoted": recovery.promoted, "failed_step": recovery.failed_step,
        "target": None if target is None else {"lsn": str(target.lsn) if target.lsn else None,
                                               "time": target.time, "name": target.name},
        "timeline": recovery.timeline, "fork_lsn": str(recovery.fork_lsn) if recovery.fork_lsn else None,
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


def _target_from_recovery(recovery: RecoveryOutcome, target: RecoveryTarget) -> DetectorOutcome:
    if recovery.promoted:
        return DetectorOutcome("target", DetectorStatus.CLEAN, "PostgreSQL reached the recovery target", [])
    if any(TARGET_NOT_REACHED in line for line in recovery.fatal_lines):
        return DetectorOutcome("target", DetectorStatus.FINDINGS, "PostgreSQL refused: target not reachable", [
            Finding(RECOVERY_TARGET_UNREACHED, f"recovery to {target} failed: {TARGET_NOT_REACHED}", "target",
                    evidence={"fatal": recovery.fatal_lines[-5:]})])
    return DetectorOutcome("target", DetectorStatus.COULD_NOT_VERIFY, "the recovery did not get far enough to tell", [
        Finding(COULD_NOT_VERIFY, "target: the recovery failed before PostgreSQL judged the target", "target",
                evidence={"fatal": recovery.fatal_lines[-5:]})])


def _measure(name: str, findings: list[Finding], summary: str) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN, summary, findings)


def evaluate(expect: Expectation, result: DrillResult) -> tuple[Verdict, list[str]]:
    """Judge a drill against its expectation. Pure: reads only ``result``."""
    codes = result.finding_codes()
    unverified = [d.name for d in result.detectors if d.status == DetectorStatus.COULD_NOT_VERIFY]
    failures: list[str] = []
    missing_codes = [c for c in expect.findings if c not in codes]
    if missing_codes:
        failures.append(f"expected finding(s) not reported: {', '.join(missing_codes)}")
    if expect.outcome == "refused":
        recovery = result.recovery
        if not recovery.get("refused"):
            failures.append("the recovery should have been refused, but it ran")
        elif not recovery.get("archive_untouched", False):
            failures.append("the recovery was refused, but objects under its serverName changed")
        return (Verdict.FAILED, failures) if failures else \
            (Verdict.PASSED, [f"expectation met: refused ({recovery.get('error')})"])
    recovered = result.ledger.get("recovered")
    expected = result.ledger.get("expected", result.ledger.get("committed"))
    if expect.recovered_rows is not None and recovered is not None and recovered != expect.recovered_rows:
        failures.append(f"expected {expect.recovered_rows} recovered rows, found {recovered}")
    if expect.missing_rows is not None and recovered is not None and expected is not None \
            and expected - recovered != expect.missing_rows:
        failures.append(f"expected {expect.missing_rows} missing rows, found {expected - recovered}")
    rpo = result.rpo.get("seconds")
    if expect.max_rpo_seconds is not None:
        if rpo is None:
            unverified.append("rpo")
        elif rpo > expect.max_rpo_seconds:
            failures.append(f"RPO {rpo:.1f}s is above the scenario's bound of {expect.max_rpo_seconds:.0f}s")
    if expect.outcome == "complete":
        unexpected = sorted((codes & LOSS_CODES) - set(expect.findings))
        if unexpected:
            failures.append(f"clean recovery expected, but pgdrill reported {', '.join(unexpected)}")
        if recovered is not None and expected is not None and recovered != expected:
            failures.append(f"clean recovery expected, but only {recovered}/{expected} rows came back")
        other = sorted(f.code for f in result.findings
                       if f.severity == Severity.CRITICAL and f.code not in LOSS_CODES | {"COULD_NOT_VERIFY"}
                       and f.code not in expect.findings)
        if other:
            failures.append(f"unexpected critical finding(s): {', '.join(other)}")
    elif expect.outcome == "bounded_loss":
        # Losing the unarchived tail is the accepted risk; a hole or damage is not.
        bad = sorted((codes & LOSS_CODES) - {"SILENT_DATA_LOSS", "RECOVERY_TARGET_UNREACHED"}
                     - set(expect.findings))
        if bad:
            failures.append(f"only the unarchived tail may be lost, but pgdrill reported {', '.join(bad)}")
    else:  # loss_detected
        if not codes & LOSS_CODES:
            failures.append("a loss was expected, but pgdrill reported the recovery as clean")
    if failures:
        return Verdict.FAILED, failures
    if unverified:
        return Verdict.COULD_NOT_VERIFY, [f"detector(s) could not run: {', '.join(unverified)}"]
    return Verdict.PASSED, ["expectation met: " + expect.outcome
                            + (f" ({', '.join(sorted(codes & set(expect.findings)))})" if expect.findings else "")]
