"""The steps node-level drills share: prepare a primary, load it, kill it, watch archiving resume.

The write load is a thread on the ledger writer; archiving is judged from the bucket listing.
"""

from __future__ import annotations

import getpass
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgdrill import __version__
from pgdrill.archive.catalog import read_server_archive
from pgdrill.backends.base import Backend, ClusterHandle, FailoverBackend
from pgdrill.config import Config
from pgdrill.detectors.failover import assess_archive_resumption
from pgdrill.drill.context import Disaster, Steps, now_iso
from pgdrill.drill.measures import RtoClock
from pgdrill.drill.node_plans import NodeDrillPlan
from pgdrill.errors import CouldNotVerify, PgdrillError
from pgdrill.findings import Finding
from pgdrill.postgres.wal import SegmentName
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from pgdrill.workload.fixture import Fixture, load_fixture
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload, WriteInDoubt


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(at: datetime) -> str:
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


def ids(backend: Backend, cluster: ClusterHandle, fixture: Fixture, tables: list[str]) -> dict[str, set[int]]:
    return {t: {int(r[0]) for r in backend.sql(cluster, f'SELECT id FROM "{t}"', dbname=fixture.database)}
            for t in tables}


def stat_archiver(backend: Backend, cluster: ClusterHandle) -> dict[str, Any]:
    try:
        row = backend.sql(cluster, "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal "
                                   "FROM pg_stat_archiver")[0]
    except PgdrillError as exc:
        return {"error": str(exc)}
    return dict(zip(("archived_count", "last_archived_wal", "failed_count", "last_failed_wal"), row))


def switch_segment(backend: Backend, cluster: ClusterHandle) -> str:
    """End the current segment (not waiting for the archiver); returns its name."""
    name = backend.sql(cluster, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
    backend.sql(cluster, "SELECT pg_switch_wal()")
    return str(name)


def wait_in_bucket(backend: Backend, server_name: str, segments: list[str], segment_size: int,
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


def detector(name: str, findings: list[Finding], summary: str, seconds: float = 0.0) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN, summary,
                           findings, seconds)


def new_result(plan: NodeDrillPlan, config: Config, backend: Backend, kind: str) -> DrillResult:
    return DrillResult(
        drill=plan.name,
        scenario={"name": plan.name, "kind": f"python:{kind}", "tier": plan.tier, "description": plan.description,
                  "expect": asdict(plan.expect), "plan": asdict(plan)},
        backend={"name": backend.name, "pgdrill": __version__, "user": getpass.getuser(),
                 "host": socket.gethostname()},
        started_at=iso(now()),
        targets={"rpo_s": config.targets.rpo_seconds, "rto_s": config.targets.rto_seconds},
    )


def not_supported(result: DrillResult, backend: Backend) -> DrillResult:
    result.verdict = Verdict.NOT_RUN
    result.verdict_reasons = [f"backend {backend.name!r} does not implement FailoverBackend "
                              "(create_replica, kill_primary, promote, restart_after_crash)"]
    result.finished_at = iso(now())
    return result


@dataclass
class Prepared:
    primary: ClusterHandle
    workload: Workload
    ledger: Ledger
    backup_id: str
    segment_size: int


def prepare(backend: FailoverBackend, config: Config, plan: NodeDrillPlan, result: DrillResult,
             step: Steps, state_dir: Path, fixtures_dir: Path) -> Prepared:
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
        result.backups.append({"backup_id": backup_id, "taken_at": iso(now())})
    return Prepared(primary, workload, ledger, backup_id, segment_size)


def load_and_kill(backend: FailoverBackend, plan: NodeDrillPlan, prep: Prepared, step: Steps,
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
                backlog.append(switch_segment(backend, primary))
    evidence: dict[str, Any] = {"archiver_before_kill": stat_archiver(backend, primary),
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


def archiving_after(backend: Backend, plan: NodeDrillPlan, prep: Prepared, new_primary: ClusterHandle,
                     context: str, step: Steps, result: DrillResult) -> None:
    """Write, switch each row into its own segment, then judge the bucket."""
    if plan.archive_to_nowhere_after_event:
        with step(f"fault: archive_command on {new_primary.name} succeeds without uploading"):
            backend.sql(new_primary, "ALTER SYSTEM SET archive_command = '/bin/true'")
            backend.sql(new_primary, "SELECT pg_reload_conf()")
            result.faults.append({"kind": "archive_to_nowhere", "cluster": new_primary.name, "at": iso(now()),
                                  "evidence": {"archive_command": "/bin/true"}})
    with step(f"write {plan.rows_after_event} rows on {new_primary.name}, one segment each"):
        switched = []
        for _ in range(plan.rows_after_event):
            prep.workload.write(1, f"after_{context}")
            switched.append(switch_segment(backend, new_primary))
    with step("wait for those segments in the bucket"):
        started = time.monotonic()
        archive, backups, histories, waited = wait_in_bucket(
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
        assessment.summary["pg_stat_archiver"] = stat_archiver(backend, new_primary)
        assessment.summary["waited_s"] = round(waited, 3)
        result.archive = assessment.summary
        result.add_detector(assessment.outcome(time.monotonic() - started))
