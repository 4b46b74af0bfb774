"""Pure-logic tests of ``pgdrill audit`` on synthetic listings (no S3, fast)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from pgdrill.archive.store import S3Location
from pgdrill.audit import (
    AuditThresholds,
    audit_main,
    exit_code,
    load_thresholds,
    render_prometheus,
    render_table,
    run_audit,
)
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.errors import ConfigError, S3Error
from pgdrill.postgres.wal import Lsn

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
LOCATION = S3Location("backups", "postgres/postgres-cluster")
STEP = timedelta(minutes=5)
FIRST = 0x10


class FakeStore:
    """Records every call, so tests can prove the audit only lists and gets metadata."""

    endpoint_url = None

    def __init__(self, synth: SyntheticArchive, fail: str | None = None):
        self.synth = synth
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    def list(self, prefix: str):
        self.calls.append(("list", prefix))
        if self.fail:
            raise S3Error(self.fail)
        yield from self.synth.listing(prefix)

    def get(self, key: str) -> bytes:
        self.calls.append(("get", key))
        return self.synth.get(key)

    def list_prefixes(self, prefix: str) -> list[str]:
        self.calls.append(("list_prefixes", prefix))
        names = {k[len(prefix):].split("/", 1)[0] for k in self.synth.keys() if k.startswith(prefix)}
        return sorted(prefix + n + "/" for n in names)


class Timeline:
    """A healthy archive: a backup every day at 02:00, a segment every 5 minutes up to ``now``."""

    def __init__(self, days: int = 31, now: datetime = NOW, skip: frozenset[int] = frozenset()):
        self.synth = SyntheticArchive()
        self.start = (now - timedelta(days=days)).replace(hour=2, minute=0)
        self.now = now
        slots = int((now - self.start) / STEP) - 1  # the segment being written is not archived
        self.last = FIRST + slots - 1
        # segment n is complete (and uploaded) at the end of its 5-minute slot
        self.synth.add_wal_range(1, FIRST, self.last, self.start + STEP, STEP, skip)
        self.backups: list[str] = []
        day = self.start
        while day < now - timedelta(minutes=10):
            self.add_backup(day)
            day += timedelta(days=1)

    def number_at(self, when: datetime) -> int:
        return FIRST + int((when - self.start) / STEP)

    def add_backup(self, when: datetime, **kw) -> str:
        backup_id = when.strftime("%Y%m%dT%H%M%S")
        n = self.number_at(when)
        kw.setdefault("begin", n)
        kw.setdefault("end", n)
        self.synth.add_backup(backup_id, begin_time=when, **kw)
        self.backups.append(backup_id)
        return backup_id


def audit(synth: SyntheticArchive, now: datetime = NOW, thresholds: AuditThresholds | None = None,
          store: FakeStore | None = None):
    return run_audit(LOCATION, store or FakeStore(synth), thresholds or AuditThresholds(), now)


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings)


# -- healthy ------------------------------------------------------------------------------

def test_healthy_archive_is_exit_0_with_every_backup_pitr_capable():
    tl = Timeline()
    report = audit(tl.synth)
    assert codes(report) == []
    assert exit_code(report) == 0 and report.status == "healthy"
    assert len(report.backups) == 32  # one a day, today included
    assert all(b.grade == "pitr_capable" for b in report.backups)
    assert report.consecutive_failures == 0
    assert report.newest_completed == tl.backups[-1]
    assert report.backup_age_seconds == pytest.approx((10 * 3600) - 120)
    assert report.wal.newest_segment == tl.synth.seg(1, tl.last).name
    assert report.wal.gaps == () and report.wal.uploading == ()
    assert report.wal.checked_from == tl.synth.seg(1, FIRST).name
    r = report.recoverability
    assert r.retention_covered and r.uncovered == () and len(r.periods) == 1
    assert r.earliest == tl.start + timedelta(minutes=2)
    assert r.latest_segment == report.wal.newest_segment


def test_audit_only_lists_once_and_gets_only_backup_info_and_history():
    tl = Timeline(days=3)
    tl.synth.add_history(2, [(1, Lsn(0x40_000000), "no recovery target specified")], NOW)
    store = FakeStore(tl.synth)
    audit(tl.synth, store=store)
    assert [c for c in store.calls if c[0] != "get"] == [("list", "postgres/postgres-cluster/")]
    fetched = [key for op, key in store.calls if op == "get"]
    assert fetched and all(k.endswith("/backup.info") or k.endswith(".history") for k in fetched)
    assert len(fetched) == len(tl.backups) + 1


def test_sibling_server_with_longer_name_is_not_listed():
    tl = Timeline(days=2)
    tl.synth.root = "postgres/postgres-cluster-v2/"
    tl.synth.add_wal(1, 0x999, NOW)  # would be the newest WAL if it leaked into the listing
    report = audit(tl.synth)
    assert report.wal.newest_segment != tl.synth.seg(1, 0x999).name


# -- WAL gaps -----------------------------------------------------------------------------

def test_planted_gap_is_reported_exactly_and_splits_the_recoverable_window():
    probe = Timeline(days=31)
    hole = probe.number_at(NOW - timedelta(days=10, hours=5))  # between two backups
    tl = Timeline(days=31, skip=frozenset({hole, hole + 1}))
    report = audit(tl.synth)
    assert exit_code(report) == 1
    assert [g.to_dict() for g in report.wal.gaps] == [{
        "timeline": 1, "first": tl.synth.seg(1, hole).name, "last": tl.synth.seg(1, hole + 1).name, "count": 2}]
    assert "WAL_GAP" in codes(report) and "RETENTION_NOT_COVERED" in codes(report)
    grades = {b.backup_id: b.grade for b in report.backups}
    older = [b for b in report.backups if b.begin_wal < tl.synth.seg(1, hole).name]
    newer = [b for b in report.backups if b.begin_wal > tl.synth.seg(1, hole).name]
    assert older and newer and len(older) + len(newer) == len(grades)
    assert all(b.grade == "consistent" and b.first_missing == tl.synth.seg(1, hole).name for b in older)
    assert all(b.reaches == tl.synth.seg(1, hole - 1).name for b in older)
    assert all(b.grade == "pitr_capable" for b in newer)
    r = report.recoverability
    assert len(r.periods) == 2 and not r.retention_covered
    (uncovered,) = r.uncovered
    assert uncovered.end == datetime.fromisoformat(newer[0].end_time.isoformat())


def test_no_gap_reported_for_the_same_archive_without_the_hole():
    assert audit(Timeline(days=31).synth).wal.gaps == ()


def test_hole_with_later_wal_uploaded_a_second_ago_is_a_pending_warning():
    probe = Timeline(days=2)
    tl = Timeline(days=2, skip=frozenset({probe.last - 1}))  # parallel upload: N+1 landed before N
    landed = tl.start + STEP * (tl.last - FIRST + 1)  # when the newest segment was uploaded
    report = audit(tl.synth, now=landed + timedelta(seconds=1))
    assert report.wal.gaps == ()
    assert [g.first.number for g in report.wal.uploading] == [probe.last - 1]
    # Never healthy: a disaster right now would lose everything after the hole.
    assert codes(report) == ["WAL_GAP_PENDING"]
    assert report.status == "alert" and exit_code(report) == 1
    assert next(f for f in report.findings if f.code == "WAL_GAP_PENDING").severity.value == "warning"


def test_issue15_a_hole_whose_next_segment_is_minutes_old_is_critical():
    # Before: "still uploading" for up to wal_max_age_minutes (10 min): HEALTHY, exit 0.
    probe = Timeline(days=2)
    tl = Timeline(days=2, skip=frozenset({probe.last - 1}))
    landed = tl.start + STEP * (tl.last - FIRST + 1)
    report = audit(tl.synth, now=landed + timedelta(minutes=3))
    assert [g.first.number for g in report.wal.gaps] == [probe.last - 1]
    assert "WAL_GAP" in codes(report) and exit_code(report) == 1
    # The headline says what a disaster now would get: up to the hole, losing the WAL after it.
    headline = render_table(report).splitlines()[2]
    assert headline.startswith("A disaster now recovers to") and "losing 10m00s" in headline, headline
    # ... and once the WAL after it is older than the WAL age limit, archiving is stale too.
    later = audit(tl.synth, now=NOW + timedelta(minutes=11))
    assert [g.first.number for g in later.wal.gaps] == [probe.last - 1]
    assert codes(later) == ["WAL_GAP", "WAL_STALE"]


def test_hole_further_back_than_the_grace_segments_is_lost_even_if_recent():
    probe = Timeline(days=2)
    tl = Timeline(days=2, skip=frozenset({probe.last - 9}))
    report = audit(tl.synth)
    assert [g.first.number for g in report.wal.gaps] == [probe.last - 9]
    # 9 segments back were uploaded 45 minutes ago: only a longer grace period covers them.
    assert audit(tl.synth, thresholds=AuditThresholds(wal_grace_segments=9)).wal.gaps != ()
    relaxed = audit(tl.synth, thresholds=AuditThresholds(wal_grace_segments=9, wal_max_age_minutes=60,
                                                         wal_gap_grace_seconds=3600))
    assert relaxed.wal.gaps == () and len(relaxed.wal.uploading) == 1


def test_missing_begin_wal_of_a_backup_is_a_gap_and_makes_it_not_consistent():
    probe = Timeline(days=3)
    begin = probe.number_at(probe.start + timedelta(days=2))
    tl = Timeline(days=3, skip=frozenset({begin}))
    report = audit(tl.synth)
    (bad,) = [b for b in report.backups if b.begin_wal == tl.synth.seg(1, begin).name]
    assert bad.grade == "not_consistent" and bad.reaches is None
    assert {"WAL_GAP", "BACKUP_NOT_CONSISTENT"} <= set(codes(report))


# -- backups --------------------------------------------------------------------------------

def test_stale_backup_alerts_after_25_hours_not_before():
    tl = Timeline(days=3)
    ended = datetime.fromisoformat(audit(tl.synth).backups[-1].end_time.isoformat())
    fresh_wal = Timeline(days=3, now=ended + timedelta(hours=26))  # keep WAL fresh at the later "now"
    for key in [k for k in fresh_wal.synth.objects if "/base/" in k]:
        del fresh_wal.synth.objects[key]
    for key, obj in tl.synth.objects.items():
        if "/base/" in key:
            fresh_wal.synth.objects[key] = obj
    stale = audit(fresh_wal.synth, now=ended + timedelta(hours=26))
    assert codes(stale) == ["BACKUP_STALE"] and exit_code(stale) == 1
    assert stale.backup_age_seconds == pytest.approx(26 * 3600)
    ok = audit(fresh_wal.synth, now=ended + timedelta(hours=24), thresholds=AuditThresholds(wal_max_age_minutes=200))
    assert "BACKUP_STALE" not in codes(ok)


def test_no_backup_at_all_is_stale():
    synth = SyntheticArchive()
    synth.add_wal_range(1, 1, 5, NOW - timedelta(minutes=25))
    report = audit(synth)
    assert "BACKUP_STALE" in codes(report) and report.newest_completed is None
    assert "pgdrill_base_backup_age_seconds{server_name=\"postgres-cluster\"} +Inf" in render_prometheus(report)


def test_two_consecutive_failures_alert_one_does_not():
    tl = Timeline(days=3)
    tl.add_backup(NOW - timedelta(hours=5), status="FAILED", error="failure uploading data (boom)")
    one = audit(tl.synth)
    assert codes(one) == ["BACKUP_FAILED"] and exit_code(one) == 0 and one.consecutive_failures == 1
    assert "boom" in one.findings[0].message
    tl.add_backup(NOW - timedelta(hours=1), status="FAILED", error="failure uploading data (boom)")
    two = audit(tl.synth)
    assert codes(two) == ["BACKUP_CONSECUTIVE_FAILURES", "BACKUP_FAILED", "BACKUP_FAILED"]
    assert exit_code(two) == 1 and two.consecutive_failures == 2


def test_failures_followed_by_a_success_do_not_count():
    tl = Timeline(days=3)
    tl.add_backup(NOW - timedelta(hours=6), status="FAILED")
    tl.add_backup(NOW - timedelta(hours=5), status="FAILED")
    tl.add_backup(NOW - timedelta(hours=4))
    report = audit(tl.synth)
    assert report.consecutive_failures == 0 and codes(report) == []


def test_started_backup_is_in_progress_when_recent_and_failed_when_abandoned():
    tl = Timeline(days=3)
    tl.add_backup(NOW - timedelta(minutes=30), status="STARTED")
    report = audit(tl.synth)
    assert report.backups[-1].grade == "in_progress" and report.consecutive_failures == 0
    tl.add_backup(NOW - timedelta(hours=40), status="STARTED", data_bytes=0)
    tl.add_backup(NOW - timedelta(hours=26), status="FAILED", data_bytes=0)
    # order by begin time: STARTED(-40h) < FAILED(-26h) < ... newest DONE is today 02:00 (-10h)
    assert audit(tl.synth).consecutive_failures == 0
    tl2 = Timeline(days=1)
    tl2.add_backup(NOW - timedelta(hours=9), status="FAILED", data_bytes=0)
    tl2.add_backup(NOW - timedelta(hours=8.5), status="STARTED", data_bytes=0)
    abandoned = audit(tl2.synth, now=NOW + timedelta(hours=20), thresholds=AuditThresholds(wal_max_age_minutes=2000))
    assert abandoned.consecutive_failures == 2
    assert abandoned.backups[-1].grade == "failed" and "died" in abandoned.backups[-1].error


def test_backup_without_backup_info_counts_as_failed():
    tl = Timeline(days=2)
    tl.add_backup(NOW - timedelta(hours=3), with_info=False)
    report = audit(tl.synth)
    assert report.backups[-1].status == "NO_INFO" and report.consecutive_failures == 1


def test_size_drop_alerts_below_half_of_the_median():
    tl = Timeline(days=6)
    newest = tl.backups[-1]
    key = f"{tl.synth.root}base/{newest}/data.tar"
    tl.synth.objects[key].size = int(24_463_360 * 0.4)
    report = audit(tl.synth)
    assert codes(report) == ["BACKUP_SIZE_DROP"] and exit_code(report) == 1
    assert report.backups[-1].size_ratio == pytest.approx(0.4, abs=0.01)
    tl.synth.objects[key].size = int(24_463_360 * 0.6)
    assert codes(audit(tl.synth)) == []


def test_size_is_only_compared_with_backups_of_the_same_compression():
    tl = Timeline(days=3)
    tl.add_backup(NOW - timedelta(hours=1), compression="gzip", data_bytes=3_000_000)
    report = audit(tl.synth)
    assert report.backups[-1].size_ratio is None and codes(report) == []


def test_end_wal_not_archived_is_waiting_then_not_consistent():
    """plugin-barman-cloud#652: on an idle database the end WAL may never be archived."""
    tl = Timeline(days=2)
    end = tl.last + 1  # not archived: nothing after the newest segment
    tl.add_backup(NOW - timedelta(minutes=4), begin=tl.last, end=end)
    report = audit(tl.synth)
    assert report.backups[-1].grade == "waiting_for_wal" and "BACKUP_NOT_CONSISTENT" not in codes(report)
    later = audit(tl.synth, now=NOW + timedelta(minutes=9), thresholds=AuditThresholds(wal_max_age_minutes=10))
    assert later.backups[-1].grade == "not_consistent"
    (finding,) = [f for f in later.findings if f.code == "BACKUP_NOT_CONSISTENT"]
    assert "#652" in finding.message and exit_code(later) == 1


