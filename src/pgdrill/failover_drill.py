"""Python drills that scenario data cannot express: kill the primary, with and without a replica.

``run_failover_drill``: primary + asynchronous streaming replica, a steady ledger write load,
SIGKILL of the primary's postmaster, promotion of the replica.  Two recovery paths are measured
against the ledger (docs/measures.md): the promotion itself (``failover``) and, optionally, a
restore of the archive into ``<cluster>-vN`` (``s3_recovery``), as if the new primary were lost
too.  Archiving is proven from the *bucket* to resume on the new timeline with no hole.

``run_crash_drill``: no replica; SIGKILL, restart on the same data directory, crash recovery
(path ``crash_restart``).  With ``synchronous_commit = on`` every acknowledged commit must
survive; archiving (including segments the archiver had not uploaded at the kill) must continue.

Both return a ``DrillResult`` judged by ``pgdrill.judge``, like every drill.
"""

from __future__ import annotations

import getpass
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .archive import read_server_archive
from .backends.base import Backend, ClusterHandle, FailoverBackend
from .config import Config
from .drill import Disaster, Steps, guard, now_iso
from .errors import CouldNotVerify, PgdrillError
from .failover import assess_archive_resumption, failover_loss_findings
from .findings import RECOVERY_FAILED, Finding
from .judge import judge
from .ledger import Ledger
from .measures import PathMeasure, RtoClock, rpo_findings, rto_findings
from .results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from .scenario import Expectation, PathExpectation
from .verify import check_archive, check_ledger, check_target
from .wal import SegmentName
from .workload import Fixture, Workload, WriteInDoubt, load_fixture


