"""What a restore-test verifies on the restored cluster, each reported as a detector:

* ``end_of_archive`` — where the recovery ended (its new timeline's switch point) against the
  newest archived segment of the backup's chain: earlier is ``REPLAY_STOPPED_EARLY`` and, when a
  hole explains it, ``WAL_GAP`` naming the segments — however cleanly PostgreSQL exited.
* ``target`` — PostgreSQL's own word: a second recovery to an LSN inside the newest archived
  segment, which PostgreSQL refuses (FATAL) when WAL before it is missing.
* ``ownership`` and ``user_checks`` — ADR 007's step 4 and the team's own SQL.  Query results
  are production data: evidence holds their SHA-256, never the values.

``physical`` (pg_checksums + pg_amcheck) is the drills' detector, run as is.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

from pgdrill.backends.base import RecoveryOutcome
from pgdrill.detectors.base import could_not
from pgdrill.findings import Finding
from pgdrill.findings.codes import (
    BACKUP_UNUSABLE,
    OWNERSHIP_MISMATCH,
    RECOVERY_TARGET_UNREACHED,
    REPLAY_STOPPED_EARLY,
    USER_CHECK_FAILED,
    WAL_GAP,
)
from pgdrill.restoretest.plan import Candidate
from pgdrill.restoretest.spec import OwnerCheck, UserCheck
from pgdrill.results import DetectorOutcome, DetectorStatus

MAX_NAMED = 20


def end_of_archive(candidate: Candidate, outcome: RecoveryOutcome, segment_size: int) -> DetectorOutcome:
    """Pure: did the promoted recovery replay up to the newest archived segment of its chain?"""
    started = time.monotonic()
    end = candidate.end_segment
    if end is None:
        return could_not("end_of_archive", "the archive holds no WAL on the backup's chain")
    if outcome.fork_lsn is None:
        return could_not("end_of_archive", "the recovered cluster's timeline history gave no switch point",
                         started)
    stopped = outcome.fork_lsn
    stopped_segment = stopped.segment(segment_size)
    evidence: dict[str, Any] = {"stopped_at_lsn": str(stopped), "end_of_archive": end.name,
                                "timeline": outcome.timeline, "backup_id": candidate.backup.backup_id}
    if stopped_segment >= end.number:
        return DetectorOutcome("end_of_archive", DetectorStatus.CLEAN,
                               f"recovery replayed to {stopped}, inside the newest archived segment {end.name}",
                               [], time.monotonic() - started)
    never = end.number - stopped_segment
    findings = [Finding(REPLAY_STOPPED_EARLY, (
        f"recovery from {candidate.backup.backup_id} ended at {stopped} and promoted, but the archive holds WAL "
        f"up to {end.name}: {never} segment(s) of archived WAL were never replayed"), "end_of_archive",
        evidence={**evidence, "segments_not_replayed": never})]
    for gap in candidate.gaps:
        names = gap.names
        findings.append(Finding(WAL_GAP, (
            f"WAL segment(s) {gap.first.name}..{gap.last.name} ({gap.count}) missing from the archive, with later "
            "WAL present: recovery cannot pass them"), "end_of_archive",
            evidence={**gap.to_dict(), "missing": names[:MAX_NAMED], "missing_count": len(names)}))
    return DetectorOutcome("end_of_archive", DetectorStatus.FINDINGS,
                           f"recovery stopped {never} segment(s) before the end of the archive ({end.name})",
                           findings, time.monotonic() - started)


def target_outcome(candidate: Candidate, target: str, log: list[str], stopped: bool) -> DetectorOutcome:
    """Pure: what the target check's server log says (``recovery_target_action = shutdown``)."""
    started = time.monotonic()
    end = candidate.end_segment
    evidence = {"recovery_target_lsn": target, "end_of_archive": end.name if end else None}
    if any("recovery ended before configured recovery target was reached" in ln for ln in log):
        fatal = next(ln for ln in log if "recovery ended before configured recovery target" in ln)
        return DetectorOutcome("target", DetectorStatus.FINDINGS, "PostgreSQL refused to reach the end of the archive", [
            Finding(RECOVERY_TARGET_UNREACHED, (
                f"a recovery to {target} (inside {evidence['end_of_archive']}, the newest archived segment) "
                "was refused by PostgreSQL: WAL before it is missing"), "target",
                evidence={**evidence, "fatal": fatal.strip()[-300:]})], time.monotonic() - started)
    if any("recovery stopping" in ln for ln in log) and stopped:
        return DetectorOutcome("target", DetectorStatus.CLEAN,
                               f"PostgreSQL reached {target} inside {evidence['end_of_archive']}", [],
                               time.monotonic() - started)
    tail = [ln.strip() for ln in log if "FATAL" in ln or "PANIC" in ln][-2:]
    return could_not("target", "the target recovery neither reached nor refused its target"
                     + (f": {'; '.join(tail)}" if tail else ""), started, **evidence)


