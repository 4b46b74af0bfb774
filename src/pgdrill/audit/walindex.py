"""Archived complete segments per timeline as sorted runs: each question is a binary search."""

from __future__ import annotations

import bisect

from pgdrill.archive.catalog import ArchivedWal, ServerArchive
from pgdrill.archive.continuity import ChainLink


class WalIndex:
    """Archived complete segments per timeline, as sorted contiguous runs."""

    def __init__(self, archive: ServerArchive):
        self.segment_size = archive.segment_size
        self.objects: dict[int, dict[int, ArchivedWal]] = {}
        for wal in archive.wal:
            if wal.name.kind == "segment" and wal.name.segment is not None:
                self.objects.setdefault(wal.name.timeline, {})[wal.name.segment.number] = wal
        self.numbers: dict[int, list[int]] = {t: sorted(o) for t, o in self.objects.items()}
        self._runs: dict[int, tuple[list[int], list[int]]] = {}
        for tli, numbers in self.numbers.items():
            starts: list[int] = []
            ends: list[int] = []
            for n in numbers:
                if ends and n == ends[-1] + 1:
                    ends[-1] = n
                else:
                    starts.append(n)
                    ends.append(n)
            self._runs[tli] = (starts, ends)

    def count(self) -> int:
        return sum(len(n) for n in self.numbers.values())

    def run_end(self, timeline: int, number: int) -> int | None:
        """Last number of the contiguous run holding ``number``; ``None`` if it is missing."""
        starts, ends = self._runs.get(timeline, ([], []))
        i = bisect.bisect_right(starts, number) - 1
        return ends[i] if i >= 0 and ends[i] >= number else None

    def _newest_in(self, timeline: int, low: int, high: int | None) -> int | None:
        numbers = self.numbers.get(timeline, [])
        i = bisect.bisect_right(numbers, high) if high is not None else len(numbers)
        return numbers[i - 1] if i > 0 and numbers[i - 1] >= low else None

    def _oldest_in(self, timeline: int, low: int, high: int | None) -> int | None:
        numbers = self.numbers.get(timeline, [])
        i = bisect.bisect_left(numbers, low)
        if i < len(numbers) and (high is None or numbers[i] <= high):
            return numbers[i]
        return None

    def walk(self, chain: list[ChainLink]) -> tuple[int, int] | None:
        """(timeline, number) of the last segment replayed from the chain's start without a hole."""
        last: tuple[int, int] | None = None
        for link in chain:
            end = self.run_end(link.timeline, link.first)
            if end is None:
                return last
            if link.last is None or end < link.last:
                return link.timeline, end if link.last is None else min(end, link.last)
            last = (link.timeline, link.last)
        return last

    def newest_on_chain(self, chain: list[ChainLink]) -> tuple[int, int] | None:
        for link in reversed(chain):
            found = self._newest_in(link.timeline, link.first, link.last)
            if found is not None:
                return link.timeline, found
        return None

    def next_on_chain(self, chain: list[ChainLink], after: int) -> tuple[int, int] | None:
        """First archived segment of the chain with a number greater than ``after``."""
        for link in chain:
            if link.last is not None and link.last <= after:
                continue
            found = self._oldest_in(link.timeline, max(link.first, after + 1), link.last)
            if found is not None:
                return link.timeline, found
        return None

    def wal(self, timeline: int, number: int) -> ArchivedWal:
        return self.objects[timeline][number]
