"""The one judge (pgdrill.judge): a drill can never pass by accident, in either direction. Pure.

Tests named after an issue-12 item would have passed a wrong verdict on the code before it.
"""

from __future__ import annotations

from pgdrill.drill.judge import judge
from pgdrill.drill.spec import Expectation, PathExpectation
from pgdrill.findings import Finding
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult, Verdict

RTO_TARGET = 300.0


def measure(path="recovery", lost=0, rpo=0.0, rto=4.0, expected=27, survivors=(), after_target=(), kind="archive"):
    return {"path": path, "kind": kind, "lost_writes": lost, "expected_writes": expected,
            "present_writes": expected - lost, "rpo_seconds": rpo, "rpo_basis": "commit_timestamp",
            "survivors_after_first_loss": list(survivors), "after_target_present": list(after_target),
            "unverifiable": [], "in_doubt": [], "lost": [{"seq": i} for i in range(lost)],
            "rto": None if rto is None else {"total_s": rto, "phases_s": {"restore": rto}}}


def result(codes=(), measures=None, recovered=27, expected=27, unverified=(), partial=()):
    r = DrillResult(drill="d", scenario={}, backend={}, started_at="now")
    r.ledger = {"recovered": recovered, "expected": expected}
    if codes:
        r.add_detector(DetectorOutcome("x", DetectorStatus.FINDINGS, "", [Finding(c, c, "x") for c in codes]))
    for name in unverified:
        r.add_detector(DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, "why",
                                       [Finding("COULD_NOT_VERIFY", "why", name)]))
    for name in partial:  # a detector with findings that could not run part of its checks
        r.add_detector(DetectorOutcome(name, DetectorStatus.FINDINGS, "some", [
            Finding("COULD_NOT_VERIFY", "one database unreachable", name),
            Finding("OWNERSHIP_MISMATCH", "x", name)]))
    r.measures = [measure()] if measures is None else measures
    worst = max(r.measures, key=lambda m: (m["rpo_seconds"], m["lost_writes"]), default=None)
    r.rpo = {"path": worst["path"], "seconds": worst["rpo_seconds"], "lost_writes": worst["lost_writes"]} \
        if worst else {}
    return r


LOSS = Expectation("loss_detected", ["WAL_GAP", "SILENT_DATA_LOSS"], recovered_rows=25, missing_rows=2,
                   lost_writes=2, rpo_seconds=[0.2, 30])
CLEAN = Expectation("complete", [], recovered_rows=27, missing_rows=0)
GAP = ["WAL_GAP", "SILENT_DATA_LOSS"]


def verdict(expect, r):
    return judge(expect, r, RTO_TARGET)


def test_loss_detected_passes_only_when_named_and_measured():
    v, reasons = verdict(LOSS, result(GAP, [measure(lost=2, rpo=0.7)], recovered=25))
    assert v == Verdict.PASSED, reasons


def test_loss_scenario_fails_when_pgdrill_misses_the_loss():
    v, reasons = verdict(LOSS, result([], [measure(lost=2, rpo=0.7)], recovered=25))
    assert v == Verdict.FAILED
    assert any("WAL_GAP" in r for r in reasons) and any("reported the recovery as clean" in r for r in reasons)


def test_wrong_lost_write_count_or_rpo_fails():
    v, reasons = verdict(LOSS, result(GAP, [measure(lost=3, rpo=0.7)], recovered=25))
    assert v == Verdict.FAILED and any("3 acknowledged write(s) lost, expected 2" in r for r in reasons)
    v, reasons = verdict(LOSS, result(GAP, [measure(lost=2, rpo=0.0)], recovered=25))
    assert v == Verdict.FAILED and any("RPO 0.000s outside" in r for r in reasons)


def test_wrong_row_count_fails():
    v, reasons = verdict(LOSS, result(GAP, [measure(lost=2, rpo=0.7)], recovered=26))
    assert v == Verdict.FAILED and "expected 25 recovered rows, found 26" in reasons[0]


def test_clean_scenario_fails_when_pgdrill_invents_a_loss():
    v, reasons = verdict(CLEAN, result(["WAL_GAP"]))
    assert v == Verdict.FAILED and "unexpected critical finding(s): WAL_GAP" in reasons[0]


def test_clean_scenario_fails_on_a_lost_write_even_without_findings():
    v, reasons = verdict(CLEAN, result([], [measure(lost=1, rpo=1.0)]))
    assert v == Verdict.FAILED and any("lost 1 acknowledged write" in r for r in reasons)


def test_issue12_item9_rto_above_the_target_fails():
    v, reasons = verdict(CLEAN, result([], [measure(rto=4000.0)]))
    assert v == Verdict.FAILED and any("RTO 4000.0s above the bound of 300s" in r for r in reasons)
    own_bound = Expectation("complete", max_rto_seconds=5000)
    assert verdict(own_bound, result([], [measure(rto=4000.0)]))[0] == Verdict.PASSED


def test_issue12_item9_bounded_loss_fails_on_corruption():
    bounded = Expectation("bounded_loss", max_rpo_seconds=10)
    tail = measure(lost=3, rpo=2.0)
    assert verdict(bounded, result(["SILENT_DATA_LOSS", "CONTENT_MISMATCH"], [tail]))[0] == Verdict.PASSED
    for code in ("DATA_CHECKSUM_FAILURE", "HEAP_CORRUPTION", "WAL_GAP"):
        v, reasons = verdict(bounded, result(["SILENT_DATA_LOSS", code], [tail]))
        assert v == Verdict.FAILED and code in reasons[0], code


