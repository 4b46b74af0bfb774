"""Recovery chains and WAL gaps: pure functions of a listed archive and its timeline histories.

Shared by the drills' detectors and ``pgdrill audit``; nothing here reads the bucket
(``pgdrill.archive.catalog`` does, once).
"""

from __future__ import annotations

from dataclasses import dataclass

from pgdrill.archive.catalog import ServerArchive
from pgdrill.postgres.wal import Lsn, SegmentName, TimelineSwitch


@dataclass(frozen=True)
class Gap:
    """Segments ``first``..``last`` (inclusive) of one timeline are missing, with later WAL present."""

    timeline: int
    first: SegmentName
    last: SegmentName

    @property
    def count(self) -> int:
        return self.last.number - self.first.number + 1

    @property
    def names(self) -> list[str]:
        return [self.first.shifted(i).name for i in range(self.count)]

    def to_dict(self) -> dict[str, object]:
        return {"timeline": self.timeline, "first": self.first.name, "last": self.last.name,
                "count": self.count}


@dataclass(frozen=True)
class ChainLink:
    """The part of a timeline that a recovery along a chain of timelines reads."""

    timeline: int
    first: int  # first segment number read on this timeline
    last: int | None  # last segment number, None for the open end of the chain


def recovery_chain(start: SegmentName, histories: dict[int, list[TimelineSwitch]],
                   target_timeline: int | None = None) -> list[ChainLink]:
    """The timelines a recovery from ``start`` walks to reach ``target_timeline``.

    ``histories`` maps a timeline to its parsed ``.history`` file.  Without a target, the
    newest timeline that descends from ``start``'s timeline is taken, as PostgreSQL does
    with ``recovery_target_timeline = 'latest'``.
    """
    def descends(tli: int) -> bool:
        return tli == start.timeline or any(
            s.parent_timeline == start.timeline for s in histories.get(tli, ())
        )

    if target_timeline is None:
        candidates = [t for t in histories if descends(t)] + [start.timeline]
        target_timeline = max(candidates)
    if target_timeline == start.timeline:
        return [ChainLink(start.timeline, start.number, None)]
    switches = histories.get(target_timeline)
    if not switches:
        raise ValueError(f"timeline {target_timeline} has no history file in the archive")
    # The history file lists every ancestor in order; keep those from start's timeline on.
    ancestry = [s for s in switches if s.parent_timeline >= start.timeline]
    links: list[ChainLink] = []
    first = start.number
    for switch in ancestry:
        end_seg = switch.switchpoint.segment(start.segment_size)
        # The segment that holds the switchpoint is read from the *child* timeline.
        last = end_seg - 1 if end_seg > first else None
        if last is not None and last >= first:
            links.append(ChainLink(switch.parent_timeline, first, last))
        first = max(first, end_seg)
    links.append(ChainLink(target_timeline, first, None))
    return links


def find_gaps(archive: ServerArchive, chain: list[ChainLink]) -> list[Gap]:
    """Missing segments along ``chain`` that have later WAL after them.

    A hole at the very end of the chain is not a gap: the archive simply ends there
    (or the next segment is still being uploaded; audit handles that grace window).
    """
    size = archive.segment_size
    present: list[tuple[int, int]] = []  # (link index, segment number) in chain order
    expected: list[tuple[int, int]] = []
    for index, link in enumerate(chain):
        segs = archive.segments(link.timeline)
        last = link.last
        if last is None:
            last = max((n for n in segs if n >= link.first), default=link.first - 1)
        for number in range(link.first, last + 1):
            expected.append((index, number))
            if number in segs:
                present.append((index, number))
    if not present:
        return []
    last_present = present[-1]
    gaps: list[Gap] = []
    run: list[tuple[int, int]] = []
    present_set = set(present)
    for item in expected:
        if item > last_present:
            break
        if item in present_set:
            if run:
                tli = chain[run[0][0]].timeline
                gaps.append(Gap(tli, SegmentName(tli, run[0][1], size), SegmentName(tli, run[-1][1], size)))
                run = []
        else:
            if run and chain[run[0][0]].timeline != chain[item[0]].timeline:
                tli = chain[run[0][0]].timeline
                gaps.append(Gap(tli, SegmentName(tli, run[0][1], size), SegmentName(tli, run[-1][1], size)))
                run = []
            run.append(item)
    return gaps


def segments_beyond(archive: ServerArchive, timeline: int, point: Lsn) -> list[SegmentName]:
    """Archived complete segments of ``timeline`` that start at or after ``point``.

    Used after a recovery: the recovered cluster forked from ``timeline`` at ``point``;
    any archived segment starting there or later holds WAL the recovery never applied.
    """
    return sorted(
        SegmentName(timeline, n, archive.segment_size)
        for n in archive.segments(timeline)
        if n * archive.segment_size >= point.value
    )
