"""The scenario runner: provision, seed, back up, write, break, recover, verify, judge.

Backend-independent: it only uses the ``Backend`` protocol, so a scenario runs unchanged on the
local backend and on Kubernetes."""

from __future__ import annotations

import time

from pgdrill.backends.base import KeepInfo, RecoveryTarget
from pgdrill.detectors.audit_view import audit_archive
from pgdrill.detectors.integrity import record_digests
from pgdrill.drill.context import (
    Disaster,
    DrillContext,
    Steps,
    drill_result,
    guard,
    now_iso,
)
from pgdrill.drill.judge import judge
from pgdrill.drill.recovery import recover_and_verify
from pgdrill.drill.spec import Scenario
from pgdrill.faults.base import FaultContext
from pgdrill.faults.registry import inject
from pgdrill.results import DrillResult
from pgdrill.workload.fixture import load_fixture
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload


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
    if ctx.keep and isinstance(backend, KeepInfo):
        result.keep = backend.keep_info()
    return result


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