def test_bounded_loss_is_only_the_tail():
    bounded = Expectation("bounded_loss", max_rpo_seconds=10)
    hole = measure(lost=1, rpo=2.0, survivors=[{"seq": 27}])
    v, reasons = verdict(bounded, result(["SILENT_DATA_LOSS"], [hole]))
    assert v == Verdict.FAILED and any("only the unarchived tail" in r for r in reasons)
    v, reasons = verdict(bounded, result(["SILENT_DATA_LOSS"], [measure(lost=3, rpo=11.0)]))
    assert v == Verdict.FAILED and any("above the scenario's bound" in r for r in reasons)


def test_issue12_item9_loss_drill_fails_on_unexpected_critical_finding():
    v, reasons = verdict(LOSS, result(GAP + ["INDEX_CORRUPTION"], [measure(lost=2, rpo=0.7)], recovered=25))
    assert v == Verdict.FAILED and "INDEX_CORRUPTION" in reasons[0]


def test_could_not_verify_is_never_a_pass():
    v, reasons = verdict(CLEAN, result([], unverified=["target"]))
    assert v == Verdict.COULD_NOT_VERIFY and "target" in reasons[0]


def test_issue12_item10_a_partial_could_not_verify_counts():
    v, reasons = verdict(Expectation("complete", allowed=["OWNERSHIP_MISMATCH"]), result([], partial=["physical"]))
    assert v == Verdict.COULD_NOT_VERIFY and "physical" in reasons[0]


def test_no_measured_path_cannot_pass():
    v, reasons = verdict(CLEAN, result([], measures=[]))
    assert v == Verdict.COULD_NOT_VERIFY and "no recovery path was measured" in reasons[0]


def test_rto_not_measured_cannot_pass():
    v, _ = verdict(CLEAN, result([], [measure(rto=None)]))
    assert v == Verdict.COULD_NOT_VERIFY


def test_a_write_after_the_pitr_target_fails():
    v, _ = verdict(CLEAN, result([], [measure(after_target=[{"seq": 28}])]))
    assert v == Verdict.FAILED


def test_issue12_item2_every_path_is_judged_not_only_the_first():
    # The failover path is clean; the archive path lost 10 writes.
    paths = [measure("failover", kind="failover", rpo=0.0), measure("s3_recovery", lost=10, rpo=3.0)]
    v, reasons = verdict(CLEAN, result([], paths))
    assert v == Verdict.FAILED and any("s3_recovery lost 10" in r for r in reasons)


def test_per_path_expectations():
    expect = Expectation("complete", paths={"failover": PathExpectation(lost_writes=[0, 5])})
    paths = [measure("failover", lost=2, rpo=0.01, kind="failover"), measure("s3_recovery")]
    assert verdict(expect, result([], paths))[0] == Verdict.PASSED
    paths = [measure("failover", lost=6, rpo=0.01, kind="failover"), measure("s3_recovery")]
    assert verdict(expect, result([], paths))[0] == Verdict.FAILED
    missing = Expectation("complete", paths={"s3_recovery": PathExpectation(lost_writes=0)})
    assert verdict(missing, result([], [measure("failover", kind="failover")]))[0] == Verdict.COULD_NOT_VERIFY


def test_required_detector_absent_is_could_not_verify():
    v, reasons = judge(CLEAN, result([]), RTO_TARGET, ["archive_after_failover"])
    assert v == Verdict.COULD_NOT_VERIFY and "archive_after_failover" in reasons[0]


def test_refused():
    refused = Expectation("refused", ["ARCHIVE_NOT_EMPTY"])
    r = result(["ARCHIVE_NOT_EMPTY"], measures=[])
    r.recovery = {"refused": True, "archive_untouched": True}
    assert verdict(refused, r)[0] == Verdict.PASSED
    r.recovery = {"refused": True, "archive_untouched": False}
    assert verdict(refused, r)[0] == Verdict.FAILED
    r.recovery = {"cluster": "postgres-cluster-v2", "promoted": True}  # it ran
    assert verdict(refused, r)[0] == Verdict.FAILED


def test_clean_passes():
    v, reasons = verdict(CLEAN, result([]))
    assert v == Verdict.PASSED and "worst path recovery" in reasons[0]


def test_bounded_loss_fails_when_nothing_survived_or_the_backup_lost_writes():
    bounded = Expectation("bounded_loss", max_rpo_seconds=10)
    everything = measure(lost=27, rpo=2.6)
    everything["rpo_lower_bound"] = True
    v, reasons = verdict(bounded, result(["SILENT_DATA_LOSS"], [everything]))
    assert v == Verdict.FAILED and any("no owed write survived" in r for r in reasons)
    baseline = measure(lost=1, rpo=1.0)
    baseline["lost"] = [{"seq": 3, "phase": "baseline"}]
    v, reasons = verdict(bounded, result(["SILENT_DATA_LOSS"], [baseline]))
    assert v == Verdict.FAILED and any("before the base backup" in r for r in reasons)


def test_a_missing_expected_finding_while_a_detector_was_blind_is_could_not_verify():
    v, reasons = verdict(LOSS, result(["SILENT_DATA_LOSS"], [measure(lost=2, rpo=0.7)], recovered=25,
                                      unverified=["archive"]))
    assert v == Verdict.COULD_NOT_VERIFY and any("WAL_GAP" in r and "archive" in r for r in reasons)


def test_refused_that_never_got_to_the_recovery_is_could_not_verify():
    r2 = result(["ARCHIVE_NOT_EMPTY"], measures=[])
    r2.recovery = {}
    assert verdict(Expectation("refused", ["ARCHIVE_NOT_EMPTY"]), r2)[0] == Verdict.COULD_NOT_VERIFY