@dataclass(frozen=True)
class NodeDrillPlan:
    """One node-level drill.  Defaults: the smoke-tier failover drill."""

    name: str = "primary-kill-failover"
    tier: str = "smoke"
    description: str = ""
    fixture: str = "moderation_event"
    baseline_rows: int = 24
    load_seconds: float = 3.0
    """Steady load before the kill: one committed ledger row after another, no forced switch."""
    load_interval_seconds: float = 0.0
    """Pause between two writes of the load (0: as fast as one client commits)."""
    backlog_segments: int = 0
    """Right before the kill, close this many segments without waiting for the archiver, so the
    kill hits while archiving is behind (the archiver uploads one segment at a time)."""
    rows_after_event: int = 3
    """Rows written on the surviving primary after the event, each switched into its own segment
    (not waited for): archiving must upload them."""
    archive_wait_seconds: float = 90.0
    recover_from_s3: bool = True
    expect: Expectation = field(default_factory=lambda: Expectation("complete"))
    """What the drill must measure and report (the same expectation as a scenario's)."""
    archive_to_nowhere_after_event: bool = False
    """Negative control for plugin-barman-cloud#842: right after the event, the surviving primary's
    archive_command becomes ``/bin/true``, so pg_stat_archiver reports every segment archived while
    nothing reaches the bucket.  The drill must still report archiving as stalled."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")


class SteadyLoad(threading.Thread):
    """One client committing ledger rows until stopped or until its server goes away.

    A write in flight when the primary dies is *in doubt* in the ledger (sent, never
    acknowledged): it is reported as present or absent, never as lost or as safe.  Any other
    error (a failed ledger write, a bug) is kept in ``exception`` and re-raised by the drill.
    """

    def __init__(self, workload: Workload, interval: float):
        super().__init__(name="pgdrill-steady-load", daemon=True)
        self.workload = workload
        self.interval = interval
        self.stop = threading.Event()
        self.written = 0
        self.stopped_by: str | None = None
        self.exception: BaseException | None = None

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.workload.write(1, "load")
            except WriteInDoubt as exc:  # the server died under us: expected at the kill
                self.stopped_by = str(exc)
                return
            except BaseException as exc:
                self.exception = exc
                return
            self.written += 1
            if self.interval:
                self.stop.wait(self.interval)


def _ids(backend: Backend, cluster: ClusterHandle, fixture: Fixture, tables: list[str]) -> dict[str, set[int]]:
    return {t: {int(r[0]) for r in backend.sql(cluster, f'SELECT id FROM "{t}"', dbname=fixture.database)}
            for t in tables}


def _stat_archiver(backend: Backend, cluster: ClusterHandle) -> dict[str, Any]:
    try:
        row = backend.sql(cluster, "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal "
                                   "FROM pg_stat_archiver")[0]
    except PgdrillError as exc:
        return {"error": str(exc)}
    return dict(zip(("archived_count", "last_archived_wal", "failed_count", "last_failed_wal"), row))


def _switch_segment(backend: Backend, cluster: ClusterHandle) -> str:
    """End the current segment (not waiting for the archiver); returns its name."""
    name = backend.sql(cluster, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
    backend.sql(cluster, "SELECT pg_switch_wal()")
    return str(name)


def _wait_in_bucket(backend: Backend, server_name: str, segments: list[str], segment_size: int,
                    timeout: float) -> tuple[Any, list[Any], dict[int, Any], float]:
    """Poll the bucket listing (not pg_stat_archiver) until every segment is there or timeout."""
    root = backend.destination.key(server_name)
    started = time.monotonic()
    wanted = [SegmentName.parse(s, segment_size) for s in segments]
    while True:
        archive, backups, histories = read_server_archive(backend.store, root, server_name, segment_size)
        if all(s.number in archive.segments(s.timeline) for s in wanted) or time.monotonic() - started > timeout:
            return archive, backups, histories, time.monotonic() - started
        time.sleep(0.25)


def _detector(name: str, findings: list[Finding], summary: str, seconds: float = 0.0) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN, summary,
                           findings, seconds)


def _new_result(plan: NodeDrillPlan, config: Config, backend: Backend, kind: str) -> DrillResult:
    return DrillResult(
        drill=plan.name,
        scenario={"name": plan.name, "kind": f"python:{kind}", "tier": plan.tier, "description": plan.description,
                  "expect": asdict(plan.expect), "plan": asdict(plan)},
        backend={"name": backend.name, "pgdrill": __version__, "user": getpass.getuser(),
                 "host": socket.gethostname()},
        started_at=_iso(_now()),
        targets={"rpo_s": config.targets.rpo_seconds, "rto_s": config.targets.rto_seconds},
    )


def _not_supported(result: DrillResult, backend: Backend) -> DrillResult:
    result.verdict = Verdict.NOT_RUN
    result.verdict_reasons = [f"backend {backend.name!r} does not implement FailoverBackend "
                              "(create_replica, kill_primary, promote, restart_after_crash)"]
    result.finished_at = _iso(_now())
    return result


@dataclass
class _Prepared:
    primary: ClusterHandle
    workload: Workload
    ledger: Ledger
    backup_id: str
    segment_size: int


def _prepare(backend: FailoverBackend, config: Config, plan: NodeDrillPlan, result: DrillResult,
             step: Steps, state_dir: Path, fixtures_dir: Path) -> _Prepared:
    state_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(state_dir / "ledger.jsonl")
    segment_size = config.archive.segment_size_mb * 1024 * 1024
    result.backend["versions"] = backend.versions()
    fixture = load_fixture(plan.fixture, fixtures_dir)
    with step("provision primary with WAL archiving"):
        primary = backend.create_source(config.source.cluster_name)
    result.source = {"cluster": primary.name, "server_name": primary.server_name,
                     "destination": backend.destination.url, "wal_compression": config.archive.wal_compression,
                     "segment_size": segment_size, **primary.details}
    workload = Workload(backend, primary, fixture, ledger)
    with step(f"seed {fixture.database} and write {plan.baseline_rows} baseline rows"):
        workload.seed()
        workload.write(plan.baseline_rows, "baseline")
    with step("base backup (barman-cloud-backup)"):
        backup_id = backend.take_backup(primary)
        result.backups.append({"backup_id": backup_id, "taken_at": _iso(_now())})
    return _Prepared(primary, workload, ledger, backup_id, segment_size)


def _load_and_kill(backend: FailoverBackend, plan: NodeDrillPlan, prep: _Prepared, step: Steps,
                   result: DrillResult, kind: str) -> Disaster:
    """Steady load, optional archiver backlog, SIGKILL.  The disaster is declared right before
    the SIGKILL; the kill call's own wait and stopping the load thread are harness time."""
    primary = prep.primary
    load = SteadyLoad(prep.workload, plan.load_interval_seconds)
    with step(f"steady write load for {plan.load_seconds:.0f}s"):
        load.start()
        time.sleep(plan.load_seconds)
    backlog: list[str] = []
    if plan.backlog_segments:
        with step(f"close {plan.backlog_segments} segment(s) without waiting for the archiver"):
            for _ in range(plan.backlog_segments):
                time.sleep(0.05)  # let the load commit a row or two into each segment
                backlog.append(_switch_segment(backend, primary))
    evidence: dict[str, Any] = {"archiver_before_kill": _stat_archiver(backend, primary),
                                "backlog_segments": backlog}
    try:
        evidence["replication_before_kill"] = [
            dict(zip(("application_name", "state", "sent_lsn", "write_lsn", "flush_lsn", "replay_lsn",
                      "sync_state"), (str(v) if v is not None else None for v in row)))
            for row in backend.sql(primary, "SELECT application_name, state, sent_lsn, write_lsn, flush_lsn, "
                                            "replay_lsn, sync_state FROM pg_stat_replication")]
        evidence["insert_lsn_before_kill"] = backend.sql(primary, "SELECT pg_current_wal_insert_lsn()::text")[0][0]
    except Exception as exc:
        evidence["replication_before_kill"] = f"could not read: {exc}"
    if load.exception is not None:
        raise load.exception
    if not load.is_alive() or load.written == 0:
        # A load that died early (a connection blip) would let the drill kill an idle primary.
        raise CouldNotVerify(f"the write load stopped before the kill ({load.stopped_by or 'no write committed'})")
    with step("disaster: SIGKILL the primary's postmaster"):
        # The kill lands under load: the write in flight is in doubt, a write started after it fails.
        disaster = Disaster(RtoClock(kind, time.monotonic(), now_iso()), 0)  # type: ignore[arg-type]
        backend.kill_primary(primary)
        disaster.clock.exclude("kill", time.monotonic())
        load.stop.set()
        load.join(timeout=30)
        disaster.clock.exclude("stop_load", time.monotonic())
    if load.is_alive():
        raise CouldNotVerify("the write load did not stop within 30 s of the kill")
    if load.exception is not None:
        raise load.exception
    # Owed: every write acknowledged before the kill, and any acknowledgement an orphaned backend
    # still sent after it (the client was told it committed).  The load is stopped: nothing later.
    disaster.bound_seq = prep.ledger.acked_through()
    evidence["load"] = {"rows_committed": load.written, "stopped_by": load.stopped_by,
                        "acknowledged_through_seq": disaster.bound_seq,
                        "in_doubt": [e.seq for e in prep.ledger.in_doubt]}
    result.faults.append({"kind": "kill_primary", "signal": "SIGKILL", "cluster": primary.name,
                          "at": disaster.clock.declared_at, "evidence": evidence})
    result.disaster_declared_at = disaster.clock.declared_at
    return disaster


