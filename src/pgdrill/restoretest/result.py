"""A restore-test as a drill result (one record for results.json, HTML, JUnit, history and
metrics), judged by the one judge (``pgdrill.drill.judge.judge_restore_test``)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgdrill.archive.catalog import ArchiveCatalog
from pgdrill.audit.report import AuditReport
from pgdrill.config import Config
from pgdrill.drill.context import now_iso
from pgdrill.drill.judge import judge_restore_test
from pgdrill.findings import Finding
from pgdrill.restoretest.forecast import rto_forecast
from pgdrill.restoretest.plan import RestorePlan
from pgdrill.restoretest.spec import RestoreTestSpec
from pgdrill.results import DetectorOutcome, DrillResult, Timing

if TYPE_CHECKING:
    from pgdrill.restoretest.recover import Attempt
    from pgdrill.restoretest.workspace import RestoreWorkspace

PHASES = ("preflight", "fallback", "restore", "replay_to_consistency", "replay_to_end", "promote", "first_write")


def build_result(spec: RestoreTestSpec, catalog: ArchiveCatalog, report: AuditReport, plan: RestorePlan,
                 attempt: Attempt | None, findings: list[Finding], detectors: list[DetectorOutcome],
                 preflight: float, wasted: float, started_at: datetime, extra: dict[str, Any],
                 ws: RestoreWorkspace, config: Config) -> DrillResult:
    sizes = {w.name.segment.name if w.name.segment else w.key.rsplit("/", 1)[-1]: w.size
             for w in catalog.archive.wal}
    result = DrillResult(drill=spec.display_name, scenario=spec.to_dict(),
                         backend={"name": "local", "pg_bin_dir": str(ws.bin_dir), "pg_major": extra.get("pg_major")},
                         started_at=started_at.isoformat(timespec="milliseconds"),
                         targets={"rto_seconds": _bound(spec, config)})
    result.source = {"location": spec.location, "server_name": spec.server_name,
                     "segment_size": catalog.archive.segment_size, "objects_listed": catalog.objects_listed}
    result.backups = [c.to_dict() for c in plan.candidates]
    result.audit = {"status": report.status, "finding_codes": sorted(report.codes()),
                    "recoverability": report.recoverability.to_dict() if report.recoverability else None}
    result.findings.extend(findings)
    for detector in detectors:
        result.add_detector(detector)
    recovery: dict[str, Any] = {"skipped_backups": [{"backup_id": s.audit.backup_id, "reason": s.reason,
                                                     "unusable": s.unusable} for s in plan.skipped],
                                **extra}
    if attempt is not None and attempt.failed is None:
        outcome = attempt.outcome
        phases = {"preflight": preflight, **({"fallback": wasted} if wasted else {}),
                  "restore": attempt.restore_seconds, **outcome.phases}
        phases = {k: phases[k] for k in PHASES if k in phases}
        total = sum(phases.values())
        wal = attempt.wal_fetched(sizes)
        newest = plan.candidates[0]
        interval = worst_interval_wal_segments(catalog, newest, started_at, config.audit.retention_days)
        forecast = rto_forecast(phases, attempt.candidate.audit.stored_bytes, wal["segments"],
                                newest.audit.stored_bytes, interval, spec.wal_max_parallel)
        recovery.update({
            "backup_id": attempt.candidate.backup.backup_id, "promoted": True, "timeline": outcome.timeline,
            "fork_lsn": str(outcome.fork_lsn) if outcome.fork_lsn else None,
            "restored_segments": outcome.restored_segments, "restore": attempt.restore_figures(),
            "wal_fetched": wal, "wal_max_parallel": spec.wal_max_parallel, "rto_forecast": forecast,
            "wal_fetch": outcome.wal_fetch or {"max_parallel": 1},
            "log_excerpt": outcome.log_excerpt[-20:],
        })
        result.rto = Timing(total, phases, {}, "archive", "restore")
        result.measures = [{"path": "restore", "kind": "archive", "expected_writes": None, "present_writes": None,
                            "lost_writes": None, "rpo_seconds": _observed_rpo(extra), "rpo_basis": "user check "
                            "max_age_seconds (the application's newest timestamp vs the end of the archive)"
                            if _observed_rpo(extra) is not None else "no ledger: not measured",
                            "rto": result.rto.to_dict()}]
        result.archive = _timeline_view(catalog, attempt)
    elif attempt is not None:
        recovery.update({"promoted": False, "failed_step": attempt.outcome.failed_step,
                         "fatal_lines": attempt.outcome.fatal_lines[-5:]})
    result.recovery = recovery
    if ws.keep:
        result.keep = ws.keep_info()
    result.finished_at = now_iso()
    result.verdict, result.verdict_reasons = judge_restore_test(result, _bound(spec, config))
    return result


def worst_interval_wal_segments(catalog: ArchiveCatalog, newest: Any, now: datetime,
                                retention_days: float) -> int | None:
    """The WAL segments a recovery from the newest backup replays just before the next one is
    taken: its own (begin to end WAL, replayed to consistency) plus the most segments uploaded
    between two consecutive completed backups (``archive.growth``, the audit's definition), or,
    with one backup only, the segments along its chain."""
    from pgdrill.archive.growth import archive_growth

    growth = archive_growth(catalog, now, retention_days)
    if not growth.intervals:
        # One backup only: its chain, counted by segment number (upload times mislead here: an
        # archiver that lags uploads pre-backup WAL after the backup ended).
        return newest.wal_segments or None
    interval = max(i.wal_segments for i in growth.intervals)
    begin, end = newest.backup.begin_wal, newest.backup.end_wal
    own = 0
    if begin is not None and end is not None and begin.timeline == end.timeline:
        present = catalog.archive.segments(begin.timeline)
        own = sum(1 for n in range(begin.number, end.number + 1) if n in present)
    return interval + own


def _bound(spec: RestoreTestSpec, config: Config) -> float:
    return spec.rto_seconds if spec.rto_seconds is not None else config.targets.rto_seconds


def _observed_rpo(extra: dict[str, Any]) -> float | None:
    ages = [r["age_seconds"] for r in extra.get("user_checks") or [] if r.get("age_seconds") is not None]
    return max(ages) if ages else None


def _timeline_view(catalog: ArchiveCatalog, attempt: Attempt) -> dict[str, Any]:
    """What the report's WAL timeline draws: the chain from the backup's begin WAL to the end."""
    candidate = attempt.candidate
    timelines: dict[str, Any] = {}
    for link in candidate.chain:
        present = catalog.archive.segments(link.timeline)
        timelines[str(link.timeline)] = {"segments": sorted(
            n for n in present if n >= link.first and (link.last is None or n <= link.last))}
    return {"backup_id": candidate.backup.backup_id,
            "begin_wal": candidate.backup.begin_wal.name if candidate.backup.begin_wal else None,
            "end_of_archive": candidate.end_segment.name if candidate.end_segment else None,
            "timelines": timelines,
            "gaps": [{**g.to_dict(), "segments": g.names} for g in candidate.gaps]}
