"""``run_restore_test``: list the source once, plan, restore (falling back to the previous backup
when the newest cannot be restored), prove the end was reached, check the data, forecast the RTO.

Order matters for the numbers: the RTO clock runs from the first listing to the first write on
the restored cluster (phases ``preflight``, ``fallback`` when an attempt failed, ``restore``,
``replay_to_consistency``, ``replay_to_end``, ``promote``, ``first_write``; docs/restore-test.md);
every check runs after it, so checks never inflate the RTO.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pgdrill.archive.catalog import ArchiveCatalog, read_catalog
from pgdrill.archive.store import ObjectStore
from pgdrill.audit.analyze import analyze
from pgdrill.audit.report import AuditReport
from pgdrill.config import Config
from pgdrill.detectors.physical import check_physical
from pgdrill.errors import S3Error, UsageError
from pgdrill.findings import Finding
from pgdrill.findings.codes import BACKUP_UNUSABLE, RECOVERY_FAILED
from pgdrill.postgres.wal import Lsn
from pgdrill.restoretest.checks import (
    backup_unusable,
    check_owners,
    end_of_archive,
    run_user_checks,
    target_outcome,
)
from pgdrill.restoretest.pgbin import choose_binaries
from pgdrill.restoretest.plan import Candidate, RestorePlan, plan_restore
from pgdrill.restoretest.recover import Attempt, restore_backup, target_settings
from pgdrill.restoretest.result import build_result
from pgdrill.restoretest.spec import RestoreTestSpec
from pgdrill.restoretest.workspace import RestoreWorkspace
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"restore-test: {message}", file=sys.stderr, flush=True)


def read_source(spec: RestoreTestSpec, config: Config, now: datetime) -> tuple[ArchiveCatalog, AuditReport]:
    """One listing of the source (list + get of metadata only) and the audit's analysis of it."""
    location = spec.source
    store = ObjectStore(spec.endpoint_url, spec.credentials(), location.bucket)
    try:
        catalog = read_catalog(store, location.prefix + "/", spec.server_name)
    except S3Error as exc:
        raise UsageError(f"cannot list {spec.location}: {exc}") from None
    if not catalog.objects_listed:
        raise UsageError(f"nothing under {spec.location}: check the bucket, the prefix and the serverName")
    report = analyze(catalog, config.audit, now, location=spec.location, endpoint_url=spec.endpoint_url)
    return catalog, report


def run_restore_test(spec: RestoreTestSpec, config: Config, run_id: str, keep: bool = False,
                     progress: Progress = _stderr) -> DrillResult:
    """Raises ``UsageError`` (one line) for bad input found before anything is downloaded."""
    started_at = datetime.now(timezone.utc)
    clock = time.monotonic()
    spec.check_input()
    progress(f"listing {spec.location}")
    catalog, report = read_source(spec, config, started_at)
    plan = plan_restore(catalog, report, spec)
    first = plan.candidates[0]
    bin_dir, major = choose_binaries(first.pg_major, config.local.pg_bin_dir)
    _check_disk(config, first)
    preflight = time.monotonic() - clock
    location = spec.source
    ws = RestoreWorkspace(config, run_id, f"s3://{location.bucket}/{location.prefix.rsplit('/', 1)[0]}"
                          if "/" in location.prefix else f"s3://{location.bucket}", spec.endpoint_url,
                          spec.credentials(), bin_dir, keep, spec.wal_max_parallel, catalog.archive.segment_size)
    try:
        return _restore(spec, config, ws, catalog, report, plan, preflight, started_at, major, progress)
    finally:
        ws.close()