# -- timelines -------------------------------------------------------------------------------

def _promoted(gap_on_tl2: bool = False, with_history: bool = True) -> tuple[SyntheticArchive, int]:
    """Backup on timeline 1, promotion mid-segment 0x30, timeline 2 continues."""
    synth = SyntheticArchive()
    t0 = NOW - timedelta(hours=3)
    synth.add_wal_range(1, 0x10, 0x2F, t0 + STEP)
    synth.add_wal(1, 0x30, t0 + 33 * STEP, suffix=".partial")
    skip = {0x40} if gap_on_tl2 else set()
    synth.add_wal_range(2, 0x30, 0x30 + 30, t0 + 33 * STEP, timedelta(minutes=2), skip)
    if with_history:
        synth.add_history(2, [(1, Lsn(0x30_0000E8), "no recovery target specified")], t0 + 33 * STEP)
    synth.add_backup("20261125T090000", begin=0x10, end=0x10, begin_time=t0)
    return synth, 0x30 + 30


def test_recovery_follows_the_timeline_switch_through_the_history_file():
    synth, last = _promoted()
    report = audit(synth)
    assert codes(report) == [], report.findings
    assert report.wal.timelines == (1, 2)
    assert report.wal.history_files == ("00000002.history",)
    assert report.wal.partial_files == ("000000010000000000000030.partial",)
    (backup,) = report.backups
    assert backup.grade == "pitr_capable" and backup.reaches == synth.seg(2, last).name
    assert report.wal.newest_segment == synth.seg(2, last).name


