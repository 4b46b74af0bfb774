"""Recovery verification: three independent detectors, each reported on its own.

1. ``ledger``  — every acknowledged write a recovery path owes vs its effect in the recovered
   cluster (pgdrill.measures), plus ownership.
2. ``archive`` — WAL continuity in the bucket from the backup's begin WAL, and whether the
   archive holds WAL past the point where the recovered cluster forked off.
3. ``target``  — a second recovery with ``recovery_target_lsn`` = the last owed write's LSN, which
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
from .measures import PathKind, PathMeasure, measure_path
from .results import DetectorOutcome, DetectorStatus
from .wal import Lsn
from .workload import Fixture

TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


@dataclass
class LedgerCheck:
    outcome: DetectorOutcome
    state: dict[str, dict[int, int | None]] = field(default_factory=dict)
    """Per ledger table: key → version found in the recovered cluster (None: no version column)."""
    summary: dict[str, Any] = field(default_factory=dict)


def _could_not(name: str, why: str, started: float, **evidence: Any) -> DetectorOutcome:
    return DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, why,
                           [Finding(COULD_NOT_VERIFY, f"{name}: {why}", name, evidence=evidence)],
                           time.monotonic() - started)


def read_state(backend: Backend, cluster: ClusterHandle, ledger: Ledger,
               fixture: Fixture) -> tuple[dict[str, dict[int, int | None]], dict[str, str]]:
    """What the recovered cluster holds of each ledger table (key → version), and table owners."""
    state: dict[str, dict[int, int | None]] = {}
    for table in ledger.tables():
        spec = fixture.tables.get(table)
        column = f'"{spec.version_column}"' if spec is not None and spec.version_column else "NULL"
        rows = backend.sql(cluster, f'SELECT id, {column} FROM "{table}"', dbname=fixture.database)
        state[table] = {int(r[0]): (int(r[1]) if r[1] is not None else None) for r in rows}
    owners = dict(backend.sql(cluster, "SELECT tablename::text, tableowner::text FROM pg_tables "
                                       "WHERE schemaname = 'public'", dbname=fixture.database))
    return state, owners


def check_ledger(backend: Backend, cluster: ClusterHandle | None, ledger: Ledger, fixture: Fixture,
                 path: str, kind: PathKind, bound_seq: int, target_seq: int | None = None,
                 disaster_at: str | None = None,
                 lost_elsewhere: set[int] | None = None) -> tuple[LedgerCheck, PathMeasure | None]:
    """The ``ledger`` detector for one recovery path: every acknowledged write it owes, by its
    effect (docs/measures.md), plus table ownership.  Returns the path's measure too.

    ``lost_elsewhere``: writes an earlier path already lost and reported (commits lost at a
    failover cannot be in the archive either); they count in this path's measure but are not
    reported again as SILENT_DATA_LOSS."""
    started = time.monotonic()
    if cluster is None:
        return LedgerCheck(_could_not("ledger", f"{path}: the recovered cluster never came up, so no row "
                                      "could be read", started)), None
    try:
        state, owners = read_state(backend, cluster, ledger, fixture)
    except PgdrillError as exc:
        return LedgerCheck(_could_not("ledger", f"{path}: could not read the recovered rows: {exc}", started)), None
    except Exception as exc:  # a database error is evidence of a broken recovery, but not a verdict on rows
        return LedgerCheck(_could_not("ledger", f"{path}: could not read the recovered rows: "
                                      f"{type(exc).__name__}: {exc}", started)), None
    # read_state gives None for a table without a version column: judged per row, not per drill.
    measure = measure_path(path, kind, cluster.name, ledger.all_writes, state, bound_seq, target_seq,
                           disaster_at=disaster_at)
    findings: list[Finding] = []
    if measure.after_target_present:
        findings.append(Finding(
            TARGET_OVERSHOT, f"{path}: {len(measure.after_target_present)} write(s) committed after the recovery "
            "target are present: " + ", ".join(f"{w['op']} {w['table']} id {w['row_id']}"
                                                 for w in measure.after_target_present), "ledger",
            evidence={"path": path, "writes": measure.after_target_present}))
    silent = [w for w in measure.lost if w["seq"] not in (lost_elsewhere or set())]
    if silent:
        by_op: dict[str, list[int]] = {}
        for write in silent:
            by_op.setdefault(f"{write['op']} {write['table']}", []).append(write["row_id"])
        findings.append(Finding(
            SILENT_DATA_LOSS,
            f"{path}: the recovery promoted and accepted writes, yet {len(silent)} of {measure.expected} "
            "acknowledged writes are missing: " + "; ".join(f"{k} ids {_ranges(v)}" for k, v in by_op.items())
            + (f" (besides {measure.lost_writes - len(silent)} lost earlier)" if len(silent) < measure.lost_writes
               else ""),
            "ledger",
            evidence={"path": path, "lost": silent[:200], "lost_count": len(silent),
                      "segments_of_lost_writes": sorted({w["walfile"] for w in silent if w["walfile"]}),
                      "survivors_after_first_loss": measure.survivors_after_first_loss[:50],
                      "present": measure.present, "expected": measure.expected}))
    for table in ledger.tables():
        owner = owners.get(table)
        if owner != fixture.owner:
            findings.append(Finding(OWNERSHIP_MISMATCH, f"{table} is owned by {owner!r}, expected {fixture.owner!r}",
                                    "ledger", evidence={"table": table, "owner": owner, "expected": fixture.owner}))
    status = DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN
    summary = (f"{path}: {measure.present}/{measure.expected} acknowledged writes present"
               + (f"; lost {measure.lost_writes}" if measure.lost else "")
               + (f"; {len(measure.in_doubt)} in doubt" if measure.in_doubt else "")
               + (f"; {len(measure.after_target_present)} after the target present" if measure.after_target_present
                  else ""))
    return LedgerCheck(DetectorOutcome("ledger", status, summary, findings, time.monotonic() - started), state,
                       {"path": path, "committed": len(ledger), "expected": measure.rows_expected,
                        "recovered": measure.rows_present, "expected_writes": measure.expected,
                        "present_writes": measure.present, "lost_writes": measure.lost_writes,
                        "in_doubt": len(measure.in_doubt), "owners": owners}), measure


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
        if entry.walfile:
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


def check_target(backend: Backend, source: ClusterHandle, ledger: Ledger, owed_until_seq: int,
                 scratch_name: str, backup_id: str | None, segment_size: int,
                 keep: bool = False) -> DetectorOutcome:
    """Recover once more with ``recovery_target_lsn`` = the commit LSN of the last acknowledged
    write this recovery owes; PostgreSQL refuses (FATAL) when the archive cannot reach it.

    Always its own recovery, never another detector's result.  When that write lies inside the
    base backup (before its consistency point), the target is the consistency point itself.
    """
    started = time.monotonic()
    owed = [e for e in ledger.entries if e.seq <= owed_until_seq]
    if not owed:
        return _could_not("target", "the ledger has no acknowledged write: no target LSN to recover to", started)
    last = owed[-1]
    target = last.position
    basis = "commit LSN of the last acknowledged write (insert position right after its COMMIT)"
    if last.lsn is None:
        basis = "lower bound of the last acknowledged write's commit LSN (its follow-up read never ran)"
    try:
        _, backups, _ = read_server_archive(backend.store, backend.destination.key(source.server_name),
                                            source.server_name, segment_size)
    except (PgdrillError, ValueError) as exc:
        return _could_not("target", f"could not read the archive: {exc}", started)
    backup = next((b for b in backups if b.backup_id == backup_id), None)
    if backup is not None and backup.end_lsn is not None and target <= backup.end_lsn:
        # PostgreSQL rejects a target before the consistency point ("before consistent recovery point").
        target = backup.end_lsn
        basis = (f"the base backup's consistency point {backup.end_lsn}: the last acknowledged write "
                 f"({last.position}) is inside the backup")
    evidence: dict[str, Any] = {"target_lsn": str(target), "target_basis": basis, "last_write_seq": last.seq,
                                "last_write": {"table": last.table, "row_id": last.row_id, "op": last.op,
                                               "walfile": last.walfile}, "backup_id": backup_id}
    try:
        outcome = backend.recover(source, scratch_name, RecoveryTarget(lsn=target, backup_id=backup_id),
                                  archive=False)
    except PgdrillError as exc:
        return _could_not("target", f"the target-LSN recovery could not run: {exc}", started, **evidence)
    try:
        evidence.update({"fatal": outcome.fatal_lines[-5:], "log": outcome.log_excerpt[-15:],
                         "restored_segments": outcome.restored_segments})
        if outcome.promoted:
            return DetectorOutcome("target", DetectorStatus.CLEAN, f"recovery reached {target} ({basis})", [],
                                   time.monotonic() - started)
        if any(TARGET_NOT_REACHED in line for line in outcome.fatal_lines):
            return DetectorOutcome("target", DetectorStatus.FINDINGS,
                                   f"PostgreSQL refused: target {target} not reachable", [Finding(
                                       RECOVERY_TARGET_UNREACHED,
                                       f"recovery with recovery_target_lsn = {target} ({last.op} of {last.table} id "
                                       f"{last.row_id}, write {last.seq}, in {last.walfile}) failed: "
                                       f"{TARGET_NOT_REACHED}", "target", evidence=evidence)],
                                   time.monotonic() - started)
        if outcome.cluster is not None and outcome.fatal_lines:
            return DetectorOutcome("target", DetectorStatus.FINDINGS, "target-LSN recovery failed", [Finding(
                RECOVERY_FAILED, f"recovery to {target} failed: {outcome.fatal_lines[-1]}", "target",
                evidence=evidence)], time.monotonic() - started)
        return _could_not("target", "the target-LSN recovery did not start: "
                          + "; ".join(outcome.fatal_lines[-2:]), started, **evidence)
    finally:
        if outcome.cluster is not None and not keep:
            backend.destroy(outcome.cluster)