def _archiving_after(backend: Backend, plan: NodeDrillPlan, prep: _Prepared, new_primary: ClusterHandle,
                     context: str, step: Steps, result: DrillResult) -> None:
    """Write, switch each row into its own segment, then judge the bucket."""
    if plan.archive_to_nowhere_after_event:
        with step(f"fault: archive_command on {new_primary.name} succeeds without uploading"):
            backend.sql(new_primary, "ALTER SYSTEM SET archive_command = '/bin/true'")
            backend.sql(new_primary, "SELECT pg_reload_conf()")
            result.faults.append({"kind": "archive_to_nowhere", "cluster": new_primary.name, "at": _iso(_now()),
                                  "evidence": {"archive_command": "/bin/true"}})
    with step(f"write {plan.rows_after_event} rows on {new_primary.name}, one segment each"):
        switched = []
        for _ in range(plan.rows_after_event):
            prep.workload.write(1, f"after_{context}")
            switched.append(_switch_segment(backend, new_primary))
    with step("wait for those segments in the bucket"):
        started = time.monotonic()
        archive, backups, histories, waited = _wait_in_bucket(
            backend, new_primary.server_name, switched, prep.segment_size, plan.archive_wait_seconds)
        backup = next((b for b in backups if b.backup_id == prep.backup_id), None)
        if backup is None or backup.begin_wal is None:
            result.add_detector(DetectorOutcome(
                f"archive_after_{context}", DetectorStatus.COULD_NOT_VERIFY,
                f"base backup {prep.backup_id} has no backup.info with a begin WAL in the bucket",
                [Finding("COULD_NOT_VERIFY", f"backup {prep.backup_id} not readable", f"archive_after_{context}")]))
            return
        timeline = SegmentName.parse(switched[-1], prep.segment_size).timeline
        before = next((f["evidence"].get("archiver_before_kill", {}) for f in result.faults
                       if f.get("kind") == "kill_primary"), {})
        assessment = assess_archive_resumption(archive, histories, backup.begin_wal, timeline, switched,
                                               context,  # type: ignore[arg-type]
                                               archived_before_event=before.get("last_archived_wal"))
        # pg_stat_archiver is evidence only: the verdict above comes from the bucket listing.
        assessment.summary["pg_stat_archiver"] = _stat_archiver(backend, new_primary)
        assessment.summary["waited_s"] = round(waited, 3)
        result.archive = assessment.summary
        result.add_detector(assessment.outcome(time.monotonic() - started))