def test_gap_on_the_new_timeline_is_found():
    synth, _ = _promoted(gap_on_tl2=True)
    report = audit(synth)
    assert [(g.timeline, g.first.name) for g in report.wal.gaps] == [(2, synth.seg(2, 0x40).name)]


def test_missing_history_file_is_reported():
    synth, _ = _promoted(with_history=False)
    report = audit(synth)
    assert "TIMELINE_HISTORY_MISSING" in codes(report)
    assert report.backups[0].grade == "consistent"  # recovery stays on timeline 1


# -- stale WAL, S3 and metadata errors -------------------------------------------------------

def test_stale_wal_alerts_after_10_minutes_not_before():
    tl = Timeline(days=2)
    newest = tl.synth.objects[tl.synth.wal_key(1, tl.last)].last_modified
    assert "WAL_STALE" not in codes(audit(tl.synth, now=newest + timedelta(minutes=9)))
    stale = audit(tl.synth, now=newest + timedelta(minutes=11))
    assert codes(stale) == ["WAL_STALE"] and exit_code(stale) == 1
    assert stale.wal.age_seconds == pytest.approx(660)


def test_empty_archive_alerts_and_names_the_siblings():
    synth = SyntheticArchive(root="postgres/postgres-cluster-v2/")
    synth.add_wal(1, 1, NOW)
    report = audit(synth)
    assert codes(report) == ["BACKUP_STALE", "RETENTION_NOT_COVERED", "WAL_STALE"]
    assert exit_code(report) == 1
    assert "postgres-cluster-v2" in report.notes[0]


