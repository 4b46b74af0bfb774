"""Recovery verification: three independent detectors, each reported on its own.

1. ``ledger``  — the committed rows vs the rows in the recovered cluster, plus ownership.
2. ``archive`` — WAL continuity in the bucket from the backup's begin WAL, and whether the
   archive holds WAL past the point where the recovered cluster forked off.
3. ``target``  — a second recovery with ``recovery_target_lsn`` = the last ledger LSN, which
   PostgreSQL refuses ("recovery ended before configured recovery target was reached")
   when WAL is missing.

A detector that cannot run says ``could_not_verify``; it never says clean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .archive import find_gaps, read_server_archive, recovery_chain, segments_beyond
from .backends.base import Backend, ClusterHandle, RecoveryOutcome, RecoveryTarget
from .errors import PgdrillError
from .findings import (
    COULD_NOT_VERIFY, OWNERSHIP_MISMATCH, RECOVERY_FAILED, RECOVERY_TARGET_UNREACHED,
    REPLAY_STOPPED_EARLY, SILENT_DATA_LOSS, TARGET_OVERSHOT, WAL_GAP, WAL_SEGMENT_UNREADABLE, Finding,
)
from .ledger import Ledger
from .results import DetectorOutcome, DetectorStatus
from .wal import Lsn
from .workload import Fixture

TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


@dataclass
class LedgerCheck:
    outcome: DetectorOutcome
    recovered: dict[str, set[int]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _could_not(name: str, why: str, started: float, **evidence: Any) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, why,
                           [Finding(COULD_NOT_VERIFY, f"{name}: {why}", name, evidence=evidence)],
                           time.monotonic() - started)


def check_ledger(backend: Backend, recovery: RecoveryOutcome, ledger: Ledger, fixture: Fixture,
                 target_index: int | None = None) -> LedgerCheck:
    """``target_index``: for point-in-time recovery, the index in ``ledger.entries`` of the last
    write the target includes; every later write must be absent (two-sided boundary)."""
    started = time.monotonic()
    # Row presence is about inserts; lost updates are the content digest's job.
    inserts = ledger.entries if target_index is None else ledger.entries[: target_index + 1]
    expected_entries = [e for e in inserts if e.op == "insert"]
    after_target = [] if target_index is None else [e for e in ledger.entries[target_index + 1:] if e.op == "insert"]
    if not recovery.promoted or recovery.cluster is None:
        return LedgerCheck(_could_not("ledger", "the recovered cluster never came up, so no row could be read",
                                      started))
    cluster = recovery.cluster
    recovered: dict[str, set[int]] = {}
    findings: list[Finding] = []
    missing: dict[str, list[int]] = {}
    try:
        for table in ledger.tables():
            rows = backend.sql(cluster, f'SELECT id FROM "{table}"', dbname=fixture.database)
            recovered[table] = {int(r[0]) for r in rows}
            gone = sorted({e.row_id for e in expected_entries if e.table == table} - recovered[table])
            if gone:
                missing[table] = gone
        owners = dict(backend.sql(cluster, "SELECT tablename::text, tableowner::text FROM pg_tables "
                                           "WHERE schemaname = 'public'", dbname=fixture.database))
    except PgdrillError as exc:
        return LedgerCheck(_could_not("ledger", f"could not read the recovered rows: {exc}", started))
    except Exception as exc:  # a database error is evidence of a broken recovery, but not a verdict on rows
        return LedgerCheck(_could_not("ledger", f"could not read the recovered rows: {type(exc).__name__}: {exc}",
                                      started))
    committed = len(expected_entries)
    recovered_count = sum(1 for e in expected_entries if e.row_id in recovered.get(e.table, set()))
    overshot = [e for e in after_target if e.row_id in recovered.get(e.table, set())]
    if overshot:
        findings.append(Finding(
            TARGET_OVERSHOT, f"{len(overshot)} write(s) committed after the recovery target are present: "
            + ", ".join(f"{e.table} id {e.row_id}" for e in overshot), "ledger",
            evidence={"rows": [{"table": e.table, "row_id": e.row_id, "lsn": e.lsn, "committed_at": e.committed_at}
                               for e in overshot]}))
    if missing:
        lost_entries = [e for e in expected_entries if e.row_id in set(missing.get(e.table, []))]
        findings.append(Finding(
            SILENT_DATA_LOSS,
            f"recovery promoted and accepted writes, yet {committed - recovered_count} of {committed} committed rows "
            f"are missing: " + "; ".join(f"{t} ids {_ranges(ids)}" for t, ids in missing.items()),
            "ledger",
            evidence={"missing": missing,
                      "missing_rows": [{"table": e.table, "row_id": e.row_id, "committed_at": e.committed_at,
                                        "lsn": e.lsn, "walfile": e.walfile} for e in lost_entries],
                      "segments_of_missing_rows": sorted({e.walfile for e in lost_entries}),
                      "recovered": recovered_count, "committed": committed}))
    for table in ledger.tables():
        owner = owners.get(table)
        if owner != fixture.owner:
            findings.append(Finding(OWNERSHIP_MISMATCH, f"{table} is owned by {owner!r}, expected {fixture.owner!r}",
                                    "ledger", evidence={"table": table, "owner": owner, "expected": fixture.owner}))
    status = DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN
    summary = (f"{recovered_count}/{committed} expected rows present"
               + (f"; missing {sum(len(v) for v in missing.values())}" if missing else "")
               + (f"; {len(after_target) - len(overshot)}/{len(after_target)} writes after the target absent"
                  if after_target else ""))
    return LedgerCheck(DetectorOutcome("ledger", status, summary, findings, time.monotonic() - started),
                       recovered, {"committed": len(ledger), "expected": committed, "recovered": recovered_count,
                                   "missing": missing, "owners": owners,
                                   "after_target": [e.row_id for e in after_target],
                                   "after_target_present": [e.row_id for e in overshot]})


def _ranges(ids: list[int]) -> str:
    parts, start, prev = [], None, None
    for i in sorted(ids):
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


@dataclass
class ArchiveCheck:
    outcome: DetectorOutcome
    summary: dict[str, Any] = field(default_factory=dict)


def check_archive(backend: Backend, source: ClusterHandle, recovery: RecoveryOutcome, ledger: Ledger,
                  segment_size: int, to_latest: bool = True) -> ArchiveCheck:
    """``to_latest``: the recovery had no target, so it should have replayed the whole archive;
    then stopping early, and stopping inside an archived segment, are findings."""
    started = time.monotonic()
    try:
        archive, backups, histories = read_server_archive(
            backend.store, backend.destination.key(source.server_name), source.server_name, segment_size)
    except (PgdrillError, ValueError) as exc:
        return ArchiveCheck(_could_not("archive", f"could not read the archive: {exc}", started))
    backup = next((b for b in backups if b.backup_id == recovery.backup_id), None)
    if backup is None:
        done = [b for b in backups if b.done]
        backup = max(done, key=lambda b: b.backup_id) if done else None
    if backup is None or backup.begin_wal is None:
        return ArchiveCheck(_could_not("archive", "no completed base backup with a begin WAL in the archive", started))
    try:
        chain = recovery_chain(backup.begin_wal, histories)
    except ValueError as exc:
        return ArchiveCheck(_could_not("archive", str(exc), started))
    gaps = find_gaps(archive, chain)
    findings: list[Finding] = []
    by_segment: dict[str, list[int]] = {}
    for entry in ledger.entries:
        by_segment.setdefault(entry.walfile, []).append(entry.row_id)
    for gap in gaps:
        rows = [r for name in gap.names for r in by_segment.get(name, [])]
        findings.append(Finding(
            WAL_GAP,
            f"timeline {gap.timeline}: {gap.count} segment(s) missing: {', '.join(gap.names)}"
            + (f" (holding ledger rows {_ranges(rows)})" if rows else ""),
            "archive", evidence={**gap.to_dict(), "segments": gap.names, "ledger_rows": rows,
                                 "backup_id": backup.backup_id, "begin_wal": backup.begin_wal.name}))
    beyond: list[str] = []
    if to_latest and recovery.promoted and recovery.fork_lsn is not None:
        parent = chain[-1].timeline
        beyond = [s.name for s in segments_beyond(archive, parent, recovery.fork_lsn)]
        # The new timeline starts in the segment where replay ended (at its start if the last
        # usable record ended a segment). If the bucket has that segment, and more after it,
        # replay met it and could not use it: restore failed or its records did not validate.
        stopped_in = recovery.fork_lsn.segment_name(parent, segment_size)
        at_start = recovery.fork_lsn.value % segment_size == 0
        later = [name for name in beyond if name != stopped_in.name]
        if stopped_in.number in archive.segments(parent) and (at_start or later):
            findings.append(Finding(
                WAL_SEGMENT_UNREADABLE,
                f"replay stopped at {recovery.fork_lsn} in segment {stopped_in.name}, which is in the archive, "
                f"with {len(later)} later segment(s) after it: the segment is damaged"
                + (" (restored, but its records did not validate)" if stopped_in.name in recovery.restored_segments
                   else " (restore_command could not fetch it)"),
                "archive", evidence={"segment": stopped_in.name, "fork_lsn": str(recovery.fork_lsn),
                                     "key": archive.segments(parent)[stopped_in.number].key,
                                     "restored_by_postgres": stopped_in.name in recovery.restored_segments,
                                     "log": [ln for ln in recovery.log_excerpt
                                             if stopped_in.name in ln or "invalid" in ln or "checksum" in ln
                                             or "redo done" in ln][-10:]}))
        if beyond:
            findings.append(Finding(
                REPLAY_STOPPED_EARLY,
                f"the recovered cluster forked at {recovery.fork_lsn} (timeline {recovery.timeline}) but the archive "
                f"holds {len(beyond)} later segment(s) of timeline {parent}: {', '.join(beyond)}",
                "archive", evidence={"fork_lsn": str(recovery.fork_lsn), "new_timeline": recovery.timeline,
                                     "segments_beyond": beyond,
                                     "restored_segments": recovery.restored_segments}))
    last = {tli: archive.last_segment(tli) for tli in archive.timelines()}
    summary = {
        "backup_id": backup.backup_id,
        "begin_wal": backup.begin_wal.name,
        "end_wal": backup.end_wal.name if backup.end_wal else None,
        "backup_end_lsn": str(backup.end_lsn) if backup.end_lsn else None,
        "chain": [{"timeline": c.timeline, "first": c.first, "last": c.last} for c in chain],
        "timelines": {str(t): {"segments": sorted(n for n in archive.segments(t)),
                               "last": last[t].name if last[t] else None} for t in archive.timelines()},
        "gaps": [g.to_dict() | {"segments": g.names} for g in gaps],
        "partials": [w.key.rsplit("/", 1)[-1] for w in archive.partials()],
        "history_files": sorted(histories),
        "segments_beyond_fork": beyond,
        "backups": [{"backup_id": b.backup_id, "status": b.status, "begin_wal": b.begin_wal.name if b.begin_wal else None,
                     "end_wal": b.end_wal.name if b.end_wal else None, "begin_time": b.begin_time,
                     "end_time": b.end_time} for b in backups],
    }
    status = DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN
    text = (f"{len(gaps)} gap(s)" + (f", {len(beyond)} segment(s) past the fork" if beyond else "")
            if findings else "WAL contiguous from the backup's begin WAL to the end of the archive")
    return ArchiveCheck(DetectorOutcome("archive", status, text, findings, time.monotonic() - started), summary)


def check_target(backend: Backend, source: ClusterHandle, ledger: Ledger, scratch_name: str,
                 keep: bool = False, recovery: RecoveryOutcome | None = None,
                 backup_end: Lsn | None = None) -> tuple[DetectorOutcome, RecoveryOutcome | None]:
    started = time.monotonic()
    last = ledger.last()
    if last is None:
        return _could_not("target", "the ledger is empty: no target LSN to recover to", started), None
    target = Lsn.parse(last.lsn)
    if backup_end is not None and target <= backup_end:
        # PostgreSQL rejects a target before the backup's end ("before consistent recovery
        # point"); the last write is inside the backup, so reaching consistency is the proof.
        if recovery is not None and recovery.promoted:
            return DetectorOutcome("target", DetectorStatus.CLEAN,
                                   f"the last ledger write ({target}) is inside the base backup (ends {backup_end}), "
                                   "and the recovery reached consistency", [], time.monotonic() - started), None
        return _could_not("target", "the last write is inside the base backup and the recovery did not come up",
                          started), None
    try:
        outcome = backend.recover(source, scratch_name, RecoveryTarget(
            lsn=target, backup_id=recovery.backup_id if recovery is not None else None), archive=False)
    except PgdrillError as exc:
        return _could_not("target", f"the target-LSN recovery could not run: {exc}", started), None
    try:
        evidence = {"target_lsn": str(target), "last_ledger_row": last.row_id, "walfile": last.walfile,
                    "fatal": outcome.fatal_lines[-5:], "log": outcome.log_excerpt[-15:],
                    "restored_segments": outcome.restored_segments}
        if outcome.promoted:
            return DetectorOutcome("target", DetectorStatus.CLEAN,
                                   f"recovery reached the last ledger LSN {target}", [],
                                   time.monotonic() - started), outcome
        if any(TARGET_NOT_REACHED in line for line in outcome.fatal_lines):
            return DetectorOutcome("target", DetectorStatus.FINDINGS,
                                   f"PostgreSQL refused: target {target} not reachable", [Finding(
                                       RECOVERY_TARGET_UNREACHED,
                                       f"recovery with recovery_target_lsn = {target} (last ledger write, row "
                                       f"{last.row_id} in {last.walfile}) failed: {TARGET_NOT_REACHED}",
                                       "target", evidence=evidence)], time.monotonic() - started), outcome
        if outcome.cluster is not None and outcome.fatal_lines:
            return DetectorOutcome("target", DetectorStatus.FINDINGS, "target-LSN recovery failed", [Finding(
                RECOVERY_FAILED, f"recovery to {target} failed: {outcome.fatal_lines[-1]}", "target",
                evidence=evidence)], time.monotonic() - started), outcome
        return _could_not("target", "the target-LSN recovery did not start: "
                          + "; ".join(outcome.fatal_lines[-2:]), started, **evidence), outcome
    finally:
        if outcome.cluster is not None and not keep:
            backend.destroy(outcome.cluster)
