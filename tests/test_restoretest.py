"""Pure logic of ``pgdrill restore-test``: which backup, where the end is, what a check says,
the RTO forecast and the verdict.  The archives are synthetic (in memory, the audit's test
helper); the integration tests with real PostgreSQL and S3 are in test_restoretest_local.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pgdrill.archive.catalog import read_catalog
from pgdrill.audit.analyze import analyze
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.backends.base import RecoveryOutcome
from pgdrill.drill.judge import judge_restore_test
from pgdrill.errors import ConfigError, UsageError
from pgdrill.findings import Finding
from pgdrill.postgres.wal import Lsn
from pgdrill.restoretest.checks import end_of_archive, judge_check, target_outcome
from pgdrill.restoretest.forecast import rto_forecast
from pgdrill.restoretest.pgbin import binaries_major, choose_binaries
from pgdrill.restoretest.plan import plan_restore
from pgdrill.restoretest.spec import RestoreTestSpec, UserCheck
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult, Timing, Verdict

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SIZE = 16 << 20


def archive(skip: frozenset[int] = frozenset()) -> SyntheticArchive:
    synth = SyntheticArchive(root="pg/prod/")
    start = NOW - timedelta(hours=30)
    synth.add_wal_range(1, 1, 40, start, step=timedelta(minutes=30), skip=skip)
    synth.add_backup("20261130T060000", begin=2, end=3, begin_time=start + timedelta(minutes=30))
    synth.add_backup("20261201T060000", begin=30, end=31, begin_time=start + timedelta(hours=14, minutes=30))
    return synth


class Store:
    """The two calls the one reader makes, answered from memory."""

    def __init__(self, synth: SyntheticArchive):
        self.synth = synth

    def list(self, prefix: str):
        yield from self.synth.listing(prefix)

    def get(self, key: str) -> bytes:
        return self.synth.get(key)


def plan_for(synth: SyntheticArchive, **kw):
    catalog = read_catalog(Store(synth), "pg/prod/", "prod")
    report = analyze(catalog, AuditThresholds(), NOW, location="s3://b/pg/prod")
    return catalog, report, plan_restore(catalog, report, RestoreTestSpec(location="s3://b/pg/prod", **kw))


def test_the_newest_consistent_backup_first_then_the_older_ones_as_fallbacks():
    _, _, plan = plan_for(archive())
    assert [c.backup.backup_id for c in plan.candidates] == ["20261201T060000", "20261130T060000"]
    newest = plan.candidates[0]
    assert newest.end_segment is not None and newest.end_segment.number == 40
    assert newest.wal_segments == 11 and newest.gaps == () and newest.pg_major == 18


def test_a_newest_backup_whose_end_wal_is_missing_is_unusable_and_skipped():
    _, _, plan = plan_for(archive(skip=frozenset({31})))
    assert plan.candidates[0].backup.backup_id == "20261130T060000"
    assert [(s.audit.backup_id, s.unusable) for s in plan.skipped] == [("20261201T060000", True)]
    # and recovery from the fallback must cross the hole: it is named as a gap
    assert [g.first.number for g in plan.candidates[0].gaps] == [31]


def test_backup_id_and_targets_outside_the_window_are_one_line_errors():
    with pytest.raises(UsageError, match="does not exist"):
        plan_for(archive(), backup_id="20200101T000000")
    with pytest.raises(UsageError, match="before the recoverable window"):
        plan_for(archive(), target_time="2026-11-01T00:00:00Z")
    with pytest.raises(UsageError, match="after the end of the recoverable window"):
        plan_for(archive(), target_time="2026-12-02T00:00:00Z")
    _, _, plan = plan_for(archive(), target_time="2026-11-30T12:00:00Z")
    assert plan.candidates[0].backup.backup_id == "20261130T060000"


def test_spec_rejects_two_targets_and_bad_lsns_and_names_missing_variables(monkeypatch):
    with pytest.raises(ConfigError, match="at most one"):
        RestoreTestSpec(location="s3://b/p/s", target_lsn="0/1", target_name="x")
    with pytest.raises(ConfigError, match="not an LSN"):
        RestoreTestSpec(location="s3://b/p/s", target_lsn="nope")
    with pytest.raises(ConfigError, match="exactly one"):
        UserCheck("c", "SELECT 1", min_rows=1, equals="1")
    monkeypatch.delenv("RO_KEY", raising=False)
    with pytest.raises(UsageError, match="set RO_KEY and RO_SECRET"):
        RestoreTestSpec(location="s3://b/p/s", access_key_id_env="RO_KEY", secret_access_key_env="RO_SECRET").credentials()


def _outcome(fork: str) -> RecoveryOutcome:
    return RecoveryOutcome(None, True, "x", fork_lsn=Lsn.parse(fork), timeline=2)


def test_end_of_archive_passes_inside_the_newest_segment_and_fails_one_before():
    _, _, plan = plan_for(archive())
    newest = plan.candidates[0]  # archive ends in segment 40 = 0/28000000
    assert end_of_archive(newest, _outcome("0/280000A0"), SIZE).status == DetectorStatus.CLEAN
    assert end_of_archive(newest, _outcome("0/29000000"), SIZE).status == DetectorStatus.CLEAN
    early = end_of_archive(newest, _outcome("0/27FFFFF0"), SIZE)
    assert [f.code for f in early.findings] == ["REPLAY_STOPPED_EARLY"]
    assert early.findings[0].evidence["segments_not_replayed"] == 1


def test_a_hole_explains_an_early_stop_with_the_segments_named():
    _, _, plan = plan_for(archive(skip=frozenset({35, 36})))
    newest = plan.candidates[0]
    early = end_of_archive(newest, _outcome("0/23000000"), SIZE)
    gap = next(f for f in early.findings if f.code == "WAL_GAP")
    assert gap.evidence["missing"] == ["000000010000000000000023", "000000010000000000000024"]


def test_target_outcome_reads_postgresqls_words():
    _, _, plan = plan_for(archive())
    newest = plan.candidates[0]
    refused = target_outcome(newest, "0/28000000", [
        "2026-12-01 12:00:00.000 UTC [1] FATAL:  recovery ended before configured recovery target was reached"], True)
    assert [f.code for f in refused.findings] == ["RECOVERY_TARGET_UNREACHED"]
    reached = target_outcome(newest, "0/28000000", ["LOG:  recovery stopping after WAL location (LSN) \"0/28000028\""],
                             True)
    assert reached.status == DetectorStatus.CLEAN
    assert target_outcome(newest, "0/28000000", ["LOG: something else"], True).status == DetectorStatus.COULD_NOT_VERIFY


def test_user_check_expectations():
    end = NOW
    assert judge_check(UserCheck("n", "q", min_rows=3), [(3,)], end)[0] is None
    assert judge_check(UserCheck("n", "q", min_rows=3), [(1,), (2,)], end)[0] == "2 row(s), expected at least 3"
    assert judge_check(UserCheck("n", "q", equals="ok"), [("ok",)], end)[0] is None
    failed = judge_check(UserCheck("n", "q", equals="ok"), [("secret-value",)], end)[0]
    assert failed and "secret-value" not in failed
    fresh = UserCheck("n", "q", max_age_seconds=300)
    assert judge_check(fresh, [(NOW - timedelta(seconds=299),)], end) == (None, {"age_seconds": 299.0})
    assert judge_check(fresh, [(NOW - timedelta(seconds=301),)], end)[0]
    assert judge_check(fresh, [(NOW,)], None)[0] == ""  # no end time: could not verify


def test_forecast_scales_the_measured_rates_to_the_worst_interval():
    phases = {"preflight": 1.0, "restore": 10.0, "replay_to_consistency": 1.0, "replay_to_end": 9.0,
              "promote": 0.5, "first_write": 0.1}
    forecast = rto_forecast(phases, restored_stored_bytes=1_000_000_000, wal_segments_fetched=20,
                            newest_backup_stored_bytes=2_000_000_000, worst_interval_wal_segments=50,
                            wal_max_parallel=8)
    # 1 + 2e9/1e8 + 50 * (10 s / 20 segments) + 0.5 + 0.1
    assert forecast["seconds"] == pytest.approx(46.6)
    assert forecast["phases_s"]["replay"] == pytest.approx(25.0)
    assert "wal.maxParallel (8)" in forecast["assumptions"][0]
    assert rto_forecast(phases, 0, 1, 1, 1, 1)["seconds"] is None


def test_major_version_mismatch_names_both_versions_and_the_fix():
    from pgdrill.backends.local.postgres import pg_bin_dir

    embedded = binaries_major(pg_bin_dir())
    assert choose_binaries(embedded, None)[1] == embedded
    with pytest.raises(UsageError) as info:
        choose_binaries(embedded - 1, None)
    message = str(info.value)
    assert f"PostgreSQL {embedded - 1}" in message and f"PostgreSQL {embedded}" in message
    assert "local.pg_bin_dir" in message


def _result(findings=(), detectors=(), total=10.0) -> DrillResult:
    result = DrillResult("rt", {}, {}, "now", recovery={"promoted": True, "backup_id": "b"},
                         rto=Timing(total, {"restore": total}))
    result.findings.extend(findings)
    result.detectors.extend(detectors)
    return result


def test_restore_test_verdicts():
    assert judge_restore_test(_result(), 300)[0] == Verdict.PASSED
    assert judge_restore_test(_result(total=301), 300)[0] == Verdict.FAILED
    warning = Finding("OWNERSHIP_MISMATCH", "x", "ownership")
    assert judge_restore_test(_result([warning]), 300)[0] == Verdict.FAILED
    blind = DetectorOutcome("physical", DetectorStatus.COULD_NOT_VERIFY, "tool missing")
    assert judge_restore_test(_result(detectors=[blind]), 300)[0] == Verdict.COULD_NOT_VERIFY


def test_worst_interval_with_one_backup_is_its_chain_by_segment_number():
    from pgdrill.restoretest.result import worst_interval_wal_segments

    synth = SyntheticArchive(root="pg/prod/")
    start = NOW - timedelta(hours=3)
    # The archiver lagged: segments 1-3 (before and inside the backup) uploaded after it ended.
    synth.add_wal_range(1, 1, 10, start + timedelta(hours=1), step=timedelta(minutes=5))
    synth.add_backup("20261201T090000", begin=2, end=3, begin_time=start)
    catalog = read_catalog(Store(synth), "pg/prod/", "prod")
    report = analyze(catalog, AuditThresholds(), NOW, location="s3://b/pg/prod")
    newest = plan_restore(catalog, report, RestoreTestSpec(location="s3://b/pg/prod")).candidates[0]
    assert worst_interval_wal_segments(catalog, newest, NOW, 30) == 9  # segments 2..10


def test_a_newer_failed_backup_is_noted_not_restored():
    synth = archive()
    synth.add_backup("20261201T110000", status="FAILED", begin=39, end=40, begin_time=NOW - timedelta(hours=1),
                     error="connection lost")
    _, _, plan = plan_for(synth)
    assert plan.candidates[0].backup.backup_id == "20261201T060000"
    assert [(s.audit.backup_id, s.unusable) for s in plan.skipped] == [("20261201T110000", False)]
