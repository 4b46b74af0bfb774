"""The ``target`` detector: its own recovery with ``recovery_target_lsn`` = the last owed write's commit
LSN, which PostgreSQL refuses ("recovery ended before configured recovery target was reached")
when WAL is missing."""

from __future__ import annotations

import time
from typing import Any

from pgdrill.archive.catalog import read_server_archive
from pgdrill.backends.base import Backend, ClusterHandle, RecoveryTarget
from pgdrill.detectors.base import could_not
from pgdrill.errors import PgdrillError
from pgdrill.findings import RECOVERY_FAILED, RECOVERY_TARGET_UNREACHED, Finding
from pgdrill.results import DetectorOutcome, DetectorStatus
from pgdrill.workload.ledger import Ledger

TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"


def check_target(backend: Backend, source: ClusterHandle, ledger: Ledger, owed_until_seq: int,
                 scratch_name: str, backup_id: str | None, segment_size: int,
                 keep: bool = False) -> DetectorOutcome:
    """Recover once more with ``recovery_target_lsn`` = the commit LSN of the last acknowledged
    write this recovery owes; PostgreSQL refuses (FATAL) when the archive cannot reach it.

    Always its own recovery, never another detector's result.  When that write lies inside the
    base backup (before its consistency point), the target is the consistency point itself.
    """
    started = time.monotonic()
    owed = [e for e in ledger.entries if e.seq <= owed_until_seq]
    if not owed:
        return could_not("target", "the ledger has no acknowledged write: no target LSN to recover to", started)
    last = owed[-1]
    target = last.position
    basis = "commit LSN of the last acknowledged write (insert position right after its COMMIT)"
    if last.lsn is None:
        basis = "lower bound of the last acknowledged write's commit LSN (its follow-up read never ran)"
    try:
        _, backups, _ = read_server_archive(backend.store, backend.destination.key(source.server_name),
                                            source.server_name, segment_size)
    except (PgdrillError, ValueError) as exc:
        return could_not("target", f"could not read the archive: {exc}", started)
    backup = next((b for b in backups if b.backup_id == backup_id), None)
    if backup is not None and backup.end_lsn is not None and target <= backup.end_lsn:
        # PostgreSQL rejects a target before the consistency point ("before consistent recovery point").
        target = backup.end_lsn
        basis = (f"the base backup's consistency point {backup.end_lsn}: the last acknowledged write "
                 f"({last.position}) is inside the backup")
    evidence: dict[str, Any] = {"target_lsn": str(target), "target_basis": basis, "last_write_seq": last.seq,
                                "last_write": {"table": last.table, "row_id": last.row_id, "op": last.op,
                                               "walfile": last.walfile}, "backup_id": backup_id}
    try:
        outcome = backend.recover(source, scratch_name, RecoveryTarget(lsn=target, backup_id=backup_id),
                                  archive=False)
    except PgdrillError as exc:
        return could_not("target", f"the target-LSN recovery could not run: {exc}", started, **evidence)
    try:
        evidence.update({"fatal": outcome.fatal_lines[-5:], "log": outcome.log_excerpt[-15:],
                         "restored_segments": outcome.restored_segments})
        if outcome.promoted:
            return DetectorOutcome("target", DetectorStatus.CLEAN, f"recovery reached {target} ({basis})", [],
                                   time.monotonic() - started)
        if outcome.failed_step == "timeout":
            # pgdrill's own wait ran out: nothing is known about the target.
            return could_not("target", "the target-LSN recovery did not finish in time: "
                             + "; ".join(outcome.fatal_lines[-2:]), started, **evidence)
        if any(TARGET_NOT_REACHED in line for line in outcome.fatal_lines):
            return DetectorOutcome("target", DetectorStatus.FINDINGS,
                                   f"PostgreSQL refused: target {target} not reachable", [Finding(
                                       RECOVERY_TARGET_UNREACHED,
                                       f"recovery with recovery_target_lsn = {target} ({last.op} of {last.table} id "
                                       f"{last.row_id}, write {last.seq}, in {last.walfile}) failed: "
                                       f"{TARGET_NOT_REACHED}", "target", evidence=evidence)],
                                   time.monotonic() - started)
        if outcome.cluster is not None and outcome.fatal_lines:
            return DetectorOutcome("target", DetectorStatus.FINDINGS, "target-LSN recovery failed", [Finding(
                RECOVERY_FAILED, f"recovery to {target} failed: {outcome.fatal_lines[-1]}", "target",
                evidence=evidence)], time.monotonic() - started)
        return could_not("target", "the target-LSN recovery did not start: "
                          + "; ".join(outcome.fatal_lines[-2:]), started, **evidence)
    finally:
        if outcome.cluster is not None and not keep:
            backend.destroy(outcome.cluster)
