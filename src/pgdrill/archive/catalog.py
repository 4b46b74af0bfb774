"""The one reader of a serverName's archive, as barman-cloud lays it out in the bucket.

``<prefix>/<serverName>/base/<backup_id>/backup.info`` (+ ``data.tar[.gz]``) and
``<prefix>/<serverName>/wals/<16 hex>/<segment>[.gz|.bz2|...]`` plus ``<tli>.history`` files.
``read_catalog`` lists ``<serverName>/`` once and gets only the small metadata objects (each
``backup.info`` and ``.history``); everything else here models names and listings.  An
unreadable or truncated metadata object is a recorded ``MetadataProblem``, not an exception,
unless the caller asks for ``strict``.  Chains and gaps are in ``pgdrill.archive.continuity``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from pgdrill.archive.store import ObjectInfo
from pgdrill.errors import S3Error
from pgdrill.postgres.wal import (
    DEFAULT_SEGMENT_SIZE,
    Lsn,
    SegmentName,
    TimelineSwitch,
    WalObjectName,
    parse_history,
    segments_per_log,
)

log = logging.getLogger(__name__)


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
        return cls.from_fields(backup_id, info_key, parse_backup_info(text), segment_size)

    @classmethod
    def from_fields(cls, backup_id: str, info_key: str, fields: dict[str, str],
                    segment_size: int = DEFAULT_SEGMENT_SIZE) -> BaseBackup:
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


def parse_barman_time(text: str | None) -> datetime | None:
    """barman writes ``2026-11-25 04:34:26.120519+00:00``; naive times are taken as UTC."""
    if not text or text == "None":
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def parse_backup_info(text: str) -> dict[str, str]:
    """barman's ``backup.info`` is ``key=value`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def backup_info_fields(body: bytes) -> dict[str, str]:
    """The fields of a stored ``backup.info``; ``ValueError`` if it is undecodable or cut short.

    barman writes every field, one ``key=value`` line each, sorted, ``status`` among the
    last: a file cut short (interrupted upload, damaged object) lacks its final newline or
    its ``status`` line (checked by ``_checked`` once parsed, so a bad value is named first),
    and must not pass for a backup that merely FAILED.
    """
    text = body.decode()
    if not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        raise ValueError(f"truncated backup.info: last line {last[:40]!r} has no newline"
                         if text else "empty backup.info")
    return parse_backup_info(text)


def _checked(backup: BaseBackup) -> BaseBackup:
    if "status" not in backup.fields:
        raise ValueError("truncated backup.info: no status line")
    return backup


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
        """Classify a listing, in its order.  Linear; plain and ``.gz`` segment names (nearly
        all of a big archive) take a fast path that gives what ``WalObjectName.parse`` gives."""
        archive = cls(server_name, root if root.endswith("/") else root + "/", segment_size)
        wals = archive.root + "wals/"
        per_log = segments_per_log(segment_size)
        ids: set[str] = set()
        for obj in objects:
            key = obj.key
            if key.startswith(wals):
                parsed = wal_object_name(key[key.rfind("/") + 1:], segment_size, per_log)
                if parsed is not None:
                    archive.wal.append(ArchivedWal(key, parsed, obj.size, obj.last_modified))
                else:
                    archive.other.append(obj)
                continue
            rel = key[len(archive.root):] if key.startswith(archive.root) else key
            parts = rel.split("/")
            if parts[0] == "wals" and len(parts) >= 2:
                parsed = WalObjectName.parse(parts[-1], segment_size)
                if parsed is not None:
                    archive.wal.append(ArchivedWal(key, parsed, obj.size, obj.last_modified))
                    continue
            elif parts[0] == "base" and len(parts) >= 3:
                ids.add(parts[1])
                if parts[2] == "backup.info":
                    archive.backup_info_keys[parts[1]] = key
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


_PLAIN_SEGMENT = re.compile(r"[0-9A-F]{24}")


