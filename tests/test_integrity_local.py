"""Integrity faults end to end on the local backend: real PostgreSQL 18, real barman-cloud, real S3.

Each case: source with the ``integrity`` fixture, 24 baseline rows, base backup, writes, fault,
digests recorded on the source, disaster, recovery into a new cluster, then ``check_integrity``.
The clean control must report nothing, and each fault must be named for the right relation.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgdrill.backends import make_backend
from pgdrill.config import Config
from pgdrill.detectors.integrity import IntegrityCheck, check_integrity, record_digests
from pgdrill.errors import BackendUnavailable, UsageError
from pgdrill.faults.base import FaultContext, FaultRecord, FaultSpec
from pgdrill.faults.pages import CorruptHeapPageParams, CorruptIndexPageParams
from pgdrill.faults.registry import inject
from pgdrill.faults.wal import DeleteWalParams
from pgdrill.faults.writes import UpdateRowsParams
from pgdrill.findings import Finding
from pgdrill.results import DetectorStatus
from pgdrill.workload.fixture import load_fixture
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEGMENT = 16 * 1024 * 1024


@dataclass
class Outcome:
    faults: list[FaultRecord]
    check: IntegrityCheck
    recovered_rows: int
    ledger: Ledger

    def findings(self, code: str) -> list[Finding]:
        return [f for o in self.check.outcomes for f in o.findings if f.code == code]

    def codes(self) -> set[str]:
        return {f.code for o in self.check.outcomes for f in o.findings}


def run_case(tmp_path: Path, specs: list[FaultSpec], writes_after_backup: int = 3) -> Outcome:
    try:
        backend = make_backend(Config(), f"it-{secrets.token_hex(4)}")
    except BackendUnavailable as exc:
        pytest.skip(f"local backend unavailable: {exc}")
    try:
        fixture = load_fixture("integrity", FIXTURES)
        ledger = Ledger(tmp_path / "ledger.jsonl")
        source = backend.create_source("postgres-cluster")
        workload = Workload(backend, source, fixture, ledger)
        workload.seed()
        workload.write(24, "baseline")
        backend.take_backup(source)
        workload.write(writes_after_backup, "after_backup", switch_wal_each=True)
        ctx = FaultContext(backend, source, ledger, SEGMENT, workload)
        records = [inject(ctx, spec) for spec in specs]
        digests = record_digests(backend, source, fixture.database, tmp_path)
        assert digests.error is None and (tmp_path / "digests.json").is_file()
        backend.lose(source, destroy_data=False)
        recovery = backend.recover(source, backend.next_recovery_name(source.name), None, archive=True)
        assert recovery.promoted, recovery.fatal_lines
        check = check_integrity(backend, recovery.cluster, fixture.database, digests)
        print("integrity:", [(o.name, o.status.value, round(o.seconds, 2), o.summary) for o in check.outcomes],
              "record:", round(digests.seconds, 2))
        rows = backend.sql(recovery.cluster, "SELECT count(*) FROM moderation_event", dbname="ozone")[0][0]
        return Outcome(records, check, int(rows), ledger)
    finally:
        backend.close()


def test_clean_control_reports_no_integrity_finding(tmp_path: Path) -> None:
    outcome = run_case(tmp_path, [])
    assert {o.name: o.status for o in outcome.check.outcomes} == {
        "physical": DetectorStatus.CLEAN, "content": DetectorStatus.CLEAN}, \
        [f.message for o in outcome.check.outcomes for f in o.findings]
    relations = {r["relation"]: r for r in outcome.check.report["relations"] if r["database"] == "ozone"}
    assert relations["public.moderation_label"]["pages"] > 10
    assert relations["public.moderation_label"]["checksum_failures"] == 0
    assert relations["public.moderation_label"]["amcheck"] == "ok"
    assert relations["public.moderation_label_pkey"]["amcheck"] == "ok"
    assert {relations[t]["digest"] for t in ("public.moderation_event", "public.moderation_label",
                                             "public.moderation_note")} == {"match"}
    assert outcome.recovered_rows == 27


def test_corrupt_heap_page_is_named_with_its_block(tmp_path: Path) -> None:
    outcome = run_case(tmp_path, [FaultSpec("corrupt_heap_page", CorruptHeapPageParams("ozone", "moderation_label"))])
    block = outcome.faults[0].evidence["block"]
    checksum = outcome.findings("DATA_CHECKSUM_FAILURE")
    assert [(f.evidence["database"], f.evidence["relation"], f.evidence["block"]) for f in checksum] == [
        ("ozone", "public.moderation_label", block)]
    heap = outcome.findings("HEAP_CORRUPTION")
    assert heap and {(f.evidence["relation"], f.evidence["block"]) for f in heap} == {
        ("public.moderation_label", block)}
    assert not outcome.findings("INDEX_CORRUPTION")
    content = outcome.findings("CONTENT_MISMATCH")
    assert [f.evidence["table"] for f in content] == ["public.moderation_label"]
    assert all(r["unreadable"] for r in content[0].evidence["ranges"])
    assert outcome.recovered_rows == 27  # the row count of the ledger table is fine


def test_corrupt_index_page_is_index_corruption(tmp_path: Path) -> None:
    outcome = run_case(tmp_path, [FaultSpec("corrupt_index_page",
                                            CorruptIndexPageParams("ozone", "moderation_label_pkey"))])
    block = outcome.faults[0].evidence["block"]
    index = outcome.findings("INDEX_CORRUPTION")
    assert index and {f.evidence["relation"] for f in index} == {"public.moderation_label_pkey"}
    assert [(f.evidence["relation"], f.evidence["block"]) for f in outcome.findings("DATA_CHECKSUM_FAILURE")] == [
        ("public.moderation_label_pkey", block)]
    assert not outcome.findings("HEAP_CORRUPTION")
    assert not outcome.findings("CONTENT_MISMATCH")  # the table is intact; only its index is damaged


def test_corrupt_index_page_with_valid_checksum_only_amcheck_sees_it(tmp_path: Path) -> None:
    outcome = run_case(tmp_path, [FaultSpec("corrupt_index_page",
                                            CorruptIndexPageParams("ozone", "moderation_label_pkey", fix_checksum=True))])
    assert outcome.faults[0].evidence["checksum_before"] != outcome.faults[0].evidence["checksum_after"]
    assert not outcome.findings("DATA_CHECKSUM_FAILURE")
    index = outcome.findings("INDEX_CORRUPTION")
    assert index and {f.evidence["relation"] for f in index} == {"public.moderation_label_pkey"}
    assert not outcome.findings("CONTENT_MISMATCH")


def test_wal_gap_with_only_updates_is_a_content_mismatch_with_exact_row_count(tmp_path: Path) -> None:
    outcome = run_case(tmp_path, [
        FaultSpec("update_rows", UpdateRowsParams("ozone", "moderation_event", first_id=1, batches=3,
                                                  rows_per_batch=8)),
        FaultSpec("delete_wal", DeleteWalParams(position="middle"))], writes_after_backup=0)
    assert outcome.recovered_rows == 24 == len(outcome.ledger.ids("moderation_event"))  # the row count is right
    assert len(outcome.ledger) == 48  # 24 inserts and 24 updates, every one in the ledger
    content = outcome.findings("CONTENT_MISMATCH")
    assert [f.evidence["table"] for f in content] == ["public.moderation_event"]
    ranges = [(r["first_key"], r["last_key"]) for r in content[0].evidence["ranges"]]
    assert ranges == [(["9"], ["24"])], content[0].message  # batches 2 (deleted) and 3 (after the gap)
    assert not outcome.codes() & {"DATA_CHECKSUM_FAILURE", "HEAP_CORRUPTION", "INDEX_CORRUPTION"}


def test_unsupported_compression_and_missing_relation_are_usage_errors(tmp_path: Path) -> None:
    try:
        backend = make_backend(Config(), f"it-{secrets.token_hex(4)}")
    except BackendUnavailable as exc:
        pytest.skip(f"local backend unavailable: {exc}")
    try:
        source = backend.create_source("postgres-cluster")
        ctx = FaultContext(backend, source, Ledger(tmp_path / "ledger.jsonl"), SEGMENT)
        with pytest.raises(UsageError, match="does not exist"):
            inject(ctx, FaultSpec("corrupt_heap_page", CorruptHeapPageParams("postgres", "no_such_table")))
        # A database that cannot be connected to is a finding, not a crash.
        digests = record_digests(backend, source, "no_such_database", tmp_path)
        assert digests.error and "no_such_database" in digests.error
        check = check_integrity(backend, source, "no_such_database", digests)
        content = next(o for o in check.outcomes if o.name == "content")
        assert content.status == DetectorStatus.COULD_NOT_VERIFY
        # Digests recorded, but the database is gone on the cluster checked: DATABASE_UNREACHABLE.
        backend.sql(source, "CREATE DATABASE doomed")
        doomed = record_digests(backend, source, "doomed", tmp_path)
        assert doomed.error is None
        backend.sql(source, "DROP DATABASE doomed")
        check = check_integrity(backend, source, "doomed", doomed)
        content = next(o for o in check.outcomes if o.name == "content")
        assert [f.code for f in content.findings] == ["DATABASE_UNREACHABLE"]
        assert next(o for o in check.outcomes if o.name == "physical").status == DetectorStatus.CLEAN
    finally:
        backend.close()
