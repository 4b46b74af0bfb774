"""The ``archive`` detector: WAL continuity in the bucket from the backup's begin WAL, and whether the
archive holds WAL past the point where the recovered cluster forked off."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pgdrill.archive.catalog import read_server_archive
from pgdrill.archive.continuity import find_gaps, recovery_chain, segments_beyond
from pgdrill.backends.base import Backend, ClusterHandle, RecoveryOutcome
from pgdrill.detectors.base import could_not, id_ranges
from pgdrill.errors import PgdrillError
from pgdrill.findings import (
    REPLAY_STOPPED_EARLY,
    WAL_GAP,
    WAL_SEGMENT_UNREADABLE,
    Finding,
)
from pgdrill.results import DetectorOutcome, DetectorStatus
from pgdrill.workload.ledger import Ledger


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
        return ArchiveCheck(could_not("archive", f"could not read the archive: {exc}", started))
    backup = next((b for b in backups if b.backup_id == recovery.backup_id), None)
    if backup is None:
        done = [b for b in backups if b.done]
        backup = max(done, key=lambda b: b.backup_id) if done else None
    if backup is None or backup.begin_wal is None:
        return ArchiveCheck(could_not("archive", "no completed base backup with a begin WAL in the archive", started))
    try:
        chain = recovery_chain(backup.begin_wal, histories)
    except ValueError as exc:
        return ArchiveCheck(could_not("archive", str(exc), started))
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
            + (f" (holding ledger rows {id_ranges(rows)})" if rows else ""),
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