def backup_unusable(backup_id: str, failed: str, fatal: list[str], rto_cost_seconds: float, fallback: bool,
                    where: str = "") -> Finding:
    """A DONE backup whose restore or recovery failed (a disaster would have reached for it)."""
    return Finding(BACKUP_UNUSABLE, (
        f"backup {backup_id} is DONE but its recovery{where} failed ({failed})"
        + ("; falling back to the previous backup" if fallback else "")),
        "restore", evidence={"backup_id": backup_id, "failed": failed, "fatal": fatal[-3:],
                             "rto_cost_seconds": round(rto_cost_seconds, 3)})


def check_owners(connect: Any, owners: tuple[OwnerCheck, ...]) -> DetectorOutcome:
    started = time.monotonic()
    if not owners:
        return DetectorOutcome("ownership", DetectorStatus.NOT_APPLICABLE, "no owners configured "
                               "(restore_test.owners)", [], 0.0)
    findings: list[Finding] = []
    try:
        for check in owners:
            schema, _, table = check.table.rpartition(".")
            with connect(check.database) as conn:
                row = conn.execute(
                    "SELECT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema or "public", table)).fetchone()
            if row is None:
                findings.append(Finding(USER_CHECK_FAILED, f"{check.database}.{check.table} does not exist in the "
                                        "restored cluster", "ownership", evidence={"table": check.table}))
            elif row[0] != check.owner:
                findings.append(Finding(OWNERSHIP_MISMATCH, f"{check.database}.{check.table} is owned by {row[0]}, "
                                        f"expected {check.owner}", "ownership",
                                        evidence={"table": check.table, "owner": row[0], "expected": check.owner}))
    except Exception as exc:
        return could_not("ownership", f"cannot read owners: {_first_line(exc)}", started)
    return DetectorOutcome("ownership", DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN,
                           f"{len(owners) - len(findings)} of {len(owners)} table owner(s) as expected", findings,
                           time.monotonic() - started)


def run_user_checks(connect: Any, checks: tuple[UserCheck, ...], end_of_archive: datetime | None
                    ) -> tuple[DetectorOutcome, list[dict[str, Any]]]:
    """Each check's SQL once; its expectation decides.  A check that cannot run (SQL error,
    no end-of-archive time for ``max_age_seconds``) is COULD_NOT_VERIFY, never passed."""
    started = time.monotonic()
    if not checks:
        return DetectorOutcome("user_checks", DetectorStatus.NOT_APPLICABLE,
                               "no user checks configured (restore_test.checks)", [], 0.0), []
    findings: list[Finding] = []
    rows_out: list[dict[str, Any]] = []
    unverified = 0
    for check in checks:
        record: dict[str, Any] = {"name": check.name, "database": check.database}
        try:
            with connect(check.database) as conn:
                rows = conn.execute(check.sql).fetchall()
        except Exception as exc:
            unverified += 1
            record["status"] = "could_not_verify"
            findings.append(could_not("user_checks", f"check {check.name!r} could not run: {_first_line(exc)}"
                                      ).findings[0])
            rows_out.append(record)
            continue
        record["rows"] = len(rows)
        record["sha256"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        failure, observed = judge_check(check, rows, end_of_archive)
        record.update(observed)
        record["status"] = "could_not_verify" if failure == "" else "failed" if failure else "passed"
        if failure == "":
            unverified += 1
            findings.append(could_not("user_checks", f"check {check.name!r}: no end-of-archive time to measure "
                                      "max_age_seconds against").findings[0])
        elif failure:
            findings.append(Finding(USER_CHECK_FAILED, f"check {check.name!r} on {check.database}: {failure}",
                                    "user_checks", evidence=record))
        rows_out.append(record)
    failed = [f for f in findings if f.code == USER_CHECK_FAILED]
    status = (DetectorStatus.FINDINGS if failed else DetectorStatus.COULD_NOT_VERIFY if unverified
              else DetectorStatus.CLEAN)
    return DetectorOutcome("user_checks", status, f"{len(checks) - len(failed) - unverified} of {len(checks)} "
                           "user check(s) passed", findings, time.monotonic() - started), rows_out


def judge_check(check: UserCheck, rows: list[tuple[Any, ...]], end_of_archive: datetime | None
                ) -> tuple[str | None, dict[str, Any]]:
    """Pure: ``None`` passed, ``""`` could not verify, else why it failed (no data values in it)."""
    first = rows[0][0] if rows and rows[0] else None
    if check.min_rows is not None:
        count = first if len(rows) == 1 and isinstance(first, int) and not isinstance(first, bool) else len(rows)
        return (None if count >= check.min_rows else f"{count} row(s), expected at least {check.min_rows}",
                {"count": count})
    if check.equals is not None:
        equal = first is not None and str(first) == check.equals
        return (None if equal else "the first value differs from the expected one (see sha256)"), {}
    if end_of_archive is None:
        return "", {}
    if not isinstance(first, datetime) or first.tzinfo is None:
        return "the first value is not a timestamp with time zone", {}
    observed = (end_of_archive - first).total_seconds()
    assert check.max_age_seconds is not None
    failure = None if observed <= check.max_age_seconds else (
        f"newest timestamp is {observed:.0f}s older than the end of the archive (limit {check.max_age_seconds:g}s)")
    return failure, {"age_seconds": round(observed, 3)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
