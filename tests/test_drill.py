"""The verdict logic: a drill can never pass by accident, in either direction."""

from pgdrill.drill import evaluate
from pgdrill.findings import Finding
from pgdrill.results import DetectorOutcome, DetectorStatus, DrillResult, Verdict
from pgdrill.scenario import Expectation


def result(codes=(), recovered=27, committed=27, unverified=()):
    r = DrillResult(drill="d", scenario={}, backend={}, started_at="now")
    r.ledger = {"recovered": recovered, "committed": committed}
    if codes:
        r.add_detector(DetectorOutcome("x", DetectorStatus.FINDINGS, "", [Finding(c, c, "x") for c in codes]))
    for name in unverified:
        r.add_detector(DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, "why",
                                       [Finding("COULD_NOT_VERIFY", "why", name)]))
    return r


LOSS = Expectation("loss_detected", ["WAL_GAP", "SILENT_DATA_LOSS"], recovered_rows=25, missing_rows=2)
CLEAN = Expectation("complete", [], recovered_rows=27, missing_rows=0)


def test_loss_detected_passes_only_when_named():
    verdict, _ = evaluate(LOSS, result(["WAL_GAP", "SILENT_DATA_LOSS"], recovered=25))
    assert verdict == Verdict.PASSED


def test_loss_scenario_fails_when_pgdrill_misses_the_loss():
    verdict, reasons = evaluate(LOSS, result([], recovered=25))
    assert verdict == Verdict.FAILED
    assert any("WAL_GAP" in r for r in reasons)
    assert any("reported the recovery as clean" in r for r in reasons)


def test_loss_scenario_fails_on_wrong_row_count():
    verdict, reasons = evaluate(LOSS, result(["WAL_GAP", "SILENT_DATA_LOSS"], recovered=26))
    assert verdict == Verdict.FAILED
    assert "expected 25 recovered rows, found 26" in reasons[0]


def test_clean_scenario_fails_when_pgdrill_invents_a_loss():
    verdict, reasons = evaluate(CLEAN, result(["WAL_GAP"]))
    assert verdict == Verdict.FAILED
    assert "clean recovery expected, but pgdrill reported WAL_GAP" in reasons[0]


def test_clean_scenario_fails_on_missing_rows_even_without_findings():
    verdict, _ = evaluate(CLEAN, result([], recovered=26))
    assert verdict == Verdict.FAILED


def test_could_not_verify_is_never_a_pass():
    verdict, reasons = evaluate(CLEAN, result([], unverified=["target"]))
    assert verdict == Verdict.COULD_NOT_VERIFY
    assert "target" in reasons[0]


def test_clean_passes():
    assert evaluate(CLEAN, result([]))[0] == Verdict.PASSED
