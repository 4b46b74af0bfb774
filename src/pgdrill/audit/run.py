"""Read one serverName's archive from S3 (list + get only) and analyse it."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import time
from dataclasses import replace
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Protocol

from ..archive import ArchivedWal, BaseBackup, ServerArchive
from ..errors import S3Error
from ..findings import Finding
from ..s3 import ObjectInfo, S3Location
from ..wal import DEFAULT_SEGMENT_SIZE, SegmentName, TimelineSwitch, WalObjectName, parse_history, segments_per_log
from . import codes
from .analyze import DETECTOR, ArchiveMetadata, analyze
from .report import AuditReport
from .thresholds import AuditThresholds


class ReadableStore(Protocol):
    """The only calls the audit makes: it never writes, deletes or HEADs objects."""

    endpoint_url: str | None

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def get(self, key: str) -> bytes: ...

    def list_prefixes(self, prefix: str) -> list[str]: ...


def run_audit(location: S3Location, store: ReadableStore, thresholds: AuditThresholds,
              now: datetime) -> AuditReport:
    """Audit ``s3://<bucket>/<prefix>/<serverName>`` (``location``) through ``store``.

    One paginated listing of ``<serverName>/`` gives every WAL name, size and LastModified;
    only ``backup.info`` and ``.history`` objects are fetched.  S3 and metadata problems
    become findings (``S3_ACCESS_ERROR``, ``METADATA_UNREADABLE``), never exceptions.

    :param now: the audit's clock (timezone-aware), so ages are reproducible in tests
    """
    started = time.monotonic()
    server_name = location.prefix.rsplit("/", 1)[-1]
    endpoint = getattr(store, "endpoint_url", None)
    if not server_name:
        return unverified_report(location, thresholds, now, (
            f"{location.url} names no serverName: expected s3://<bucket>/<prefix>/<serverName>"), endpoint)
    # The trailing slash matters: "postgres-cluster" must not also list "postgres-cluster-v2".
    root = location.prefix + "/"
    try:
        listing = list(store.list(root))
    except S3Error as exc:
        return replace(unverified_report(location, thresholds, now, str(exc), endpoint),
                       duration_seconds=time.monotonic() - started)

    meta, problems = _read_metadata(store, server_name, root, listing)
    notes: tuple[str, ...] = ()
    if not listing:
        siblings = _siblings(store, location)
        notes = (f"nothing under {location.url}"
                 + (f"; serverNames next to it: {', '.join(siblings)} (wrong serverName?)" if siblings else ""),)
    report = analyze(meta, thresholds, now, location=location.url, endpoint_url=endpoint,
                     findings=tuple(problems))
    return replace(report, notes=notes, duration_seconds=time.monotonic() - started)


def unverified_report(location: S3Location, thresholds: AuditThresholds, now: datetime, message: str,
                      endpoint_url: str | None = None) -> AuditReport:
    """The report of an audit that could not even list the bucket: exit 2, success 0."""
    finding = Finding(codes.S3_ACCESS_ERROR, message, DETECTOR, {"location": location.url})
    return AuditReport(location.url, location.prefix.rsplit("/", 1)[-1], endpoint_url, now, thresholds,
                       (finding,))


def _read_metadata(store: ReadableStore, server_name: str, root: str,
                   listing: list[ObjectInfo]) -> tuple[ArchiveMetadata, list[Finding]]:
    problems: list[Finding] = []
    stored = _stored_bytes(root, listing)
    archive = archive_from_listing(server_name, root, listing)
    backups: dict[str, BaseBackup] = {}
    unreadable: dict[str, str] = {}
    for backup_id, key in sorted(archive.backup_info_keys.items()):
        try:
            backups[backup_id] = BaseBackup.from_info(backup_id, key, store.get(key).decode())
        except (S3Error, ValueError, UnicodeDecodeError) as exc:
            unreadable[backup_id] = _one_line(exc)
            problems.append(Finding(codes.METADATA_UNREADABLE, f"{key}: {_one_line(exc)}", DETECTOR,
                                    {"key": key}))
    # Segment names depend on the segment size (initdb --wal-segsize); barman records it.
    sizes = {int(b.fields["xlog_segment_size"]) for b in backups.values()
             if b.fields.get("xlog_segment_size", "").isdigit()}
    if len(sizes) == 1 and (size := sizes.pop()) != DEFAULT_SEGMENT_SIZE:
        archive = archive_from_listing(server_name, root, listing, size)
        backups = {i: BaseBackup.from_info(i, b.info_key, _info_text(b), size) for i, b in backups.items()}
    histories: dict[int, list[TimelineSwitch]] = {}
    bad_histories: set[int] = set()
    for wal in _history_objects(archive.wal):
        try:
            histories[wal.name.timeline] = parse_history(_decompress(wal, store.get(wal.key)).decode())
        except (S3Error, ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
            bad_histories.add(wal.name.timeline)
            problems.append(Finding(codes.METADATA_UNREADABLE, f"{wal.key}: {_one_line(exc)}", DETECTOR,
                                    {"key": wal.key}))
    meta = ArchiveMetadata(archive, backups, unreadable, histories, frozenset(bad_histories), stored,
                           len(listing))
    return meta, problems


_PLAIN_SEGMENT = re.compile(r"[0-9A-F]{24}")


def archive_from_listing(server_name: str, root: str, listing: list[ObjectInfo],
                         segment_size: int = DEFAULT_SEGMENT_SIZE) -> ServerArchive:
    """``ServerArchive.from_listing``, with a fast path for plain segment names.

    Parsing dominates the audit's own cost at 100,000 objects; nearly all of them are
    uncompressed or ``.gz`` segments whose names need no more than one regex.  Anything
    else goes through the general parser, so the result is identical (tested).
    """
    rest: list[ObjectInfo] = []
    wals = root + "wals/"
    per_log = segments_per_log(segment_size)
    parsed: list[ArchivedWal] = []
    for obj in listing:
        key = obj.key
        if key.startswith(wals):
            base = key[key.rfind("/") + 1:]
            compression = None
            if base.endswith(".gz"):
                base, compression = base[:-3], "gz"
            if len(base) == 24 and _PLAIN_SEGMENT.fullmatch(base):
                tli, log, seg = int(base[:8], 16), int(base[8:16], 16), int(base[16:], 16)
                if seg < per_log:
                    segment = SegmentName(tli, log * per_log + seg, segment_size)
                    parsed.append(ArchivedWal(key, WalObjectName("segment", tli, segment, compression),
                                              obj.size, obj.last_modified))
                    continue
        rest.append(obj)
    archive = ServerArchive.from_listing(server_name, root, rest, segment_size)
    archive.wal.extend(parsed)
    return archive


def _stored_bytes(root: str, listing: Iterable[ObjectInfo]) -> dict[str, int]:
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


def _history_objects(wals: Iterable[ArchivedWal]) -> list[ArchivedWal]:
    return sorted((w for w in wals if w.name.kind == "history"), key=lambda w: w.name.timeline)


def _decompress(wal: ArchivedWal, body: bytes) -> bytes:
    compression = wal.name.compression
    if compression is None:
        return body
    if compression == "gz":
        return gzip.decompress(body)
    if compression == "bz2":
        return bz2.decompress(body)
    if compression == "xz":
        return lzma.decompress(body)
    raise ValueError(f"cannot decompress {compression} here (only gzip, bzip2, xz)")


def _info_text(backup: BaseBackup) -> str:
    return "\n".join(f"{k}={v}" for k, v in backup.fields.items())


def _siblings(store: ReadableStore, location: S3Location) -> list[str]:
    parent = location.prefix.rsplit("/", 1)[0] + "/" if "/" in location.prefix else ""
    try:
        return sorted(p[len(parent):].strip("/") for p in store.list_prefixes(parent))[:10]
    except S3Error:
        return []


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