def test_s3_error_is_could_not_verify_with_no_value_metrics():
    report = audit(SyntheticArchive(), store=FakeStore(SyntheticArchive(), fail="S3 access denied for s3://x"))
    assert codes(report) == ["S3_ACCESS_ERROR"] and exit_code(report) == 2 and not report.verified
    metrics = render_prometheus(report)
    assert 'pgdrill_audit_success{server_name="postgres-cluster"} 0' in metrics
    assert "pgdrill_wal_gap_segments" not in metrics and "pgdrill_base_backup_age_seconds" not in metrics
    assert "COULD NOT VERIFY" in render_table(report)


def test_unreadable_backup_info_is_could_not_verify():
    tl = Timeline(days=2)
    key = f"{tl.synth.root}base/{tl.backups[-1]}/backup.info"
    tl.synth.objects[key].body = b"status=DONE\nbegin_wal=garbage\n"
    report = audit(tl.synth)
    assert codes(report) == ["METADATA_UNREADABLE"] and exit_code(report) == 2
    assert report.backups[-1].grade == "unreadable"
    # the newest backup's age is unknown: no value rather than a false stale alert
    assert "pgdrill_base_backup_age_seconds" not in render_prometheus(report)


@pytest.mark.parametrize("cut", ["mid_line", "before_status", "empty", "mid_utf8"])
def test_truncated_backup_info_is_unreadable_not_failed(cut):
    tl = Timeline(days=2)
    key = f"{tl.synth.root}base/{tl.backups[-1]}/backup.info"
    body = tl.synth.objects[key].body
    tl.synth.objects[key].body = {
        "mid_line": body[: len(body) // 2],
        "before_status": body[: body.index(b"\nstatus=") + 1],
        "empty": b"",
        "mid_utf8": body[: len(body) // 3] + "é".encode()[:1],
    }[cut]
    report = audit(tl.synth)
    # a cut-short backup.info is no proof the backup FAILED: could not verify, no BACKUP_FAILED
    assert codes(report) == ["METADATA_UNREADABLE"] and exit_code(report) == 2
    (finding,) = report.findings
    assert finding.evidence == {"key": key} and finding.message.startswith(key + ": ")
    assert report.backups[-1].grade == "unreadable"


def test_unreadable_history_is_could_not_verify():
    synth, _ = _promoted()
    synth.objects[f"{synth.root}wals/00000002.history"].body = b"not a history\n"
    report = audit(synth)
    assert "METADATA_UNREADABLE" in codes(report) and "TIMELINE_HISTORY_MISSING" not in codes(report)


def test_history_files_are_read_in_every_compression_barman_cloud_writes(monkeypatch):
    import bz2
    import gzip
    import lzma
    import sys

    plain = f"1\t{Lsn(0x30_0000E8)}\tno recovery target specified\n".encode()
    for suffix, pack in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        synth, _ = _promoted(with_history=False)
        synth.objects[f"{synth.root}wals/00000002.history{suffix}"] = type(
            synth.objects[synth.wal_key(1, 0x10)])(pack(plain), 1, NOW)
        report = audit(synth)
        assert codes(report) == [], (suffix, report.findings)
        assert report.wal.history_files == (f"00000002.history{suffix}",)

    # an optional library that is not installed, or a damaged body: a problem, not a crash
    monkeypatch.setitem(sys.modules, "lz4", None)
    for suffix, body, why in ((".lz4", b"\x04\x22\x4d\x18", "lz4 is not installed"),
                              (".gz", b"not gzip", "Not a gzipped file")):
        synth, _ = _promoted(with_history=False)
        key = f"{synth.root}wals/00000002.history{suffix}"
        synth.objects[key] = type(synth.objects[synth.wal_key(1, 0x10)])(body, 1, NOW)
        report = audit(synth)
        assert codes(report) == ["METADATA_UNREADABLE"], report.findings
        assert report.findings[0].evidence == {"key": key} and why in report.findings[0].message


def test_a_verified_alert_wins_over_an_unverified_part():
    probe = Timeline(days=3)
    tl = Timeline(days=3, skip=frozenset({probe.number_at(NOW - timedelta(days=1, hours=5))}))
    tl.synth.objects[f"{tl.synth.root}base/{tl.backups[0]}/backup.info"].body = b"begin_wal=x\n"
    report = audit(tl.synth)
    assert {"WAL_GAP", "METADATA_UNREADABLE"} <= set(codes(report))
    assert exit_code(report) == 1 and not report.verified


# -- retention ------------------------------------------------------------------------------

def test_young_archive_is_judged_from_its_first_backup():
    report = audit(Timeline(days=5).synth)
    assert report.recoverability.retention_covered
    assert "younger" in report.recoverability.note


def test_retention_not_covered_when_oldest_backups_were_lost():
    tl = Timeline(days=35)
    for backup_id in tl.backups[:10]:  # oldest backups deleted, WAL kept
        for key in [k for k in tl.synth.objects if f"/base/{backup_id}/" in k]:
            del tl.synth.objects[key]
    report = audit(tl.synth)
    assert "RETENTION_NOT_COVERED" in codes(report)
    (hole,) = report.recoverability.uncovered
    assert hole.start == NOW - timedelta(days=30)


# -- outputs --------------------------------------------------------------------------------

def test_outputs_render_and_serialise():
    probe = Timeline(days=3)
    tl = Timeline(days=3, skip=frozenset({probe.number_at(NOW - timedelta(days=1, hours=5))}))
    report = audit(tl.synth)
    table = render_table(report)
    assert "ALERT (exit 1)" in table and "WAL_GAP" in table and "PITR-capable" in table
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["status"] == "alert" and doc["wal"]["missing_segments"] == 1
    assert doc["base_backups"]["count"] == 4 and doc["thresholds"]["backup_max_age_hours"] == 25.0
    metrics = render_prometheus(report)
    # prometheus_client writes label names sorted: one more label may come before server_name or after
    sample = re.compile(r'^pgdrill_[a-z_]+\{([a-z_]+="[A-Za-z0-9_]+",)?server_name="postgres-cluster"'
                        r'(,[a-z_]+="[A-Za-z0-9_]+")?\} '
                        r'(-?[0-9.e+]+|\+Inf)$')
    for line in metrics.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'pgdrill_wal_gap_segments{server_name="postgres-cluster"} 1' in metrics
    assert 'pgdrill_audit_findings{code="WAL_GAP",server_name="postgres-cluster"} 1.0' in metrics
    assert 'pgdrill_audit_success{server_name="postgres-cluster"} 1' in metrics


# -- thresholds and CLI -------------------------------------------------------------------

def test_thresholds_defaults_are_the_adr_values():
    t = load_thresholds({}, "pgdrill.toml")
    assert (t.backup_max_age_hours, t.wal_max_age_minutes, t.backup_consecutive_failures,
            t.retention_days) == (25, 10, 2, 30)


def test_thresholds_load_strictly():
    assert load_thresholds({"wal_max_age_minutes": 15}, "x.toml").wal_max_age_minutes == 15.0
    with pytest.raises(ConfigError, match=r"x.toml: unknown key audit.wal_max_age \(allowed: "):
        load_thresholds({"wal_max_age": 15}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: audit.backup_consecutive_failures must be an integer"):
        load_thresholds({"backup_consecutive_failures": "2"}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: audit.size_drop_ratio must be between 0 and 1"):
        load_thresholds({"size_drop_ratio": 2}, "x.toml")


def test_cli_without_credentials_is_exit_2_one_line(monkeypatch, capsys, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGDRILL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    prom = tmp_path / "audit.prom"
    assert audit_main(["s3://backups/postgres/postgres-cluster", "--prometheus", str(prom)]) == 2
    out = capsys.readouterr()
    assert "AWS_ACCESS_KEY_ID" in out.out and "Traceback" not in out.out + out.err
    assert 'pgdrill_audit_success{server_name="postgres-cluster"} 0' in prom.read_text()


def test_cli_rejects_bad_url_and_bad_config(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    assert audit_main(["backups/postgres"]) == 2
    assert "not an S3 URL" in capsys.readouterr().err
    config = tmp_path / "pgdrill.toml"
    config.write_text("[audit]\nbackup_max_age = 3\n")
    assert audit_main(["s3://backups/postgres/x", "--config", str(config)]) == 2
    assert "unknown key audit.backup_max_age" in capsys.readouterr().err


def test_fast_listing_parser_gives_the_same_archive_as_the_general_one():
    from pgdrill.archive.catalog import ServerArchive, wal_object_name
    from pgdrill.postgres.wal import WalObjectName

    synth, _ = _promoted()
    root = synth.root
    synth.add_wal(1, 0x31, NOW, suffix=".gz")
    synth.add_wal(1, 0x32, NOW, suffix=".bz2")
    synth.add_wal(1, 0x33, NOW, suffix=".00000028.backup")
    for odd in ("wals/0000000100000000/garbage", "wals/0000000100000000/0000000100000001000001FF",
                "wals/0000000100000000/000000010000000100000001.gz.tmp", "other/file", "wals/x"):
        synth.objects[root + odd] = type(synth.objects[synth.wal_key(1, 0x31, ".gz")])(b"", 1, NOW)
    listing = synth.listing()
    for obj in listing:
        base = obj.key.rsplit("/", 1)[-1]
        assert wal_object_name(base) == WalObjectName.parse(base), base
    archive = ServerArchive.from_listing("postgres-cluster", root, listing)
    wal_keys = [o.key for o in listing if o.key.startswith(root + "wals/")
                and WalObjectName.parse(o.key.rsplit("/", 1)[-1]) is not None]
    assert [w.key for w in archive.wal] == wal_keys  # every WAL name, in listing order
    assert {o.key for o in archive.other} == {root + "other/file", root + "wals/x"} | {
        root + "wals/0000000100000000/" + n for n in (
            "garbage", "0000000100000001000001FF", "000000010000000100000001.gz.tmp")}
    assert archive.segments(1)[0x31].name.compression == "gz"


def test_prometheus_file_is_replaced_atomically(tmp_path):
    from pgdrill.audit import write_prometheus

    target = tmp_path / "textfile" / "pgdrill.prom"
    report = audit(Timeline(days=2).synth)
    write_prometheus(report, target)
    write_prometheus(report, target)
    assert [p.name for p in target.parent.iterdir()] == ["pgdrill.prom"]
    assert target.read_text() == render_prometheus(report)


def test_cli_reads_thresholds_from_the_config_file(monkeypatch, tmp_path):
    from pgdrill.audit.cli import _thresholds

    config = tmp_path / "pgdrill.toml"
    config.write_text('backend = "local"\n[audit]\nwal_max_age_minutes = 20\n')
    assert _thresholds(str(config)).wal_max_age_minutes == 20
    monkeypatch.setenv("PGDRILL_CONFIG", str(config))
    assert _thresholds(None).wal_max_age_minutes == 20
    monkeypatch.delenv("PGDRILL_CONFIG")
    monkeypatch.chdir(tmp_path / "..")
    assert _thresholds(None) == AuditThresholds()
