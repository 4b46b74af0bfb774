"""Python drills that scenario data cannot express: kill the primary, with and without a replica."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pgdrill.backends.base import Backend, ClusterHandle, FailoverBackend
from pgdrill.config import Config
from pgdrill.detectors.archive import check_archive
from pgdrill.detectors.failover import failover_loss_findings
from pgdrill.detectors.ledger import check_ledger
from pgdrill.detectors.target import check_target
from pgdrill.drill.context import Disaster, Steps, guard
from pgdrill.drill.judge import judge
from pgdrill.drill.measures import PathMeasure, rpo_findings, rto_findings
from pgdrill.drill.node_plans import NodeDrillPlan, rto_bound
from pgdrill.drill.node_steps import (
    Prepared,
    archiving_after,
    detector,
    iso,
    load_and_kill,
    new_result,
    not_supported,
    now,
    prepare,
)
from pgdrill.findings import RECOVERY_FAILED, Finding
from pgdrill.results import DrillResult
from pgdrill.workload.ledger import Ledger


def run_failover_drill(backend: Backend, config: Config, plan: NodeDrillPlan, state_dir: Path,
                       fixtures_dir: Path, progress: Callable[[str], None] | None = None) -> DrillResult:
    result = new_result(plan, config, backend, "failover")
    if not isinstance(backend, FailoverBackend):
        return not_supported(result, backend)
    step = Steps(result, progress)
    required = ["failover", "rpo", "rto", "archive_after_failover"] + (["ledger"] if plan.recover_from_s3 else [])
    measures: list[PathMeasure] = []
    with guard(result):
        prep = prepare(backend, config, plan, result, step, state_dir, fixtures_dir)
        primary, workload, ledger = prep.primary, prep.workload, prep.ledger
        try:
            with step("streaming replica (pg_basebackup, slot, same serverName)"):
                replica = backend.create_replica(primary, f"{primary.name}-replica")
            result.source["replica"] = replica.details
            disaster = load_and_kill(backend, plan, prep, step, result, "failover")
            clock = disaster.clock
            with step(f"failover: promote {replica.name}"):
                # What CNPG's instance manager looks at to pick the most advanced replica.
                received = backend.sql(replica, "SELECT pg_last_wal_receive_lsn()::text, "
                                                "pg_last_wal_replay_lsn()::text")[0]
                clock.mark("elect", time.monotonic())
                promotion = backend.promote(replica)
                clock.mark("promote", time.monotonic())
            result.recovery["failover"] = {
                "cluster": replica.name, "promoted": promotion.promoted, "timeline": promotion.timeline,
                "fork_lsn": str(promotion.fork_lsn) if promotion.fork_lsn else None,
                "received_lsn": received[0], "replayed_lsn": received[1],
                "fatal": promotion.fatal_lines[-10:], "log_excerpt": promotion.log_excerpt[-20:]}
            if not promotion.promoted:
                result.add_detector(detector("failover", [Finding(
                    RECOVERY_FAILED, f"{replica.name} did not promote: "
                    + (promotion.fatal_lines[-1] if promotion.fatal_lines else "no error logged"), "failover",
                    evidence=result.recovery["failover"])], "replica did not promote"))
                raise _Stop()
            with step(f"first write on {replica.name} (end of failover RTO)"):
                workload.cluster = replica  # same ledger and id sequence: no id is ever reused
                workload.write(1, "after_failover")
                clock.mark("first_write", workload.last_ack_monotonic or time.monotonic())
                clock.exclude("ledger", time.monotonic())
            result.add_detector(detector("failover", [], f"{replica.name} promoted to timeline {promotion.timeline} "
                                          f"and committed a write {clock.total:.2f}s after the kill (RTO)"))
            with step("measure commits lost at failover (ledger vs new primary)"):
                check, failover = check_ledger(backend, replica, ledger, workload.fixture, "failover", "failover",
                                               disaster.bound_seq, disaster_at=clock.declared_at)
                if failover is None:
                    result.add_detector(check.outcome)
                    raise _Stop()
                failover.rto = clock.to_dict()
                measures.append(failover)
                result.add_detector(detector("rpo", failover_loss_findings(failover, config.targets.rpo_seconds),
                                              f"failover: {failover.lost_writes} acknowledged commit(s) lost, "
                                              f"RPO {failover.rpo_seconds or 0:.3f}s"))
                result.add_detector(detector("rto", rto_findings("failover", failover.rto,
                                                                  rto_bound(plan, config)),
                                              f"failover {clock.total:.2f}s"))
            archiving_after(backend, plan, prep, replica, "failover", step, result)
            if plan.recover_from_s3:
                s3 = _recover_from_archive(backend, config, plan, prep, replica, step, result, failover)
                if s3 is not None:
                    measures.append(s3)
        except _Stop:
            pass
        finally:
            workload.close()
        _judge(result, measures, ledger, plan, config, required)
    result.finished_at = iso(now())
    return result


def _judge(result: DrillResult, measures: list[PathMeasure], ledger: Ledger, plan: NodeDrillPlan, config: Config,
           required: list[str]) -> None:
    """Whatever was measured, judged by the one judge like every drill."""
    result.ledger.update({"committed": len(ledger), "in_doubt": len(ledger.in_doubt)})
    result.set_measures(measures)
    result.verdict, result.verdict_reasons = judge(plan.expect, result, rto_bound(plan, config), required)


class _Stop(Exception):
    """The drill cannot go on (e.g. nothing promoted); judge what was found so far."""


def _recover_from_archive(backend: Backend, config: Config, plan: NodeDrillPlan, prep: Prepared,
                          new_primary: ClusterHandle, step: Steps, result: DrillResult,
                          failover: PathMeasure) -> PathMeasure | None:
    """The second path: the new primary is lost too; restore the archive into <cluster>-vN.

    It owes every write acknowledged so far; what it loses beyond what the failover lost is
    archive damage (SILENT_DATA_LOSS), not replication lag."""
    fixture, ledger = prep.workload.fixture, prep.ledger
    new_name = backend.next_recovery_name(prep.primary.name)
    disaster = Disaster.declare(ledger)
    with step(f"recover the archive into {new_name}"):
        begun = time.monotonic()
        outcome = backend.recover(new_primary, new_name, None, archive=True)
        disaster.clock.add_phases(outcome.phases, begun)
    result.recovery["s3_recovery"] = {
        "cluster": new_name, "promoted": outcome.promoted, "backup_id": outcome.backup_id,
        "timeline": outcome.timeline, "fork_lsn": str(outcome.fork_lsn) if outcome.fork_lsn else None,
        "phases_s": {k: round(v, 3) for k, v in outcome.phases.items()},
        "restored_segments": outcome.restored_segments, "fatal": outcome.fatal_lines[-10:],
        "log_excerpt": outcome.log_excerpt[-20:]}
    if not outcome.promoted or outcome.cluster is None:
        result.add_detector(detector("ledger", [Finding(
            RECOVERY_FAILED, f"{new_name} did not promote: "
            + (outcome.fatal_lines[-1] if outcome.fatal_lines else "no error logged"), "ledger",
            evidence=result.recovery["s3_recovery"])], "recovery from the archive failed"))
        return None
    with step("verify: ledger vs the recovered cluster"):
        # Commits lost at the failover are reported there; anything more the archive lost is damage.
        check, measure = check_ledger(backend, outcome.cluster, ledger, fixture, "s3_recovery", "archive",
                                      disaster.bound_seq, disaster_at=disaster.clock.declared_at,
                                      lost_elsewhere={w["seq"] for w in failover.lost})
        result.add_detector(check.outcome)
    if measure is not None:
        measure.rto = disaster.clock.to_dict()
        result.add_detector(detector("rpo", rpo_findings(measure, config.targets.rpo_seconds),
                                      f"s3_recovery: {measure.lost_writes} acknowledged "
                                      f"write(s) lost, RPO {measure.rpo_seconds or 0:.3f}s"))
        result.add_detector(detector("rto", rto_findings("s3_recovery", measure.rto, rto_bound(plan, config)),
                                      f"s3_recovery {disaster.clock.total:.2f}s"))
        # Rows per path live in ``measures``; a failover drill's loss is judged per path there.
        result.ledger.update({k: v for k, v in check.summary.items()
                              if k not in ("owners", "recovered", "expected")})
    with step("verify: archive continuity for that recovery"):
        archive_check = check_archive(backend, new_primary, outcome, ledger, prep.segment_size)
        result.add_detector(archive_check.outcome)
        result.archive = {**result.archive, "recovery": archive_check.summary}
    with step("verify: recovery to the last owed write's LSN"):
        result.add_detector(check_target(backend, new_primary, ledger, disaster.bound_seq, f"{new_name}-target-check",
                                         outcome.backup_id, prep.segment_size))
    return measure


def run_crash_drill(backend: Backend, config: Config, plan: NodeDrillPlan, state_dir: Path,
                    fixtures_dir: Path, progress: Callable[[str], None] | None = None) -> DrillResult:
    result = new_result(plan, config, backend, "crash")
    if not isinstance(backend, FailoverBackend):
        return not_supported(result, backend)
    step = Steps(result, progress)
    required = ["restart", "ledger", "rto", "archive_after_restart"]
    measures: list[PathMeasure] = []
    with guard(result):
        prep = prepare(backend, config, plan, result, step, state_dir, fixtures_dir)
        primary, workload, ledger = prep.primary, prep.workload, prep.ledger
        try:
            sync = backend.sql(primary, "SHOW synchronous_commit")[0][0]
            result.source["synchronous_commit"] = sync
            disaster = load_and_kill(backend, plan, prep, step, result, "crash")
            clock = disaster.clock
            with step(f"restart {primary.name} on its data directory (crash recovery)"):
                begun = time.monotonic()
                restart = backend.restart_after_crash(primary)
                # Waiting for the killed postmaster to be reaped, and retrying a start while its
                # orphans still hold the port or shared memory, are artefacts of processes on one
                # host; a restarted pod sees neither.
                clock.add_phases(restart.phases, begun, excluded=("reap", "start_retries"))
            result.recovery["restart"] = {
                "cluster": primary.name, "promoted": restart.promoted, "timeline": restart.timeline,
                "phases_s": {k: round(v, 3) for k, v in restart.phases.items()},
                "fatal": restart.fatal_lines[-10:], "log_excerpt": restart.log_excerpt[-20:],
                "start_attempts": primary.details.get("start_attempts"),
                "start_retry_reasons": primary.details.get("start_retry_reasons")}
            if not restart.promoted:
                result.add_detector(detector("restart", [Finding(
                    RECOVERY_FAILED, f"{primary.name} did not come back after the crash: "
                    + (restart.fatal_lines[-1] if restart.fatal_lines else "no error logged"), "restart",
                    evidence=result.recovery["restart"])], "crash recovery failed"))
                raise _Stop()
            with step("verify: every acknowledged commit survived (ledger vs rows)"):
                check, measure = check_ledger(backend, primary, ledger, workload.fixture, "crash_restart", "crash",
                                              disaster.bound_seq, disaster_at=clock.declared_at)
                result.add_detector(check.outcome)
                clock.exclude("verify", time.monotonic())  # the ledger read is not part of the outage
            with step(f"first write on {primary.name} (end of crash-recovery RTO)"):
                workload.close()  # the old session died with the postmaster
                workload.write(1, "after_restart")
                clock.mark("first_write", workload.last_ack_monotonic or time.monotonic())
                clock.exclude("ledger", time.monotonic())
            result.add_detector(detector("restart", [], f"{primary.name} open after crash recovery "
                                          f"({restart.phases.get('crash_recovery', 0.0):.2f}s)"))
            if measure is not None:
                measure.rto = clock.to_dict()
                measures.append(measure)
                result.add_detector(detector("rpo", rpo_findings(measure, config.targets.rpo_seconds),
                                              f"crash_restart: {measure.lost_writes} acknowledged commit(s) lost"))
                result.ledger = {k: v for k, v in check.summary.items() if k != "owners"}
            result.add_detector(detector("rto", rto_findings("crash_restart", clock.to_dict(),
                                                              rto_bound(plan, config)),
                                          f"crash recovery {clock.total:.2f}s"))
            archiving_after(backend, plan, prep, primary, "restart", step, result)
        except _Stop:
            pass
        finally:
            workload.close()
        _judge(result, measures, ledger, plan, config, required)
    result.finished_at = iso(now())
    return result