def _restore(spec: RestoreTestSpec, config: Config, ws: RestoreWorkspace, catalog: ArchiveCatalog,
             report: AuditReport, plan: RestorePlan, preflight: float, started_at: datetime, major: int,
             progress: Progress) -> DrillResult:
    server = spec.server_name
    restore_command = ws.barman.restore_command(server)
    recovery = {"recovery_target_action": "promote",
                **target_settings(plan.target_lsn, _pg_time(plan.target_time), plan.target_name)}
    timeout = spec_timeout(config)
    findings: list[Finding] = [_skipped_finding(s) for s in plan.skipped if s.unusable]
    failed: list[dict[str, Any]] = []
    wasted = 0.0
    attempt: Attempt | None = None
    for index, candidate in enumerate(plan.candidates):
        progress(f"restoring {candidate.backup.backup_id} ({candidate.audit.stored_bytes / 1e6:.1f} MB stored, "
                 f"{candidate.wal_segments} WAL segment(s) to the end of the archive)")
        began = time.monotonic()
        attempt = restore_backup(ws, candidate, server, f"{server}-restore-{index + 1}", recovery, timeout,
                                 restore_command)
        if attempt.failed is None:
            break
        wasted += time.monotonic() - began
        failed.append({"backup_id": candidate.backup.backup_id, "failed": attempt.failed,
                       "seconds": round(time.monotonic() - began, 3)})
        progress(f"{candidate.backup.backup_id} could not be restored ({attempt.failed})")
        if plan.pitr:  # a target PostgreSQL refuses is the target's problem, not the backup's
            break
        findings.append(backup_unusable(candidate.backup.backup_id, attempt.failed, attempt.outcome.fatal_lines,
                                        wasted, index + 1 < len(plan.candidates)))
        ws.discard(attempt.instance, force=True)
        attempt = None
    detectors: list[DetectorOutcome] = []
    extra: dict[str, Any] = {"failed_attempts": failed, "pg_major": major}
    if attempt is None or attempt.failed is not None:
        why = failed[-1]["failed"] if failed else "no backup could be tried"
        findings.append(Finding(RECOVERY_FAILED, f"no backup of {spec.location} could be recovered: {why}", "restore",
                                evidence={"attempts": failed}))
        return build_result(spec, catalog, report, plan, None, findings, detectors, preflight, wasted, started_at,
                            extra, ws, config)
    progress("recovered and promoted; checking where the recovery ended and the restored data")
    candidate = attempt.candidate
    if not plan.pitr:
        detectors.append(end_of_archive(candidate, attempt.outcome, catalog.archive.segment_size))
    tools = ws.integrity_tools()
    detectors.append(check_physical(tools, attempt.handle).outcome)
    connect = lambda dbname: tools.connect(attempt.handle, dbname)  # noqa: E731
    detectors.append(check_owners(connect, spec.owners))
    user, rows = run_user_checks(connect, spec.checks, _end_time(catalog, candidate))
    detectors.append(user)
    extra["user_checks"] = rows
    ws.discard(attempt.instance)  # unless --keep: then it stays up for inspection
    if not plan.pitr and spec.target_check:
        detectors.append(_target_check(ws, candidate, server, timeout, restore_command, progress))
    return build_result(spec, catalog, report, plan, attempt, findings, detectors, preflight, wasted, started_at,
                        extra, ws, config)


def _target_check(ws: RestoreWorkspace, candidate: Candidate, server: str, timeout: float, restore_command: str,
                  progress: Progress) -> DetectorOutcome:
    from pgdrill.detectors.base import could_not

    end, backup_end = candidate.end_segment, candidate.backup.end_wal
    if end is None or backup_end is None or (end.timeline, end.number) <= (backup_end.timeline, backup_end.number):
        return DetectorOutcome("target", DetectorStatus.NOT_APPLICABLE, "the archive ends at the backup's end "
                               "WAL: the end-of-archive check is the whole proof", [], 0.0)
    target = Lsn(end.number * end.segment_size)
    progress(f"target check: a second restore, to {target} inside {end.name}")
    began = time.monotonic()
    try:
        attempt = restore_backup(ws, candidate, server, f"{server}-target", {
            **target_settings(target, None, None), "recovery_target_action": "shutdown",
            "recovery_target_inclusive": "on"}, timeout, restore_command)
    except Exception as exc:
        return could_not("target", f"the target recovery could not run: {exc}", began)
    stopped = not attempt.instance.alive()
    outcome = target_outcome(candidate, str(target), attempt.log or attempt.instance.log_lines(), stopped)
    outcome.seconds = time.monotonic() - began
    ws.discard(attempt.instance, force=True)
    return outcome


def spec_timeout(config: Config) -> float:
    # Real archives take longer than drills: an hour per attempt unless configured higher.
    return max(config.local.startup_timeout_seconds, 3600.0)


def _skipped_finding(skipped: Any) -> Finding:
    return Finding(BACKUP_UNUSABLE, f"{skipped.reason}: a disaster would reach for it first and fail",
                   "restore", evidence={"backup_id": skipped.audit.backup_id, "grade": skipped.audit.grade,
                                        "first_missing": skipped.audit.first_missing})


def _end_time(catalog: ArchiveCatalog, candidate: Candidate) -> datetime | None:
    end = candidate.end_segment
    if end is None:
        return None
    wal = catalog.archive.segments(end.timeline).get(end.number)
    return wal.last_modified if wal else None


def _pg_time(text: str | None) -> str | None:
    if text is None:
        return None
    from pgdrill.audit.formatting import parse_time

    when = parse_time(text)
    return when.isoformat() if when else text


def _check_disk(config: Config, candidate: Candidate) -> None:
    import tempfile

    parent = Path(config.local.workdir or tempfile.gettempdir())
    # The restored PGDATA, plus WAL PostgreSQL keeps in pg_wal while it replays.
    need = (candidate.audit.cluster_bytes or candidate.audit.stored_bytes) + 64 * (16 << 20)
    free = shutil.disk_usage(parent).free
    if free < need * 1.1:
        raise UsageError(f"not enough free disk in {parent} for {candidate.backup.backup_id}: need about "
                         f"{need / 1e9:.2f} GB, {free / 1e9:.2f} GB free; set local.workdir to a bigger disk")