def run_failover_drill(backend: Backend, config: Config, plan: NodeDrillPlan, state_dir: Path,
                       fixtures_dir: Path, progress: Callable[[str], None] | None = None) -> DrillResult:
    result = _new_result(plan, config, backend, "failover")
    if not isinstance(backend, FailoverBackend):
        return _not_supported(result, backend)
    step = Steps(result, progress)
    required = ["failover", "rpo", "rto", "archive_after_failover"] + (["ledger"] if plan.recover_from_s3 else [])
    measures: list[PathMeasure] = []
    with guard(result):
        prep = _prepare(backend, config, plan, result, step, state_dir, fixtures_dir)
        primary, workload, ledger = prep.primary, prep.workload, prep.ledger
        try:
            with step("streaming replica (pg_basebackup, slot, same serverName)"):
                replica = backend.create_replica(primary, f"{primary.name}-replica")
            result.source["replica"] = replica.details
            disaster = _load_and_kill(backend, plan, prep, step, result, "failover")
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
                result.add_detector(_detector("failover", [Finding(
                    RECOVERY_FAILED, f"{replica.name} did not promote: "
                    + (promotion.fatal_lines[-1] if promotion.fatal_lines else "no error logged"), "failover",
                    evidence=result.recovery["failover"])], "replica did not promote"))
                raise _Stop()
            with step(f"first write on {replica.name} (end of failover RTO)"):
                workload.cluster = replica  # same ledger and id sequence: no id is ever reused
                workload.write(1, "after_failover")
                clock.mark("first_write", workload.last_ack_monotonic or time.monotonic())
                clock.exclude("ledger", time.monotonic())
            result.add_detector(_detector("failover", [], f"{replica.name} promoted to timeline {promotion.timeline} "
                                          f"and committed a write {clock.total:.2f}s after the kill (RTO)"))
            with step("measure commits lost at failover (ledger vs new primary)"):
                check, failover = check_ledger(backend, replica, ledger, workload.fixture, "failover", "failover",
                                               disaster.bound_seq, disaster_at=clock.declared_at)
                if failover is None:
                    result.add_detector(check.outcome)
                    raise _Stop()
                failover.rto = clock.to_dict()
                measures.append(failover)
                result.add_detector(_detector("rpo", failover_loss_findings(failover, config.targets.rpo_seconds),
                                              f"failover: {failover.lost_writes} acknowledged commit(s) lost, "
                                              f"RPO {failover.rpo_seconds or 0:.3f}s"))
                result.add_detector(_detector("rto", rto_findings("failover", failover.rto,
                                                                  _rto_bound(plan, config)),
                                              f"failover {clock.total:.2f}s"))
            _archiving_after(backend, plan, prep, replica, "failover", step, result)
            if plan.recover_from_s3:
                s3 = _recover_from_archive(backend, config, plan, prep, replica, step, result, failover)
                if s3 is not None:
                    measures.append(s3)
        except _Stop:
            pass
        finally:
            workload.close()
        result.ledger.update({"committed": len(ledger), "in_doubt": len(ledger.in_doubt)})
        result.set_measures(measures)
        result.verdict, result.verdict_reasons = judge(plan.expect, result, _rto_bound(plan, config), required)
    result.finished_at = _iso(_now())
    return result


def _rto_bound(plan: NodeDrillPlan, config: Config) -> float:
    return plan.expect.max_rto_seconds if plan.expect.max_rto_seconds is not None else config.targets.rto_seconds


class _Stop(Exception):
    """The drill cannot go on (e.g. nothing promoted); judge what was found so far."""