def wal_object_name(basename: str, segment_size: int = DEFAULT_SEGMENT_SIZE,
                    per_log: int | None = None) -> WalObjectName | None:
    """``WalObjectName.parse`` with a fast path for plain and ``.gz`` segment names.

    Parsing dominates the audit's own cost at 100,000 objects; nearly all of them need no
    more than one regex.  Anything else goes through the general parser (same result, tested).
    """
    base, compression = (basename[:-3], "gz") if basename.endswith(".gz") else (basename, None)
    if len(base) == 24 and _PLAIN_SEGMENT.fullmatch(base):
        per_log = per_log or segments_per_log(segment_size)
        tli, log_part, seg = int(base[:8], 16), int(base[8:16], 16), int(base[16:], 16)
        if seg < per_log:
            return WalObjectName("segment", tli, SegmentName(tli, log_part * per_log + seg, segment_size),
                                 compression)
    return WalObjectName.parse(basename, segment_size)


def stored_bytes(root: str, listing: Iterable[ObjectInfo]) -> dict[str, int]:
    """Bytes under ``base/<id>/`` per backup, backup.info excluded (barman-cloud leaves
    backup.info's ``size`` empty, so the listing is the only size there is)."""
    base = root + "base/"
    totals: dict[str, int] = {}
    for obj in listing:
        if obj.key.startswith(base):
            backup_id, _, name = obj.key[len(base):].partition("/")
            if name and name != "backup.info":
                totals[backup_id] = totals.get(backup_id, 0) + obj.size
    return totals


# -- compression ----------------------------------------------------------------------------
def _snappy(body: bytes) -> bytes:
    import snappy  # python-snappy: optional, as in barman-cloud

    out = io.BytesIO()
    snappy.stream_decompress(io.BytesIO(body), out)
    return out.getvalue()


def _zstd(body: bytes) -> bytes:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        import zstandard  # optional, as in barman-cloud

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)).read()
    return zstd.decompress(body)


def _lz4(body: bytes) -> bytes:
    import lz4.frame  # optional, as in barman-cloud

    return lz4.frame.decompress(body)


#: Every compression barman-cloud-wal-archive writes, by file suffix (``WalObjectName.compression``).
_DECOMPRESS = {"gz": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress,
               "snappy": _snappy, "zst": _zstd, "lz4": _lz4}


def decompress(name: WalObjectName, body: bytes) -> bytes:
    """Undo barman-cloud's compression of a small object (history files, backup labels).

    ``ValueError`` for anything that cannot be undone (damaged body, unknown suffix,
    optional library not installed), whatever the library raised.
    """
    if name.compression is None:
        return body
    undo = _DECOMPRESS.get(name.compression)
    if undo is None:
        raise ValueError(f"cannot read {name.compression}-compressed WAL metadata")
    try:
        return undo(body)
    except ImportError as exc:
        raise ValueError(f"cannot read {name.compression}-compressed WAL metadata: "
                         f"{(exc.name or 'its library').split('.')[0]} is not installed") from None
    except Exception as exc:  # OSError, EOFError, zlib.error, LZMAError, the optional libraries' own
        raise ValueError(_one_line(exc)) from exc


