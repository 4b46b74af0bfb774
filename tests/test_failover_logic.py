"""Judgement of the node-level drills (pgdrill.failover), both directions, on synthetic listings.

The shapes are the ones the real drills produce on PostgreSQL 18 + barman-cloud: after a
failover at 0/9000000 the bucket holds timeline 1 up to 8, ``00000002.history`` and timeline 2
from 9; with an archiver backlog at the kill, timeline 1 stops at 6 and 7, 8 never arrive.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pgdrill.archive.catalog import ServerArchive
from pgdrill.archive.store import ObjectInfo
from pgdrill.detectors.failover import (
    ARCHIVING_STALLED_AFTER_FAILOVER,
    ARCHIVING_STALLED_AFTER_RESTART,
    FAILOVER_COMMITS_LOST,
    TIMELINE_HISTORY_MISSING,
    UNARCHIVED_WAL_LOST_AT_FAILOVER,
    assess_archive_resumption,
    failover_loss_findings,
)
from pgdrill.drill.measures import measure_path
from pgdrill.findings import RPO_EXCEEDED, SILENT_DATA_LOSS, WAL_GAP, Finding
from pgdrill.postgres.wal import SegmentName, parse_history
from pgdrill.results import DetectorStatus
from pgdrill.workload.ledger import LedgerEntry

ROOT = "pgdrill/run/postgres-cluster/"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
HISTORY_2 = {2: parse_history("1\t0/9000000\tno recovery target specified\n")}
BEGIN = SegmentName(1, 4)


def seg(tli: int, n: int) -> str:
    return SegmentName(tli, n).name


def listing(*names: str) -> ServerArchive:
    objs = [ObjectInfo(f"{ROOT}wals/{n}" if ".history" in n else f"{ROOT}wals/{n[:16]}/{n}", 100, T0)
            for n in names]
    return ServerArchive.from_listing("postgres-cluster", ROOT, objs)


def codes(findings: list[Finding]) -> set[str]:
    return {f.code for f in findings}


# -- archiving after a failover -------------------------------------------------------------

def test_failover_clean_archive_has_no_finding():
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 9)), "00000002.history.gz",
                      seg(1, 9) + ".partial.gz", seg(2, 9) + ".gz", seg(2, 0xA) + ".gz")
    result = assess_archive_resumption(archive, HISTORY_2, BEGIN, 2, [seg(2, 0xA)], "failover")
    assert result.findings == []
    assert result.summary["gaps"] == []
    assert [c["timeline"] for c in result.summary["chain"]] == [1, 2]
    assert result.outcome().status == DetectorStatus.CLEAN


def test_failover_archiving_stopped_for_good_is_critical():
    # plugin-barman-cloud#842: after promotion nothing of timeline 2 reaches the bucket.
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 9)))
    result = assess_archive_resumption(archive, {}, BEGIN, 2, [seg(2, 0xA)], "failover")
    assert ARCHIVING_STALLED_AFTER_FAILOVER in codes(result.findings)
    assert result.outcome().status == DetectorStatus.FINDINGS


def test_failover_history_present_but_segments_not_is_still_stalled():
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 9)), "00000002.history.gz")
    result = assess_archive_resumption(archive, HISTORY_2, BEGIN, 2, [seg(2, 0xA)], "failover")
    assert codes(result.findings) == {ARCHIVING_STALLED_AFTER_FAILOVER}


def test_failover_segments_without_history_cannot_be_followed():
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 9)), seg(2, 9) + ".gz", seg(2, 0xA) + ".gz")
    result = assess_archive_resumption(archive, {}, BEGIN, 2, [seg(2, 0xA)], "failover")
    assert codes(result.findings) == {TIMELINE_HISTORY_MISSING}


def test_failover_backlog_hole_on_old_timeline_is_named():
    # The old primary had archived up to 6; 7 and 8 were streamed but never archived.
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 7)), "00000002.history.gz",
                      seg(2, 9) + ".gz", seg(2, 0xA) + ".gz")
    result = assess_archive_resumption(archive, HISTORY_2, BEGIN, 2, [seg(2, 0xA)], "failover")
    assert codes(result.findings) == {WAL_GAP, UNARCHIVED_WAL_LOST_AT_FAILOVER}
    lost = next(f for f in result.findings if f.code == UNARCHIVED_WAL_LOST_AT_FAILOVER)
    assert lost.evidence["segments"] == [seg(1, 7), seg(1, 8)]


def test_backlog_hole_need_not_end_at_the_switch():
    # Seen on PostgreSQL 18: the upload in flight at the kill completes, so 6 is missing, 7 is not.
    archive = listing(*(seg(1, n) + ".gz" for n in (4, 5, 7)), "00000002.history.gz", seg(2, 8) + ".gz",
                      seg(2, 9) + ".gz")
    history = {2: parse_history("1\t0/80000D0\tno recovery target specified\n")}
    result = assess_archive_resumption(archive, history, BEGIN, 2, [seg(2, 9)], "failover",
                                       archived_before_event=seg(1, 4) + ".00000028.backup")
    assert codes(result.findings) == {WAL_GAP, UNARCHIVED_WAL_LOST_AT_FAILOVER}


def test_hole_the_old_primary_had_archived_is_a_gap_but_not_blamed_on_the_failover():
    # The old primary reported 7 archived before the kill: a missing 6 was deleted, not skipped.
    archive = listing(*(seg(1, n) + ".gz" for n in (4, 5, 7, 8)), "00000002.history.gz", seg(2, 0xA) + ".gz",
                      seg(2, 9) + ".gz")
    result = assess_archive_resumption(archive, HISTORY_2, BEGIN, 2, [seg(2, 0xA)], "failover",
                                       archived_before_event=seg(1, 7))
    assert codes(result.findings) == {WAL_GAP}


def test_restart_context_never_blames_a_failover():
    archive = listing(*(seg(1, n) + ".gz" for n in (4, 5, 7, 8)))
    result = assess_archive_resumption(archive, {}, BEGIN, 1, [seg(1, 8)], "restart")
    assert codes(result.findings) == {WAL_GAP}


# -- archiving after a crash restart ----------------------------------------------------------

def test_restart_clean_and_stalled():
    archive = listing(*(seg(1, n) + ".gz" for n in range(4, 0xB)))
    assert assess_archive_resumption(archive, {}, BEGIN, 1, [seg(1, 9), seg(1, 0xA)], "restart").findings == []
    stalled = listing(*(seg(1, n) + ".gz" for n in range(4, 8)))
    result = assess_archive_resumption(stalled, {}, BEGIN, 1, [seg(1, 9), seg(1, 0xA)], "restart")
    assert codes(result.findings) == {ARCHIVING_STALLED_AFTER_RESTART}
    assert result.summary["missing_expected"] == [seg(1, 9), seg(1, 0xA)]


def test_restart_backlog_segment_never_archived_is_a_gap():
    archive = listing(*(seg(1, n) + ".gz" for n in (4, 5, 6, 8, 9, 0xA)))
    result = assess_archive_resumption(archive, {}, BEGIN, 1, [seg(1, 0xA)], "restart")
    assert codes(result.findings) == {WAL_GAP}


# -- commits lost at failover --------------------------------------------------------------------

def entries(n: int) -> list[LedgerEntry]:
    return [LedgerEntry("t", i, (T0 + timedelta(milliseconds=10 * i)).isoformat(), f"0/{0x5000000 + i:X}",
                        seg(1, 5), "load", seq=i, version=i) for i in range(1, n + 1)]


def on_new_primary(ids) -> dict[str, dict[int, int]]:
    return {"t": {i: i for i in ids}}


def failover(ids, n=10):
    return measure_path("failover", "failover", "replica", entries(n), on_new_primary(ids), bound_seq=n)


def test_no_commit_lost():
    assert failover_loss_findings(failover(range(1, 11)), 300) == []


def test_async_tail_lost_is_a_warning_within_target():
    measure = failover(range(1, 9))
    assert codes(failover_loss_findings(measure, 300)) == {FAILOVER_COMMITS_LOST}
    assert measure.lost_writes == 2 and abs(measure.rpo_seconds - 0.02) < 1e-6


def test_async_tail_lost_beyond_target_exceeds_rpo():
    assert codes(failover_loss_findings(failover(range(1, 9)), 0.001)) == {FAILOVER_COMMITS_LOST, RPO_EXCEEDED}


def test_hole_before_a_surviving_commit_is_not_replication_lag():
    assert SILENT_DATA_LOSS in codes(failover_loss_findings(failover(set(range(1, 11)) - {4}), 300))
