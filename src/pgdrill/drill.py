"""The drill runner: provision, seed, back up, write, break, recover, verify, judge.

Backend-independent: it only uses the ``Backend`` protocol, so a scenario runs unchanged on
the local backend and on Kubernetes.
"""

from __future__ import annotations

import getpass
import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .backends.base import Backend
from .config import Config
from .errors import CouldNotVerify, PgdrillError
from .faults import FaultContext, inject
from .findings import RECOVERY_FAILED, Finding, Severity
from .ledger import Ledger
from .measures import compute_rpo, rpo_findings, rto_findings
from .results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from .scenario import Expectation, Scenario
from .verify import check_archive, check_ledger, check_target
from .workload import Workload, load_fixture

log = logging.getLogger("pgdrill.drill")

#: Codes that mean "data is gone or unreachable"; a ``complete`` expectation allows none.
LOSS_CODES = {"WAL_GAP", "SILENT_DATA_LOSS", "REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED",
              "RECOVERY_FAILED", "RPO_EXCEEDED"}


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


class _Steps:
    def __init__(self, result: DrillResult, progress: Callable[[str], None] | None, name: str):
        self.result = result
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.name = name

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


def run_scenario(ctx: DrillContext) -> DrillResult:
    scenario, config, backend = ctx.scenario, ctx.config, ctx.backend
    result = DrillResult(
        drill=scenario.name,
        scenario=scenario.to_dict(),
        backend={"name": backend.name, "pgdrill": __version__, "user": getpass.getuser(),
                 "host": socket.gethostname()},
        started_at=now_iso(),
        targets={"rpo_s": config.targets.rpo_seconds, "rto_s": config.targets.rto_seconds},
    )
    step = _Steps(result, ctx.progress, scenario.name)
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(ctx.state_dir / "ledger.jsonl")
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    try:
        result.backend["versions"] = backend.versions()
        fixture = load_fixture(scenario.workload.fixture, ctx.fixtures_dir)
        with step("provision source cluster with WAL archiving"):
            source = backend.create_source(config.source.cluster_name)
        result.source = {"cluster": source.name, "server_name": source.server_name,
                         "destination": backend.destination.url,
                         "wal_compression": config.archive.wal_compression,
                         "archive_timeout_s": config.archive.archive_timeout_seconds,
                         "segment_size": segment_size, **source.details}
        workload = Workload(backend, source, fixture, ledger)
        with step(f"seed {fixture.database} and write {scenario.workload.baseline_rows} baseline rows"):
            workload.seed()
            workload.write(scenario.workload.baseline_rows, "baseline")
        with step("base backup (barman-cloud-backup)"):
            backup_id = backend.take_backup(source)
            result.backups.append({"backup_id": backup_id, "taken_at": now_iso()})
        with step(f"write {scenario.workload.writes_after_backup} rows after the backup"):
            workload.write(scenario.workload.writes_after_backup, "after_backup",
                           switch_wal_each=scenario.workload.segment_per_write)
            if not scenario.workload.segment_per_write:
                workload.close_segment()
        fault_ctx = FaultContext(backend, source, ledger, segment_size)
        for spec in scenario.faults:
            with step(f"inject fault {spec.kind}"):
                result.faults.append(inject(fault_ctx, spec).to_dict())
        if not any(f.kind == "lose_cluster" for f in scenario.faults):
            with step("disaster: stop the source cluster hard"):
                backend.lose(source, destroy_data=False)
        # RTO starts when the loss is declared, i.e. once the source is gone.
        disaster_wall = datetime.now(timezone.utc)
        disaster = time.monotonic()
        result.disaster_declared_at = disaster_wall.isoformat(timespec="milliseconds")
        new_name = backend.next_recovery_name(source.name)
        with step(f"recover into {new_name}"):
            recovery = backend.recover(source, new_name, None, archive=True)
        recovered_at = time.monotonic()
        rto_total = (recovered_at - disaster) if recovery.promoted else None
        phases = dict(recovery.phases)
        if rto_total is not None:
            phases = {"preflight": max(rto_total - sum(phases.values()), 0.0), **phases}
        result.rto.total, result.rto.phases = rto_total, phases
        result.recovery = {
            "cluster": new_name, "server_name": recovery.cluster.server_name if recovery.cluster else None,
            "backup_id": recovery.backup_id, "promoted": recovery.promoted,
            "timeline": recovery.timeline, "fork_lsn": str(recovery.fork_lsn) if recovery.fork_lsn else None,
            "restored_segments": recovery.restored_segments, "fatal": recovery.fatal_lines[-10:],
            "log_excerpt": recovery.log_excerpt[-30:],
            "details": recovery.cluster.details if recovery.cluster else {},
        }
        if not recovery.promoted:
            result.add_detector(DetectorOutcome("recovery", DetectorStatus.FINDINGS, "recovered cluster did not come up", [
                Finding(RECOVERY_FAILED, f"{new_name} did not promote: "
                        + (recovery.fatal_lines[-1] if recovery.fatal_lines else "no error logged"),
                        "recovery", evidence={"fatal": recovery.fatal_lines[-10:],
                                              "log": recovery.log_excerpt[-20:]})]))
        with step("verify: ledger vs recovered rows"):
            ledger_check = check_ledger(backend, recovery, ledger, fixture)
            result.add_detector(ledger_check.outcome)
        with step("verify: archive continuity"):
            archive_check = check_archive(backend, source, recovery, ledger, segment_size)
            result.add_detector(archive_check.outcome)
            result.archive = archive_check.summary
        with step("verify: recovery to the last ledger LSN"):
            target_outcome, _ = check_target(backend, source, ledger, f"{new_name}-target-check", ctx.keep)
            result.add_detector(target_outcome)
        rpo = compute_rpo(ledger.entries, ledger_check.recovered, disaster_wall) if ledger_check.recovered \
            or ledger_check.outcome.status != DetectorStatus.COULD_NOT_VERIFY else None
        result.ledger = {"committed": len(ledger), **ledger_check.summary,
                         "entries": [e.__dict__ for e in ledger.entries]}
        result.ledger["recovered"] = ledger_check.summary.get("recovered")
        if rpo is not None:
            result.rpo = rpo.to_dict()
            result.add_detector(_measure("rpo", rpo_findings(rpo, config.targets.rpo_seconds),
                                         f"{rpo.seconds:.1f}s, {rpo.lost_writes} writes lost"))
        result.add_detector(_measure("rto", rto_findings(rto_total, phases, config.targets.rto_seconds),
                                     f"{rto_total:.1f}s" if rto_total is not None else "not measured: no promotion"))
        result.verdict, result.verdict_reasons = evaluate(scenario.expect, result)
    except CouldNotVerify as exc:
        result.verdict, result.verdict_reasons = Verdict.COULD_NOT_VERIFY, [str(exc)]
    except PgdrillError as exc:
        result.verdict, result.verdict_reasons = Verdict.COULD_NOT_VERIFY, [f"{type(exc).__name__}: {exc}"]
    finally:
        result.finished_at = now_iso()
        if ctx.keep and hasattr(backend, "keep_info"):
            result.keep = backend.keep_info()  # type: ignore[attr-defined]
    return result


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
    recovered = result.ledger.get("recovered")
    committed = result.ledger.get("committed")
    if expect.recovered_rows is not None and recovered is not None and recovered != expect.recovered_rows:
        failures.append(f"expected {expect.recovered_rows} recovered rows, found {recovered}")
    if expect.missing_rows is not None and recovered is not None and committed is not None \
            and committed - recovered != expect.missing_rows:
        failures.append(f"expected {expect.missing_rows} missing rows, found {committed - recovered}")
    if expect.outcome == "complete":
        unexpected = sorted((codes & LOSS_CODES) - set(expect.findings))
        if unexpected:
            failures.append(f"clean recovery expected, but pgdrill reported {', '.join(unexpected)}")
        if recovered is not None and committed is not None and recovered != committed:
            failures.append(f"clean recovery expected, but only {recovered}/{committed} rows came back")
        other = sorted(f.code for f in result.findings
                       if f.severity == Severity.CRITICAL and f.code not in LOSS_CODES | {"COULD_NOT_VERIFY"}
                       and f.code not in expect.findings)
        if other:
            failures.append(f"unexpected critical finding(s): {', '.join(other)}")
    else:  # loss_detected
        if not codes & LOSS_CODES:
            failures.append("a loss was expected, but pgdrill reported the recovery as clean")
    if failures:
        return Verdict.FAILED, failures
    if unverified:
        return Verdict.COULD_NOT_VERIFY, [f"detector(s) could not run: {', '.join(unverified)}"]
    return Verdict.PASSED, ["expectation met: " + expect.outcome
                            + (f" ({', '.join(sorted(codes & set(expect.findings)))})" if expect.findings else "")]