# -- the reader -----------------------------------------------------------------------------
class MetadataStore(Protocol):
    """All the reader needs: it never writes, deletes or HEADs objects."""

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def get(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class MetadataProblem:
    """A ``backup.info`` or ``.history`` object that is listed but could not be read."""

    key: str
    reason: str  # one line
    backup_id: str | None = None
    timeline: int | None = None


@dataclass(frozen=True)
class ArchiveCatalog:
    """What ``read_catalog`` read: the listing plus the small metadata objects."""

    archive: ServerArchive
    backups: Mapping[str, BaseBackup] = field(default_factory=dict)
    """backup_id -> parsed backup.info, by backup_id."""
    unreadable_backups: Mapping[str, str] = field(default_factory=dict)
    """backup_id -> why its backup.info could not be read (also in ``problems``)."""
    histories: Mapping[int, list[TimelineSwitch]] = field(default_factory=dict)
    unreadable_histories: frozenset[int] = frozenset()
    stored_bytes: Mapping[str, int] = field(default_factory=dict)
    """backup_id -> sum of the sizes of its objects in the listing."""
    objects_listed: int = 0
    problems: tuple[MetadataProblem, ...] = ()
    """Unreadable metadata, backups (by id) first, then histories (by timeline)."""


def read_catalog(store: MetadataStore, root: str, server_name: str, segment_size: int | None = None,
                 *, strict: bool = False) -> ArchiveCatalog:
    """List ``root`` (``<prefix>/<serverName>/``) once, then get each ``backup.info`` and
    ``.history`` object; nothing is written.

    :param segment_size: WAL segment size; ``None`` takes the ``xlog_segment_size`` the
        readable backup.info files agree on (default 16 MiB)
    :param strict: raise the first metadata error instead of recording it
    :raises S3Error: only if the listing itself fails (or, with ``strict``, a get)
    """
    root = root if root.endswith("/") else root + "/"
    listing = list(store.list(root))
    size = segment_size or DEFAULT_SEGMENT_SIZE
    archive = ServerArchive.from_listing(server_name, root, listing, size)
    problems: list[MetadataProblem] = []

    def problem(exc: Exception, key: str, **about: object) -> None:
        if strict:
            raise exc
        problems.append(MetadataProblem(key, _one_line(exc), **about))  # type: ignore[arg-type]

    fields: dict[str, dict[str, str]] = {}
    for backup_id, key in sorted(archive.backup_info_keys.items()):
        try:
            fields[backup_id] = backup_info_fields(store.get(key))
        except (S3Error, ValueError) as exc:
            problem(exc, key, backup_id=backup_id)

    if segment_size is None:
        # Segment names depend on the segment size (initdb --wal-segsize); barman records it.
        sizes = {int(v) for f in fields.values() if (v := f.get("xlog_segment_size", "")).isdigit()}
        sizes = {s for s in sizes if s > 0 and not s & (s - 1)}  # a power of two, or ignored
        if len(sizes) == 1 and (found := sizes.pop()) != size:
            size = found
            archive = ServerArchive.from_listing(server_name, root, listing, size)
    backups: dict[str, BaseBackup] = {}
    for backup_id, values in fields.items():
        key = archive.backup_info_keys[backup_id]
        try:
            backups[backup_id] = _checked(BaseBackup.from_fields(backup_id, key, values, size))
        except ValueError as exc:
            problem(exc, key, backup_id=backup_id)
    problems.sort(key=lambda p: p.backup_id or "")  # as if each were read and parsed in turn

    histories: dict[int, list[TimelineSwitch]] = {}
    for wal in sorted((w for w in archive.wal if w.name.kind == "history"), key=lambda w: w.name.timeline):
        try:
            histories[wal.name.timeline] = parse_history(decompress(wal.name, store.get(wal.key)).decode())
        except (S3Error, ValueError) as exc:
            problem(exc, wal.key, timeline=wal.name.timeline)
    return ArchiveCatalog(
        archive, backups, {p.backup_id: p.reason for p in problems if p.backup_id is not None},
        histories, frozenset(p.timeline for p in problems if p.timeline is not None),
        stored_bytes(root, listing), len(listing), tuple(problems))


def read_server_archive(store: object, root: str, server_name: str,
                        segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[ServerArchive, list[BaseBackup], dict[int, list[TimelineSwitch]]]:
    """``read_catalog`` as drills use it: the archive, the readable backups (by id) and the
    readable timeline histories.  Unreadable metadata is left out and logged as a warning
    (``read_catalog`` has the problems); only a failed listing raises (``S3Error``)."""
    catalog = read_catalog(store, root, server_name, segment_size)  # type: ignore[arg-type]
    for p in catalog.problems:
        log.warning("unreadable archive metadata %s: %s", p.key, p.reason)
    return catalog.archive, list(catalog.backups.values()), dict(catalog.histories)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
