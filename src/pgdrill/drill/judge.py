"""The one judge: a drill's verdict from its expectation and its result. Pure: no I/O.

Scenario drills, Python drills and node drills (failover, crash restart) are all judged here,
by the rules in docs/measures.md ("Verdicts"):

* FAILED when something was verified wrong: an expected finding missing, a critical finding
  nobody expected (corruption included, whatever the outcome), a lost-write count or an RPO
  outside the expected range, any loss on a ``complete`` drill, a loss that is more than the
  unarchived tail on a ``bounded_loss`` drill, a write after a point-in-time target present,
  an RTO above its bound.
* COULD_NOT_VERIFY when nothing failed but something needed to know did not run: a detector
  that could not run (in whole or in part), a required detector that never ran, a figure that
  could not be computed.
* PASSED otherwise.  ERROR and NOT_RUN are set by the runner, never here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pgdrill.drill.spec import Expectation
from pgdrill.findings import COULD_NOT_VERIFY, Severity
from pgdrill.results import DetectorStatus, DrillResult, Verdict

#: Codes that mean "data is gone or unreachable".
LOSS_CODES = frozenset({"WAL_GAP", "SILENT_DATA_LOSS", "REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED",
                        "RECOVERY_FAILED", "RPO_EXCEEDED", "WAL_SEGMENT_UNREADABLE", "CONTENT_MISMATCH",
                        "UNARCHIVED_WAL_LOST_AT_FAILOVER"})
#: What a ``bounded_loss`` drill may report without naming it: the unarchived tail is lost.
TAIL_LOSS_CODES = frozenset({"SILENT_DATA_LOSS", "RECOVERY_TARGET_UNREACHED", "CONTENT_MISMATCH"})


def _in_range(value: float, expected: int | float | Sequence[float]) -> bool:
    if isinstance(expected, (int, float)):
        return value == expected
    low, high = expected
    return low <= value <= high


def _describe(expected: int | Sequence[float]) -> str:
    return str(expected) if isinstance(expected, (int, float)) else f"[{expected[0]}, {expected[1]}]"


def _check_path(label: str, measure: dict[str, Any], lost_writes: Any, rpo_seconds: Any,
                failures: list[str], unverified: list[str]) -> None:
    if lost_writes is not None and not _in_range(measure["lost_writes"], lost_writes):
        failures.append(f"{label}: {measure['lost_writes']} acknowledged write(s) lost, expected "
                        f"{_describe(lost_writes)}")
    if rpo_seconds is not None:
        rpo = measure.get("rpo_seconds")
        if rpo is None:
            unverified.append(f"{label}: RPO could not be computed ({measure.get('rpo_basis')})")
        elif not _in_range(rpo, rpo_seconds):
            failures.append(f"{label}: RPO {rpo:.3f}s outside the expected range {_describe(rpo_seconds)}")


def judge(expect: Expectation, result: DrillResult, rto_bound_seconds: float,
          required_detectors: Sequence[str] = ()) -> tuple[Verdict, list[str]]:
    codes = result.finding_codes()
    failures: list[str] = []
    unverified: list[str] = []

    missing_codes = [c for c in expect.findings if c not in codes]
    blind = [d.name for d in result.detectors if d.status == DetectorStatus.COULD_NOT_VERIFY]
    if missing_codes and blind:
        # The detector that would have reported them may be the one that could not run.
        unverified.append(f"expected finding(s) not reported: {', '.join(missing_codes)}, while "
                          f"{', '.join(blind)} could not run")
    elif missing_codes:
        failures.append(f"expected finding(s) not reported: {', '.join(missing_codes)}")
    allowed = set(expect.findings) | set(expect.allowed)
    if expect.outcome == "bounded_loss":
        allowed |= TAIL_LOSS_CODES
    unexpected = sorted({f.code for f in result.findings
                         if f.severity == Severity.CRITICAL and f.code != COULD_NOT_VERIFY} - allowed)
    if unexpected:
        failures.append(f"unexpected critical finding(s): {', '.join(unexpected)}")

    if expect.outcome == "refused":
        recovery = result.recovery
        if not recovery:
            unverified.append("the recovery never reached the point where it is refused or runs")
        elif not recovery.get("refused"):
            failures.append("the recovery should have been refused, but it ran")
        elif not recovery.get("archive_untouched", False):
            failures.append("the recovery was refused, but objects under its serverName changed")
    else:
        _judge_recovered(expect, result, rto_bound_seconds, codes, failures, unverified)

    ran = {d.name for d in result.detectors}
    absent = [name for name in required_detectors if name not in ran]
    if absent:
        unverified.append(f"required detector(s) never ran: {', '.join(absent)}")
    for detector in result.detectors:
        if detector.status == DetectorStatus.COULD_NOT_VERIFY:
            unverified.append(f"detector {detector.name} could not run: {detector.summary}")
        elif any(f.code == COULD_NOT_VERIFY for f in detector.findings):
            unverified.append(f"detector {detector.name} could not run part of its checks")

    if failures:
        return Verdict.FAILED, failures
    if unverified:
        return Verdict.COULD_NOT_VERIFY, unverified
    headline = result.rpo.get("path")
    detail = f" ({', '.join(sorted(codes & set(expect.findings)))})" if expect.findings else ""
    figures = (f"; worst path {headline}: {result.rpo.get('lost_writes')} lost, RPO {result.rpo.get('seconds')}s"
               if headline else "")
    return Verdict.PASSED, [f"expectation met: {expect.outcome}{detail}{figures}"]


def _judge_recovered(expect: Expectation, result: DrillResult, rto_bound_seconds: float, codes: set[str],
                     failures: list[str], unverified: list[str]) -> None:
    measures = result.measures
    recovered, expected = result.ledger.get("recovered"), result.ledger.get("expected")
    if expect.recovered_rows is not None and recovered is not None and recovered != expect.recovered_rows:
        failures.append(f"expected {expect.recovered_rows} recovered rows, found {recovered}")
    if expect.missing_rows is not None and recovered is not None and expected is not None \
            and expected - recovered != expect.missing_rows:
        failures.append(f"expected {expect.missing_rows} missing rows, found {expected - recovered}")
    if not measures:
        unverified.append("no recovery path was measured (no recovered cluster to compare with the ledger)")
        return
    headline = next((m for m in measures if m["path"] == result.rpo.get("path")), measures[0])
    _check_path(f"worst path {headline['path']}", headline, expect.lost_writes, expect.rpo_seconds,
                failures, unverified)
    by_name = {m["path"]: m for m in measures}
    for name, spec in expect.paths.items():
        if name not in by_name:
            unverified.append(f"recovery path {name} was never measured")
            continue
        _check_path(f"path {name}", by_name[name], spec.lost_writes, spec.rpo_seconds, failures, unverified)
    bound = expect.max_rto_seconds if expect.max_rto_seconds is not None else rto_bound_seconds
    for m in measures:
        label = f"path {m['path']}"
        if m.get("unverifiable"):
            unverified.append(f"{label}: the effect of {len(m['unverifiable'])} write(s) cannot be read back "
                              "(the fixture table has no version_column)")
        if m.get("after_target_present"):
            failures.append(f"{label}: {len(m['after_target_present'])} write(s) after the recovery target "
                            "are present")
        total = (m.get("rto") or {}).get("total_s")
        if total is None:
            unverified.append(f"{label}: RTO not measured")
        elif total > bound:
            failures.append(f"{label}: RTO {total:.1f}s above the bound of {bound:.0f}s")
        if m.get("rpo_seconds") is None:
            unverified.append(f"{label}: RPO could not be computed ({m.get('rpo_basis')})")
        if expect.outcome == "complete" and m["lost_writes"]:
            if name_allowed_loss(m["path"], expect):
                continue
            failures.append(f"complete recovery expected, but {label} lost {m['lost_writes']} acknowledged "
                            "write(s)")
        if expect.outcome == "bounded_loss":
            if m["lost_writes"] and m.get("rpo_lower_bound"):
                failures.append(f"{label}: no owed write survived, that is not a bounded tail")
            inside_backup = [w for w in m.get("lost") or [] if w.get("phase") == "baseline"]
            if inside_backup:
                failures.append(f"{label}: {len(inside_backup)} write(s) from before the base backup lost")
            if m.get("survivors_after_first_loss"):
                failures.append(f"{label}: only the unarchived tail may be lost, but "
                                f"{len(m['survivors_after_first_loss'])} write(s) after the first lost one survived")
            rpo = m.get("rpo_seconds")
            if expect.max_rpo_seconds is not None and rpo is not None and rpo > expect.max_rpo_seconds:
                failures.append(f"{label}: RPO {rpo:.1f}s is above the scenario's bound of "
                                f"{expect.max_rpo_seconds:.0f}s")
    if expect.outcome == "complete" and recovered is not None and expected is not None and recovered != expected:
        failures.append(f"clean recovery expected, but only {recovered}/{expected} rows came back")
    if expect.outcome == "loss_detected" and not codes & LOSS_CODES:
        failures.append("a loss was expected, but pgdrill reported the recovery as clean")


def name_allowed_loss(path: str, expect: Expectation) -> bool:
    """A ``complete`` drill may state a loss range for one path (async commits at a failover)."""
    spec = expect.paths.get(path)
    return spec is not None and spec.lost_writes is not None


def judge_restore_test(result: DrillResult, rto_bound_seconds: float) -> tuple[Verdict, list[str]]:
    """A restore-test of a real archive has no ledger and no planted fault: every warning or
    critical finding is a verified problem of that archive (FAILED), an RTO above the bound too;
    a check that could not run makes it COULD_NOT_VERIFY; otherwise PASSED."""
    failures = sorted({f"{f.code}: {f.message}" for f in result.findings
                       if f.severity in (Severity.WARNING, Severity.CRITICAL) and f.code != COULD_NOT_VERIFY})
    unverified = [f"detector {d.name} could not run: {d.summary}" for d in result.detectors
                  if d.status == DetectorStatus.COULD_NOT_VERIFY]
    unverified += [f"detector {d.name} could not run part of its checks" for d in result.detectors
                   if d.status != DetectorStatus.COULD_NOT_VERIFY and any(f.code == COULD_NOT_VERIFY for f in d.findings)]
    total = result.rto.total
    if result.recovery.get("promoted"):
        if total is None:
            unverified.append("RTO not measured")
        elif total > rto_bound_seconds:
            failures.append(f"RTO {total:.1f}s above the bound of {rto_bound_seconds:.0f}s")
    if failures:
        return Verdict.FAILED, failures
    if unverified:
        return Verdict.COULD_NOT_VERIFY, unverified
    return Verdict.PASSED, [f"restored {result.recovery.get('backup_id')} to the end of the archive in "
                            f"{total:.1f}s; every check passed"]
