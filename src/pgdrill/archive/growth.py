"""Growth and rate of one serverName's archive, from the listing alone.

``archive_growth`` is the one definition, shared by the audit (report, table, metrics) and the
restore test's RTO forecast (how much WAL a recovery replays per backup interval).  It reads
nothing: sizes and LastModified come from the listing ``read_catalog`` already made, end times
from the ``backup.info`` files it already got.  The definitions, with their formulas, are in
docs/audit.md, "Growth and rate"; the docstrings below only point at the choices.

What counts as WAL for the rates: complete segments only (``kind == "segment"``, compressed or
not).  ``.history`` and ``.backup`` files are a few hundred bytes written once per timeline or
backup, and a ``.partial`` appears once per promotion: counting them would make a promotion
look like a burst of write load.  They are storage all the same, so ``stored_wal_bytes``
counts every WAL object.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pgdrill.archive.catalog import ArchiveCatalog, BaseBackup, parse_barman_time

HOUR = 3600.0
DAY = 86400.0
#: The rate windows, (label, seconds).  A day shows today's load; a week smooths out the daily
#: cycle and weekly batch jobs, so the projection uses the week.
WINDOWS: tuple[tuple[str, float], ...] = (("24h", DAY), ("7d", 7 * DAY))

_Segment = tuple[float, int]  # (LastModified as Unix time, size) of one complete segment


@dataclass(frozen=True)
class WalRate:
    """Complete segments whose LastModified falls in ``(start, now]``, per hour.

    ``start = max(now - window, oldest segment's LastModified)``: an archive younger than the
    window is measured over the span it covers (dividing by the whole window would report a
    3-hour-old archive at an eighth of its real rate over 24 h).  The interval is open at
    ``start``, so the oldest segment itself is not counted when it is the start: its upload
    carries WAL written before the span (one segment per ``step`` gives exactly 1/``step``).
    """

    window: str
    window_seconds: float
    covered_seconds: float
    """Length of ``(start, now]``: the window, or less for a younger archive; 0 if no segment."""
    segments: int
    bytes: int

    @property
    def segments_per_hour(self) -> float | None:
        """``None`` when nothing is covered (no segment, or only one instant of uploads)."""
        return self.segments * HOUR / self.covered_seconds if self.covered_seconds > 0 else None

    @property
    def bytes_per_hour(self) -> float | None:
        return self.bytes * HOUR / self.covered_seconds if self.covered_seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "window_seconds": self.window_seconds,
                "covered_seconds": round(self.covered_seconds, 3), "segments": self.segments,
                "bytes": self.bytes, "segments_per_hour": _round(self.segments_per_hour),
                "bytes_per_hour": _round(self.bytes_per_hour)}


@dataclass(frozen=True)
class BackupSize:
    """A completed base backup (status DONE, readable ``end_time``) and what it stores."""

    backup_id: str
    end_time: datetime
    stored_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "end_time": _iso(self.end_time), "stored_bytes": self.stored_bytes}


@dataclass(frozen=True)
class BackupInterval:
    """The WAL uploaded in ``(start, end]``: from one completed backup's end to the next one's
    (``before`` is ``None`` for the open interval from the newest backup to ``now``).

    Upload time stands for write time, accurate to ``archive_timeout``; this is the WAL a
    recovery from backup ``after`` replays to reach the moment the next backup ended.
    """

    after: str
    before: str | None
    start: datetime
    end: datetime
    wal_segments: int
    wal_bytes: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"after": self.after, "before": self.before, "start": _iso(self.start), "end": _iso(self.end),
                "seconds": round(self.seconds, 3), "wal_segments": self.wal_segments,
                "wal_bytes": self.wal_bytes}


@dataclass(frozen=True)
class ArchiveGrowth:
    """What ``archive_growth`` measured at one ``now`` (docs/audit.md, "Growth and rate")."""

    backups: tuple[BackupSize, ...]
    """Completed backups, oldest end first."""
    stored_base_bytes: int
    """Every object under ``base/`` but ``backup.info`` (failed backups cost storage too)."""
    stored_wal_bytes: int
    """Every WAL object: segments, ``.partial``, ``.history``, ``.backup``."""
    rates: tuple[WalRate, ...]
    intervals: tuple[BackupInterval, ...]
    """Between consecutive completed backups, oldest first."""
    since_newest: BackupInterval | None
    """From the newest completed backup to ``now``: what a recovery right now would replay."""
    retention_days: float
    backups_kept: int | None
    """``ceil(retention / median interval) + 1``; ``None`` without an interval."""
    projected_base_bytes: int | None
    projected_wal_bytes: int | None

    def rate(self, window: str) -> WalRate:
        return next(r for r in self.rates if r.window == window)

    @property
    def median_interval_seconds(self) -> float | None:
        return statistics.median(i.seconds for i in self.intervals) if self.intervals else None

    @property
    def wal_bytes_between_backups(self) -> tuple[int, ...]:
        return tuple(i.wal_bytes for i in self.intervals)

    @property
    def wal_bytes_between_backups_max(self) -> int | None:
        return max(self.wal_bytes_between_backups, default=None)

    @property
    def wal_bytes_between_backups_median(self) -> float | None:
        values = self.wal_bytes_between_backups
        return statistics.median(values) if values else None

    @property
    def projected_bytes(self) -> int | None:
        """Storage held at the retention window in steady state (docs/audit.md): the bucket's
        size, which is what S3 bills per GB-month."""
        if self.projected_base_bytes is None or self.projected_wal_bytes is None:
            return None
        return self.projected_base_bytes + self.projected_wal_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "backups": [b.to_dict() for b in self.backups],
            "stored_bytes": {"base": self.stored_base_bytes, "wal": self.stored_wal_bytes},
            "wal_rates": [r.to_dict() for r in self.rates],
            "intervals": [i.to_dict() for i in self.intervals],
            "since_newest": None if self.since_newest is None else self.since_newest.to_dict(),
            "median_interval_seconds": _round(self.median_interval_seconds),
            "wal_bytes_between_backups": {"max": self.wal_bytes_between_backups_max,
                                          "median": _round(self.wal_bytes_between_backups_median)},
            "projection": {"retention_days": self.retention_days, "backups_kept": self.backups_kept,
                           "base_bytes": self.projected_base_bytes, "wal_bytes": self.projected_wal_bytes,
                           "bytes": self.projected_bytes},
        }


def archive_growth(catalog: ArchiveCatalog, now: datetime, retention_days: float) -> ArchiveGrowth:
    """Sizes, WAL rates, WAL per backup interval and the storage projected at the retention
    window.  Linear in the listing (one pass per window, one bisect per segment).

    Nothing after ``now`` is counted (an audit run with an earlier ``now`` sees no later upload).
    """
    _check_aware(now)
    segments = _segments(catalog)
    oldest = min((t for t, _ in segments), default=None)
    rates = tuple(_rate(segments, oldest, now, label, seconds) for label, seconds in WINDOWS)
    backups = completed_backups(catalog)
    intervals, since_newest = _intervals(segments, backups, now)
    growth = ArchiveGrowth(
        backups=backups, stored_base_bytes=sum(catalog.stored_bytes.values()),
        stored_wal_bytes=sum(w.size for w in catalog.archive.wal), rates=rates, intervals=intervals,
        since_newest=since_newest, retention_days=retention_days, backups_kept=None,
        projected_base_bytes=None, projected_wal_bytes=None)
    return _with_projection(growth)


def wal_rate(catalog: ArchiveCatalog, now: datetime, window_seconds: float, label: str | None = None) -> WalRate:
    """The rate of complete segments over one window (``WalRate`` has the definition)."""
    _check_aware(now)
    segments = _segments(catalog)
    oldest = min((t for t, _ in segments), default=None)
    return _rate(segments, oldest, now, label or f"{window_seconds:g}s", window_seconds)


def completed_backups(catalog: ArchiveCatalog) -> tuple[BackupSize, ...]:
    """DONE backups with a readable ``end_time``, by end time (ties by id)."""
    found = []
    for backup in catalog.backups.values():
        end = _end_time(backup)
        if backup.done and end is not None:
            found.append(BackupSize(backup.backup_id, end, catalog.stored_bytes.get(backup.backup_id, 0)))
    return tuple(sorted(found, key=lambda b: (b.end_time, b.backup_id)))


# -- the parts ------------------------------------------------------------------------------

def _segments(catalog: ArchiveCatalog) -> list[_Segment]:
    # Unix times once: comparing datetimes per window and interval costs more than the rest.
    return [(w.last_modified.timestamp(), w.size) for w in catalog.archive.wal if w.name.kind == "segment"]


def _rate(segments: Iterable[_Segment], oldest: float | None, now: datetime, label: str,
          window: float) -> WalRate:
    if oldest is None:
        return WalRate(label, window, 0.0, 0, 0)
    stop = now.timestamp()
    start = max(stop - window, oldest)
    count = total = 0
    for t, size in segments:
        if start < t <= stop:
            count += 1
            total += size
    return WalRate(label, window, max(0.0, stop - start), count, total)


def _intervals(segments: Iterable[_Segment], backups: tuple[BackupSize, ...],
               now: datetime) -> tuple[tuple[BackupInterval, ...], BackupInterval | None]:
    if not backups:
        return (), None
    ends = [b.end_time.timestamp() for b in backups]
    stop = now.timestamp()
    counts = [0] * len(backups)  # counts[i]: segments in (ends[i], ends[i+1]] (or (ends[-1], now])
    sizes = [0] * len(backups)
    for when, size in segments:
        if when > stop:
            continue
        # bisect_left is the first end >= when, so ``when`` lies in (ends[i], ends[i + 1]]
        # for i one less: the interval after backup i (i = -1: before the first backup ended).
        i = bisect.bisect_left(ends, when) - 1
        if i >= 0:
            counts[i] += 1
            sizes[i] += size
    intervals = tuple(
        BackupInterval(backups[i].backup_id, backups[i + 1].backup_id, backups[i].end_time,
                       backups[i + 1].end_time, counts[i], sizes[i])
        for i in range(len(backups) - 1))
    last = backups[-1]
    since = (BackupInterval(last.backup_id, None, last.end_time, now, counts[-1], sizes[-1])
             if last.end_time <= now else None)
    return intervals, since


def _with_projection(growth: ArchiveGrowth) -> ArchiveGrowth:
    """``kept = ceil(R / I) + 1`` backups of the newest one's size, and ``R + I`` of WAL at the
    7-day rate (R retention, I median interval; docs/audit.md has why)."""
    interval = growth.median_interval_seconds
    per_hour = growth.rate("7d").bytes_per_hour
    if interval is None or interval <= 0 or not growth.backups:
        return growth
    retention = growth.retention_days * DAY
    kept = math.ceil(retention / interval) + 1
    base = kept * growth.backups[-1].stored_bytes
    wal = None if per_hour is None else round(per_hour * (retention + interval) / HOUR)
    return replace(growth, backups_kept=kept, projected_base_bytes=base, projected_wal_bytes=wal)


def _end_time(backup: BaseBackup) -> datetime | None:
    return parse_barman_time(backup.end_time)


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