def _recover_from_archive(backend: Backend, config: Config, plan: NodeDrillPlan, prep: _Prepared,
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
        result.add_detector(_detector("ledger", [Finding(
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
        result.add_detector(_detector("rpo", rpo_findings(measure, config.targets.rpo_seconds),
                                      f"s3_recovery: {measure.lost_writes} acknowledged "
                                      f"write(s) lost, RPO {measure.rpo_seconds or 0:.3f}s"))
        result.add_detector(_detector("rto", rto_findings("s3_recovery", measure.rto, _rto_bound(plan, config)),
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
    result = _new_result(plan, config, backend, "crash")
    if not isinstance(backend, FailoverBackend):
        return _not_supported(result, backend)
    step = Steps(result, progress)
    required = ["restart", "ledger", "rto", "archive_after_restart"]
    measures: list[PathMeasure] = []
    with guard(result):
        prep = _prepare(backend, config, plan, result, step, state_dir, fixtures_dir)
        primary, workload, ledger = prep.primary, prep.workload, prep.ledger
        try:
            sync = backend.sql(primary, "SHOW synchronous_commit")[0][0]
            result.source["synchronous_commit"] = sync
            disaster = _load_and_kill(backend, plan, prep, step, result, "crash")
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
                result.add_detector(_detector("restart", [Finding(
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
            result.add_detector(_detector("restart", [], f"{primary.name} open after crash recovery "
                                          f"({restart.phases.get('crash_recovery', 0.0):.2f}s)"))
            if measure is not None:
                measure.rto = clock.to_dict()
                measures.append(measure)
                result.add_detector(_detector("rpo", rpo_findings(measure, config.targets.rpo_seconds),
                                              f"crash_restart: {measure.lost_writes} acknowledged commit(s) lost"))
                result.ledger = {k: v for k, v in check.summary.items() if k != "owners"}
            result.add_detector(_detector("rto", rto_findings("crash_restart", clock.to_dict(),
                                                              _rto_bound(plan, config)),
                                          f"crash recovery {clock.total:.2f}s"))
            _archiving_after(backend, plan, prep, primary, "restart", step, result)
        except _Stop:
            pass
        finally:
            workload.close()
        result.ledger.update({"committed": len(ledger), "in_doubt": len(ledger.in_doubt)})
        result.set_measures(measures)
        result.verdict, result.verdict_reasons = judge(plan.expect, result, _rto_bound(plan, config), required)
    result.finished_at = _iso(_now())
    return result


#: The drills shipped in drills/test_failover.py (and timed by bench/bench_failover.py).
#: Lost-write counts under a concurrent load depend on timing, so their expectations are ranges.
FAILOVER = NodeDrillPlan(
    name="primary-kill-failover", tier="smoke",
    description="SIGKILL the primary under a steady write load, promote the async streaming replica; "
                "archiving must resume on timeline 2 under the same serverName with no gap",
    # Asynchronous replication may lose the newest commits at the kill (measured, a warning);
    # the archive must then lose nothing more (SILENT_DATA_LOSS otherwise).
    expect=Expectation("complete", paths={"failover": PathExpectation(lost_writes=[0, 50]),
                                          "s3_recovery": PathExpectation(lost_writes=[0, 50])}))
FAILOVER_ARCHIVER_BACKLOG = NodeDrillPlan(
    name="primary-kill-failover-archiver-backlog", tier="full", backlog_segments=3,
    description="as primary-kill-failover, but the kill hits while the archiver is behind: the segments the "
                "old primary never uploaded are lost for good and pgdrill must say so",
    expect=Expectation("loss_detected", findings=["WAL_GAP", "UNARCHIVED_WAL_LOST_AT_FAILOVER", "SILENT_DATA_LOSS"],
                       allowed=["REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED", "WAL_SEGMENT_UNREADABLE"],
                       lost_writes=[1, 100000], rpo_seconds=[0.0, 120.0],
                       paths={"failover": PathExpectation(lost_writes=[0, 50]),
                              "s3_recovery": PathExpectation(lost_writes=[1, 100000], rpo_seconds=[0.0, 120.0])}))
CRASH_RESTART = NodeDrillPlan(
    name="primary-kill-crash-recovery", tier="smoke", backlog_segments=2, recover_from_s3=False,
    description="SIGKILL the primary (no replica) while the archiver is behind, restart it on its data "
                "directory: every acknowledged commit survives, the backlog and later WAL reach the bucket",
    expect=Expectation("complete", lost_writes=0, rpo_seconds=[0.0, 0.0]))
FAILOVER_ARCHIVING_STALLED = NodeDrillPlan(
    name="primary-kill-failover-archiving-stalled", tier="full", archive_to_nowhere_after_event=True,
    archive_wait_seconds=15.0,
    description="negative control: after the failover the new primary's archive_command reports success "
                "but uploads nothing (pg_stat_archiver looks healthy); pgdrill must report archiving stalled, "
                "and a restore from the archive loses every write since",
    expect=Expectation("loss_detected", findings=["ARCHIVING_STALLED_AFTER_FAILOVER", "SILENT_DATA_LOSS"],
                       allowed=["TIMELINE_HISTORY_MISSING", "RECOVERY_TARGET_UNREACHED", "REPLAY_STOPPED_EARLY"],
                       lost_writes=[4, 100000], rpo_seconds=[0.0, 120.0],
                       paths={"failover": PathExpectation(lost_writes=[0, 50])}))
