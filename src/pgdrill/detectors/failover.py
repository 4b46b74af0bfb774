"""Findings of node-level drills (primary SIGKILL with and without a replica). Pure: no I/O.

The failover and crash-restart drills (``pgdrill.drill.node``) gather facts — the ledger, the
rows on the surviving primary, the bucket listing after the event — and these functions turn
them into findings; the verdict comes from ``pgdrill.drill.judge`` like every drill's.  Archiving is judged from the *bucket*, never from
``pg_stat_archiver`` alone: a server can report successful archiving to a prefix nobody
restores from, and plugin-barman-cloud#842 was archiving that stopped for good after a failover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pgdrill.archive.catalog import ServerArchive
from pgdrill.archive.continuity import find_gaps, recovery_chain
from pgdrill.drill.measures import PathMeasure, rpo_findings
from pgdrill.findings import (
    ARCHIVING_STALLED_AFTER_FAILOVER,
    ARCHIVING_STALLED_AFTER_RESTART,
    FAILOVER_COMMITS_LOST,
    SILENT_DATA_LOSS,
    TIMELINE_HISTORY_MISSING,
    UNARCHIVED_WAL_LOST_AT_FAILOVER,
    WAL_GAP,
    Finding,
)
from pgdrill.postgres.wal import SegmentName, TimelineSwitch
from pgdrill.results import DetectorOutcome, DetectorStatus

Context = Literal["failover", "restart"]


@dataclass
class ArchiveResumption:
    """Did archiving continue, in the bucket, after a failover or a crash restart?"""

    findings: list[Finding] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def outcome(self, seconds: float = 0.0) -> DetectorOutcome:
        name = "archive_after_" + str(self.summary.get("context", "event"))
        if self.findings:
            text = "; ".join(f.code for f in self.findings)
            return DetectorOutcome(name, DetectorStatus.FINDINGS, text, self.findings, seconds)
        text = (f"archiving resumed: timeline {self.summary.get('expected_timeline')} segments "
                f"{', '.join(self.summary.get('expected_segments', []))} in the bucket, no gap from "
                f"{self.summary.get('begin_wal')}")
        return DetectorOutcome(name, DetectorStatus.CLEAN, text, [], seconds)


def assess_archive_resumption(archive: ServerArchive, histories: dict[int, list[TimelineSwitch]],
                              begin_wal: SegmentName, expected_timeline: int, expected_segments: Sequence[str],
                              context: Context, archived_before_event: str | None = None) -> ArchiveResumption:
    """Judge the bucket listing taken after the event.

    ``expected_segments``: complete segments written (and switched) after the event; each must be
    in the bucket.  ``begin_wal``: the base backup's first WAL; the chain from there to
    ``expected_timeline`` (through the .history files) must have no hole.
    ``archived_before_event``: the old primary's ``pg_stat_archiver.last_archived_wal`` read just
    before the kill; holes after it on the timeline the new primary forked from are WAL the old
    primary completed but never uploaded.
    """
    stalled_code = ARCHIVING_STALLED_AFTER_FAILOVER if context == "failover" else ARCHIVING_STALLED_AFTER_RESTART
    findings: list[Finding] = []
    size = archive.segment_size
    expected = [SegmentName.parse(s, size) for s in expected_segments]
    missing = [s.name for s in expected if s.number not in archive.segments(s.timeline)]
    last = {tli: (archive.last_segment(tli).name if archive.last_segment(tli) else None)
            for tli in archive.timelines()}
    summary: dict[str, Any] = {
        "context": context, "begin_wal": begin_wal.name, "expected_timeline": expected_timeline,
        "expected_segments": [s.name for s in expected], "missing_expected": missing,
        "history_files": sorted(histories), "last_segment_per_timeline": {str(k): v for k, v in last.items()},
        "partials": sorted(w.key.rsplit("/", 1)[-1] for w in archive.partials()),
    }
    new_timeline_archived = bool(archive.segments(expected_timeline))
    if missing:
        findings.append(Finding(
            stalled_code,
            f"{len(missing)} segment(s) written and switched after the {context} are not in the bucket: "
            f"{', '.join(missing)} (last archived per timeline: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(last.items())) or "none") + ")",
            f"archive_after_{context}", evidence=summary.copy()))
    if expected_timeline > begin_wal.timeline and expected_timeline not in histories:
        if new_timeline_archived or not missing:
            # Segments of the new timeline exist but no recovery can reach them.
            findings.append(Finding(
                TIMELINE_HISTORY_MISSING,
                f"{expected_timeline:08X}.history is not in the archive; recovery cannot follow timeline "
                f"{expected_timeline}", f"archive_after_{context}", evidence=summary.copy()))
        summary["chain"] = None
        summary["gaps"] = []
        return ArchiveResumption(findings, summary)
    try:
        chain = recovery_chain(begin_wal, histories, expected_timeline)
    except ValueError as exc:  # e.g. a history file that does not descend from the backup's timeline
        findings.append(Finding(TIMELINE_HISTORY_MISSING, str(exc), f"archive_after_{context}",
                                evidence=summary.copy()))
        return ArchiveResumption(findings, summary)
    gaps = find_gaps(archive, chain)
    summary["chain"] = [{"timeline": c.timeline, "first": SegmentName(c.timeline, c.first, size).name,
                         "last": SegmentName(c.timeline, c.last, size).name if c.last is not None else None}
                        for c in chain]
    summary["gaps"] = [g.to_dict() | {"segments": g.names} for g in gaps]
    for gap in gaps:
        findings.append(Finding(WAL_GAP, f"timeline {gap.timeline}: {gap.count} segment(s) missing: "
                                f"{', '.join(gap.names)}", f"archive_after_{context}",
                                evidence=gap.to_dict() | {"segments": gap.names}))
    if context == "failover" and len(chain) > 1:
        # Holes on the timeline the new primary forked from, after what the old primary had
        # archived before the kill: segments it completed but never uploaded, which the promoted
        # standby will never archive either.  Which of them a killed archiver still manages to
        # upload is a race (an upload in flight at the kill completes), so the hole need not end
        # right at the switch point.
        parent = chain[-2].timeline
        floor = -1
        if archived_before_event and len(archived_before_event) >= 24:
            try:
                before = SegmentName.parse(archived_before_event[:24], size)
                floor = before.number if before.timeline == parent else -1
            except ValueError:
                floor = -1
        lost = [g for g in gaps if g.timeline == parent and g.first.number > floor]
        summary["archived_before_event"] = archived_before_event
        if lost:
            names = [n for g in lost for n in g.names]
            findings.append(Finding(
                UNARCHIVED_WAL_LOST_AT_FAILOVER,
                f"{len(names)} timeline-{parent} segment(s) the old primary completed but had not archived "
                f"(last archived before the kill: {archived_before_event or 'unknown'}) will never be archived: "
                f"{', '.join(names)}", f"archive_after_{context}",
                evidence={"segments": names, "chain": summary["chain"],
                          "archived_before_event": archived_before_event}))
    return ArchiveResumption(findings, summary)


def failover_loss_findings(measure: PathMeasure, rpo_target_seconds: float) -> list[Finding]:
    """Async commits lost at failover: a WARNING (measured as RPO) while they are the newest
    commits; a lost commit *older* than one that survived cannot be replication lag — damage."""
    findings: list[Finding] = []
    if measure.survivors_after_first_loss:
        findings.append(Finding(
            SILENT_DATA_LOSS,
            f"{measure.path}: write {measure.first_lost['seq'] if measure.first_lost else '?'} is missing on the new "
            f"primary although {len(measure.survivors_after_first_loss)} later write(s) survived: not replication lag",
            "rpo", evidence=measure.to_dict()))
    if measure.lost_writes:
        findings.append(Finding(
            FAILOVER_COMMITS_LOST,
            f"{measure.lost_writes} acknowledged commit(s) lost at failover over {measure.rpo_seconds or 0:.3f}s "
            "(asynchronous replication)", "rpo", evidence={"lost": measure.lost, "prefix_end": measure.prefix_end}))
    return findings + rpo_findings(measure, rpo_target_seconds)
