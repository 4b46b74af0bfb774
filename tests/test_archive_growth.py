"""Growth and rate from the listing alone (``pgdrill.archive.growth``; docs/audit.md).

Every figure here is computed by hand from the planted archive, and each archive is built so
that a wrong definition gives a different number: a closed window (the segment exactly 24 h
old), the whole window as divisor for a young archive, the oldest segment counted at the start
of its own span, ``.partial``/``.history``/``.backup`` files or uploads after ``now`` counted as
segments, a FAILED backup taken as an interval boundary.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pgdrill.archive.catalog import read_catalog
from pgdrill.archive.growth import archive_growth, completed_backups, wal_rate
from pgdrill.audit import AuditThresholds, render_table
from pgdrill.audit.analyze import analyze
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.postgres.wal import Lsn

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
MIB = 1 << 20


class _Store:
    def __init__(self, synth: SyntheticArchive):
        self.synth = synth

    def list(self, prefix: str):
        return iter(self.synth.listing(prefix))

    def get(self, key: str) -> bytes:
        return self.synth.get(key)


def catalog(synth: SyntheticArchive):
    return read_catalog(_Store(synth), synth.root, "postgres-cluster")


def windows_archive() -> SyntheticArchive:
    """Hourly 1000-byte segments from 240 h to exactly 24 h ago, then 2000-byte segments every
    15 min from 23h45m ago to now, plus objects that are not segments and one from the future."""
    synth = SyntheticArchive()
    number = 1
    for k in range(240, 23, -1):  # 217 hourly segments, the last one at exactly now - 24 h
        synth.add_wal(1, number, NOW - k * H, size=1000)
        number += 1
    for j in range(95, -1, -1):  # 96 segments in (now - 24 h, now]; the one at now compressed
        synth.add_wal(1, number, NOW - j * timedelta(minutes=15), suffix=".gz" if j == 0 else "", size=2000)
        number += 1
    synth.add_wal(1, number, NOW - H, suffix=".partial", size=16 * MIB)
    synth.add_wal(1, number, NOW - H, suffix=".00000028.backup", size=300)
    synth.add_history(2, [(1, Lsn(0x1000028), "no recovery target specified")], NOW - H)
    synth.add_wal(2, number + 1, NOW + timedelta(minutes=1), size=5000)  # after the audit's clock
    return synth


def test_rates_over_24h_and_7d_count_complete_segments_in_the_half_open_window():
    growth = archive_growth(catalog(windows_archive()), NOW, retention_days=30)
    day, week = growth.rate("24h"), growth.rate("7d")
    # 24 h: the 96 quarter-hourly ones; the hourly one at exactly now - 24 h is outside (now-24h, now]
    assert (day.segments, day.bytes, day.covered_seconds) == (96, 96 * 2000, 86400)
    assert day.segments_per_hour == 4.0 and day.bytes_per_hour == 8000.0
    # 7 d: hourly ones from 167 h to 24 h ago (144 of them; the one at exactly 168 h is out) + 96
    assert (week.segments, week.bytes, week.covered_seconds) == (240, 144 * 1000 + 96 * 2000, 7 * 86400)
    assert week.segments_per_hour == pytest.approx(240 / 168) and week.bytes_per_hour == 2000.0
    # every WAL object is storage, the future one included (it is in the listing)
    history = len("1\t0/1000028\tno recovery target specified\n")
    assert growth.stored_wal_bytes == 217 * 1000 + 96 * 2000 + 16 * MIB + 300 + history + 5000


def test_an_archive_younger_than_the_window_is_measured_over_the_span_it_covers():
    synth = SyntheticArchive()
    synth.add_wal_range(1, 1, 19, NOW - 3 * H, step=timedelta(minutes=10))  # 19 uploads, the last at now
    growth = archive_growth(catalog(synth), NOW, retention_days=30)
    for window in ("24h", "7d"):
        rate = growth.rate(window)
        # (now - 3 h, now] holds 18 uploads: one every 10 minutes is 6 an hour, exactly
        assert (rate.segments, rate.covered_seconds, rate.segments_per_hour) == (18, 3 * 3600, 6.0), window
        assert rate.bytes_per_hour == 6 * synth.segment_size


def test_rates_without_segments_or_without_recent_ones():
    empty = archive_growth(catalog(SyntheticArchive()), NOW, retention_days=30)
    assert [(r.segments, r.covered_seconds, r.segments_per_hour, r.bytes_per_hour) for r in empty.rates] == \
        [(0, 0.0, None, None)] * 2
    stalled = SyntheticArchive()
    stalled.add_wal_range(1, 1, 10, NOW - timedelta(days=10), step=H)
    growth = archive_growth(catalog(stalled), NOW, retention_days=30)
    # archiving stopped 10 days ago: a true zero over full windows, not "unknown"
    assert [(r.segments_per_hour, r.covered_seconds) for r in growth.rates] == [(0.0, 86400), (0.0, 7 * 86400)]
    one = SyntheticArchive()
    one.add_wal(1, 1, NOW)
    assert wal_rate(catalog(one), NOW, 3600).segments_per_hour is None  # one instant covers no time


def test_wal_rate_is_the_same_definition_for_any_window():
    cat = catalog(windows_archive())
    hour = wal_rate(cat, NOW, 3600, "1h")
    assert (hour.window, hour.segments, hour.bytes_per_hour) == ("1h", 4, 8000.0)  # 45, 30, 15 min ago, now
    assert wal_rate(cat, NOW, 86400).segments == archive_growth(cat, NOW, 30).rate("24h").segments
    with pytest.raises(ValueError, match="timezone-aware"):
        wal_rate(cat, NOW.replace(tzinfo=None), 3600)


def intervals_archive() -> SyntheticArchive:
    """Four completed backups ending 72, 48, 24 and 12 hours ago (intervals 24, 24 and 12 h), a
    FAILED one between them, and segments sized so each sum names its members."""
    synth = SyntheticArchive()
    ends = [NOW - 72 * H, NOW - 48 * H, NOW - 24 * H, NOW - 12 * H]
    for i, (end, data) in enumerate(zip(ends, (10_000, 20_000, 30_000, 40_000))):
        begin = end - timedelta(minutes=2)
        synth.add_backup(begin.strftime("%Y%m%dT%H%M%S"), begin=10 * i + 1, end=10 * i + 1, begin_time=begin,
                         data_bytes=data)
    failed = NOW - 30 * H
    synth.add_backup(failed.strftime("%Y%m%dT%H%M%S"), status="FAILED", error="boom", begin=25, end=25,
                     begin_time=failed, data_bytes=999)
    for number, when, size in [
        (1, NOW - 200 * H, 7),  # before the first backup ended (and older than 7 days)
        (2, ends[0], 11),  # exactly at the first end: (.., end0], not in the first interval
        (3, ends[0] + H, 100),  # (end0, end1]
        (4, ends[1], 200),  # (end0, end1]: an interval is closed at its end
        (5, ends[1] + timedelta(seconds=1), 1000),  # (end1, end2]; the FAILED backup splits nothing
        (6, NOW - H, 5),  # (end3, now]
        (7, NOW, 84),  # (end3, now]
        (8, NOW + H, 10_000),  # after now: nowhere
    ]:
        synth.add_wal(1, number, when, size=size)
    return synth


def test_wal_between_consecutive_completed_backups():
    growth = archive_growth(catalog(intervals_archive()), NOW, retention_days=30)
    assert [b.stored_bytes for b in growth.backups] == [10_000, 20_000, 30_000, 40_000]
    assert [(i.seconds / 3600, i.wal_segments, i.wal_bytes) for i in growth.intervals] == \
        [(24, 2, 300), (24, 1, 1000), (12, 0, 0)]
    assert growth.wal_bytes_between_backups == (300, 1000, 0)
    assert (growth.wal_bytes_between_backups_max, growth.wal_bytes_between_backups_median) == (1000, 300)
    assert growth.median_interval_seconds == 24 * 3600
    since = growth.since_newest
    assert since is not None and (since.before, since.seconds, since.wal_segments, since.wal_bytes) == \
        (None, 12 * 3600, 2, 89)
    assert growth.stored_base_bytes == 100_000 + 999  # the failed backup is stored too


def test_projection_at_the_retention_window():
    growth = archive_growth(catalog(intervals_archive()), NOW, retention_days=30)
    # 30 days of daily backups: ceil(30 d / 1 d) + 1 = 31 kept (the extra one starts the window),
    # each the size of the newest (40,000 bytes)
    assert growth.backups_kept == 31 and growth.projected_base_bytes == 31 * 40_000
    # WAL over (now - 7 d, now]: 11 + 100 + 200 + 1000 + 5 + 84 = 1400 bytes in 168 h, kept for
    # retention + one interval = 744 h: 1400 * 744 / 168 = 6200
    assert growth.rate("7d").bytes == 1400 and growth.projected_wal_bytes == 6200
    assert growth.projected_bytes == 31 * 40_000 + 6200
    shorter = archive_growth(catalog(intervals_archive()), NOW, retention_days=7.5)
    assert shorter.backups_kept == 9  # ceil(7.5) + 1: the upper bound of what the window holds


def test_no_interval_no_projection():
    synth = SyntheticArchive()
    synth.add_wal_range(1, 1, 10, NOW - 10 * H, step=H)
    growth = archive_growth(catalog(synth), NOW, retention_days=30)
    assert (growth.backups, growth.intervals, growth.since_newest) == ((), (), None)
    assert (growth.backups_kept, growth.projected_bytes, growth.median_interval_seconds) == (None, None, None)
    synth.add_backup("20261125T020000", begin=2, end=2, begin_time=NOW - 10 * H)
    one = archive_growth(catalog(synth), NOW, retention_days=30)
    assert len(one.backups) == 1 and one.intervals == () and one.projected_bytes is None
    assert one.since_newest is not None and one.since_newest.wal_segments == 9  # 03:00 .. 11:00, after 02:02


def test_only_done_backups_with_an_end_time_are_completed():
    synth = intervals_archive()
    synth.add_backup("20261125T113000", status="STARTED", begin=60, end=60, begin_time=NOW - timedelta(minutes=30),
                     data_bytes=0)
    assert [b.backup_id for b in completed_backups(catalog(synth))] == [
        (NOW - h * H - timedelta(minutes=2)).strftime("%Y%m%dT%H%M%S") for h in (72, 48, 24, 12)]


def test_the_audit_report_carries_growth_in_json_and_the_table():
    synth = intervals_archive()
    report = analyze(catalog(synth), AuditThresholds(), NOW, location="s3://backups/postgres/postgres-cluster")
    assert report.growth is not None and report.growth.projected_bytes == 31 * 40_000 + 6200
    doc = json.loads(json.dumps(report.to_dict()))["growth"]
    assert doc["stored_bytes"] == {"base": 100_999, "wal": 7 + 11 + 100 + 200 + 1000 + 5 + 84 + 10_000}
    assert [r["segments_per_hour"] for r in doc["wal_rates"]] == [0.083, 0.036]  # 2/24, 6/168
    assert doc["wal_bytes_between_backups"] == {"max": 1000, "median": 300}
    assert doc["projection"] == {"retention_days": 30.0, "backups_kept": 31, "base_bytes": 1_240_000,
                                 "wal_bytes": 6200, "bytes": 1_246_200}
    table = render_table(report)
    assert "Growth: WAL 0.08 segments/h, 4 B/h (24h); 0.04 segments/h, 8 B/h (7d); " \
        "stored: base 98.6 KiB, WAL 11.1 KiB" in table
    assert "  WAL per backup interval (median 1d00h): median 300 B, max 1000 B; projected at 30-day " \
        "retention: 1.2 MiB (31 backups of 39.1 KiB + 6.1 KiB of WAL)" in table
