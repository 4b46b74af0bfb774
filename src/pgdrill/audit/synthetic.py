"""Synthetic barman-cloud archives for tests and the benchmark.

``backup.info`` is written with the field names and formats of a real one (barman-cloud
3.19.1 against PostgreSQL 18: ``key=value`` lines sorted by key, times as
``2026-11-25 04:34:26.120519+00:00``, ``size=None`` because barman-cloud does not record it).
WAL objects are named exactly as barman-cloud-wal-archive names them; their bodies are
irrelevant to the audit (it never reads WAL bodies), so they can be tiny.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgdrill.archive.store import ObjectInfo, ObjectStore
from pgdrill.postgres.wal import DEFAULT_SEGMENT_SIZE, Lsn, SegmentName

__all__ = ["SyntheticArchive", "backup_info_text"]


def backup_info_text(*, backup_id: str, status: str, timeline: int, begin_wal: SegmentName,
                     end_wal: SegmentName, begin_time: datetime, end_time: datetime | None,
                     cluster_size: int = 23059553, compression: str | None = None,
                     error: str | None = None, server_name: str = "cloud") -> str:
    begin_lsn = Lsn(begin_wal.start_lsn.value + 0x28)
    end_lsn = Lsn(end_wal.start_lsn.value + 0x120)
    fields = {
        "backup_label": repr(
            f"START WAL LOCATION: {begin_lsn} (file {begin_wal.name})\nCHECKPOINT LOCATION: "
            f"{Lsn(begin_lsn.value + 0x58)}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
            f"START TIME: {begin_time:%Y-%m-%d %H:%M:%S} UTC\nLABEL: Barman backup cloud {backup_id}\n"
            f"START TIMELINE: {timeline}\n"),
        "begin_offset": "40",
        "begin_time": _barman_time(begin_time),
        "begin_wal": begin_wal.name,
        "begin_xlog": str(begin_lsn),
        "children_backup_ids": "None",
        "cluster_size": str(cluster_size),
        "compression": compression or "None",
        "config_file": "/var/lib/postgresql/data/pgdata/postgresql.conf",
        "data_checksums": "on",
        "deduplicated_size": "None",
        "encryption": "None",
        "end_offset": "288",
        "end_time": _barman_time(end_time) if end_time else "None",
        "end_wal": end_wal.name,
        "end_xlog": str(end_lsn),
        "error": error or "None",
        "hba_file": "/var/lib/postgresql/data/pgdata/pg_hba.conf",
        "ident_file": "/var/lib/postgresql/data/pgdata/pg_ident.conf",
        "included_files": "None",
        "mode": "None",
        "parent_backup_id": "None",
        "pgdata": "/var/lib/postgresql/data/pgdata",
        "server_name": server_name,
        "size": "None",
        "status": status,
        "summarize_wal": "off",
        "systemid": "7711962810179043455",
        "tablespaces": "None",
        "timeline": str(timeline),
        "version": "180006",
        "xlog_segment_size": str(begin_wal.segment_size),
    }
    return "".join(f"{k}={v}\n" for k, v in sorted(fields.items()))


def _barman_time(value: datetime) -> str:
    return value.isoformat(sep=" ", timespec="microseconds")


@dataclass
class _Object:
    body: bytes
    size: int
    last_modified: datetime


@dataclass
class SyntheticArchive:
    """Objects of one serverName, in memory; ``upload`` copies them to a real bucket."""

    root: str = "postgres/postgres-cluster/"
    segment_size: int = DEFAULT_SEGMENT_SIZE
    objects: dict[str, _Object] = field(default_factory=dict)

    def seg(self, timeline: int, number: int) -> SegmentName:
        return SegmentName(timeline, number, self.segment_size)

    def wal_key(self, timeline: int, number: int, suffix: str = "") -> str:
        name = self.seg(timeline, number)
        return f"{self.root}wals/{name.directory}/{name.name}{suffix}"

    def add_wal(self, timeline: int, number: int, modified: datetime, suffix: str = "",
                size: int | None = None) -> str:
        key = self.wal_key(timeline, number, suffix)
        self.objects[key] = _Object(b"", self.segment_size if size is None else size, modified)
        return key

    def add_wal_range(self, timeline: int, first: int, last: int, start: datetime,
                      step: timedelta = timedelta(minutes=5), skip: set[int] | frozenset[int] = frozenset()) -> None:
        """Segments ``first..last`` archived every ``step`` from ``start``; ``skip`` plants holes."""
        for i, number in enumerate(range(first, last + 1)):
            if number not in skip:
                self.add_wal(timeline, number, start + i * step)

    def add_history(self, timeline: int, lines: list[tuple[int, Lsn, str]], modified: datetime) -> str:
        key = f"{self.root}wals/{timeline:08X}.history"
        body = "".join(f"{parent}\t{lsn}\t{reason}\n" for parent, lsn, reason in lines).encode()
        self.objects[key] = _Object(body, len(body), modified)
        return key

    def add_backup(self, backup_id: str, *, status: str = "DONE", timeline: int = 1, begin: int, end: int,
                   begin_time: datetime, duration: timedelta = timedelta(minutes=2),
                   data_bytes: int = 24_463_360, compression: str | None = None,
                   error: str | None = None, with_info: bool = True) -> None:
        end_time = begin_time + duration if status == "DONE" else (begin_time + duration if error else None)
        base = f"{self.root}base/{backup_id}/"
        if with_info:
            text = backup_info_text(
                backup_id=backup_id, status=status, timeline=timeline, begin_wal=self.seg(timeline, begin),
                end_wal=self.seg(timeline, end), begin_time=begin_time, end_time=end_time,
                compression=compression, error=error).encode()
            self.objects[base + "backup.info"] = _Object(text, len(text), end_time or begin_time)
        if status == "DONE" or data_bytes:
            name = "data.tar" + {"gzip": ".gz", "bzip2": ".bz2"}.get(compression or "", "")
            self.objects[base + name] = _Object(b"", data_bytes, end_time or begin_time)

    def delete(self, key: str) -> None:
        del self.objects[key]

    # -- what a store would answer ----------------------------------------------------

    def listing(self, prefix: str = "") -> list[ObjectInfo]:
        return [ObjectInfo(k, o.size, o.last_modified) for k, o in sorted(self.objects.items())
                if k.startswith(prefix)]

    def get(self, key: str) -> bytes:
        return self.objects[key].body

    def keys(self) -> Iterator[str]:
        return iter(sorted(self.objects))

    def upload(self, store: ObjectStore, workers: int = 10, body_limit: int = 65536,
               keys: Iterable[str] | None = None) -> int:
        """Put the objects into a real bucket, concurrently (boto3 clients are thread-safe;
        their connection pool holds 10, so more workers only queue).

        The store sets LastModified to the upload time, so ages there are real ages; bodies
        of size-only objects are zero bytes up to ``body_limit`` (WAL bodies are never read).
        """
        chosen = sorted(self.objects) if keys is None else list(keys)

        def put(key: str) -> None:
            obj = self.objects[key]
            store.put(key, obj.body or bytes(min(obj.size, body_limit)))

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(put, chosen):
                pass
        return len(chosen)
