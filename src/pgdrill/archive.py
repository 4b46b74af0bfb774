"""The archive of one serverName, as barman-cloud lays it out in the bucket.

``<prefix>/<serverName>/base/<backup_id>/backup.info`` (+ ``data.tar[.gz]``) and
``<prefix>/<serverName>/wals/<16 hex>/<segment>[.gz]`` plus ``<tli>.history`` files.
This module only models names and listings; it never talks to S3 itself, so the
gap logic is pure and shared by drills and ``pgdrill audit``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .s3 import ObjectInfo
from .wal import DEFAULT_SEGMENT_SIZE, Lsn, SegmentName, TimelineSwitch, WalObjectName


@dataclass(frozen=True)
class ArchivedWal:
    key: str
    name: WalObjectName
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class BaseBackup:
    """A base backup as described by its ``backup.info``."""

    backup_id: str
    status: str
    timeline: int | None
    begin_wal: SegmentName | None
    end_wal: SegmentName | None
    begin_lsn: Lsn | None
    end_lsn: Lsn | None
    begin_time: str | None
    end_time: str | None
    size: int | None
    info_key: str
    fields: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status == "DONE"

    @classmethod
    def from_info(cls, backup_id: str, info_key: str, text: str,
                  segment_size: int = DEFAULT_SEGMENT_SIZE) -> BaseBackup:
        fields = parse_backup_info(text)

        def seg(name: str) -> SegmentName | None:
            value = fields.get(name)
            return SegmentName.parse(value, segment_size) if value and value != "None" else None

        def lsn(name: str) -> Lsn | None:
            value = fields.get(name)
            return Lsn.parse(value) if value and value != "None" else None

        def integer(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value and value.isdigit() else None

        return cls(
            backup_id=backup_id,
            status=fields.get("status", "UNKNOWN"),
            timeline=integer("timeline"),
            begin_wal=seg("begin_wal"),
            end_wal=seg("end_wal"),
            begin_lsn=lsn("begin_xlog"),
            end_lsn=lsn("end_xlog"),
            begin_time=fields.get("begin_time"),
            end_time=fields.get("end_time"),
            size=integer("size"),
            info_key=info_key,
            fields=fields,
        )


def parse_backup_info(text: str) -> dict[str, str]:
    """barman's ``backup.info`` is ``key=value`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


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


@dataclass
class ServerArchive:
    """Everything listed under ``<prefix>/<serverName>/``."""

    server_name: str
    root: str  # key prefix ending in "/"
    segment_size: int = DEFAULT_SEGMENT_SIZE
    wal: list[ArchivedWal] = field(default_factory=list)
    backup_ids: list[str] = field(default_factory=list)
    backup_info_keys: dict[str, str] = field(default_factory=dict)
    other: list[ObjectInfo] = field(default_factory=list)

    @classmethod
    def from_listing(cls, server_name: str, root: str, objects: Iterable[ObjectInfo],
                     segment_size: int = DEFAULT_SEGMENT_SIZE) -> ServerArchive:
        archive = cls(server_name, root if root.endswith("/") else root + "/", segment_size)
        ids: set[str] = set()
        for obj in objects:
            rel = obj.key[len(archive.root):] if obj.key.startswith(archive.root) else obj.key
            parts = rel.split("/")
            if parts[0] == "wals" and len(parts) >= 2:
                parsed = WalObjectName.parse(parts[-1], segment_size)
                if parsed is not None:
                    archive.wal.append(ArchivedWal(obj.key, parsed, obj.size, obj.last_modified))
                    continue
            elif parts[0] == "base" and len(parts) >= 3:
                ids.add(parts[1])
                if parts[2] == "backup.info":
                    archive.backup_info_keys[parts[1]] = obj.key
                continue
            archive.other.append(obj)
        archive.backup_ids = sorted(ids)
        return archive

    # -- WAL views --------------------------------------------------------------------

    def segments(self, timeline: int) -> dict[int, ArchivedWal]:
        """Complete segments of one timeline by number (``.partial`` files are not complete)."""
        return {
            w.name.segment.number: w
            for w in self.wal
            if w.name.kind == "segment" and w.name.timeline == timeline and w.name.segment
        }

    def timelines(self) -> list[int]:
        return sorted({w.name.timeline for w in self.wal})

    def history_keys(self) -> dict[int, str]:
        return {w.name.timeline: w.key for w in self.wal if w.name.kind == "history"}

    def partials(self) -> list[ArchivedWal]:
        return [w for w in self.wal if w.name.kind == "partial"]

    def newest_wal(self) -> ArchivedWal | None:
        complete = [w for w in self.wal if w.name.kind in ("segment", "partial")]
        return max(complete, key=lambda w: (w.name.timeline, w.name.segment.number), default=None)  # type: ignore[union-attr]

    def last_segment(self, timeline: int) -> SegmentName | None:
        numbers = self.segments(timeline)
        return SegmentName(timeline, max(numbers), self.segment_size) if numbers else None


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


def decompress(name: WalObjectName, body: bytes) -> bytes:
    """Undo barman-cloud's compression of a small object (history files, backup labels)."""
    if name.compression is None:
        return body
    if name.compression == "gz":
        import gzip

        return gzip.decompress(body)
    if name.compression == "bz2":
        import bz2

        return bz2.decompress(body)
    raise ValueError(f"cannot read {name.compression}-compressed WAL metadata here")


def read_server_archive(store: object, root: str, server_name: str,
                        segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[ServerArchive, list[BaseBackup], dict[int, list[TimelineSwitch]]]:
    """List ``root`` (``<prefix>/<serverName>/``) once, then read only the small metadata
    objects: each ``backup.info`` and each ``.history`` file.  ``store`` needs ``list``/``get``
    (``pgdrill.s3.ObjectStore``); nothing is written."""
    from .wal import parse_history

    root = root if root.endswith("/") else root + "/"
    archive = ServerArchive.from_listing(server_name, root, store.list(root), segment_size)  # type: ignore[attr-defined]
    backups = [BaseBackup.from_info(bid, key, store.get(key).decode(), segment_size)  # type: ignore[attr-defined]
               for bid, key in sorted(archive.backup_info_keys.items())]
    histories: dict[int, list[TimelineSwitch]] = {}
    for wal in archive.wal:
        if wal.name.kind == "history":
            histories[wal.name.timeline] = parse_history(decompress(wal.name, store.get(wal.key)).decode())  # type: ignore[attr-defined]
    return archive, backups, histories
