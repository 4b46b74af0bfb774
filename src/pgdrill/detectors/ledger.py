"""The ``ledger`` detector: every acknowledged write a recovery path owes vs its effect in the recovered
cluster (pgdrill.drill.measures), plus table ownership."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pgdrill.backends.base import Backend, ClusterHandle
from pgdrill.detectors.base import could_not, id_ranges
from pgdrill.drill.measures import PathKind, PathMeasure, measure_path
from pgdrill.errors import PgdrillError
from pgdrill.findings import (
    OWNERSHIP_MISMATCH,
    SILENT_DATA_LOSS,
    TARGET_OVERSHOT,
    Finding,
)
from pgdrill.results import DetectorOutcome, DetectorStatus
from pgdrill.workload.fixture import Fixture
from pgdrill.workload.ledger import Ledger


@dataclass
class LedgerCheck:
    outcome: DetectorOutcome
    state: dict[str, dict[int, int | None]] = field(default_factory=dict)
    """Per ledger table: key → version found in the recovered cluster (None: no version column)."""
    summary: dict[str, Any] = field(default_factory=dict)


def read_state(backend: Backend, cluster: ClusterHandle, ledger: Ledger,
               fixture: Fixture) -> tuple[dict[str, dict[int, int | None]], dict[str, str]]:
    """What the recovered cluster holds of each ledger table (key → version), and table owners."""
    state: dict[str, dict[int, int | None]] = {}
    for table in ledger.tables():
        spec = fixture.tables.get(table)
        column = f'"{spec.version_column}"' if spec is not None and spec.version_column else "NULL"
        rows = backend.sql(cluster, f'SELECT id, {column} FROM "{table}"', dbname=fixture.database)
        state[table] = {int(r[0]): (int(r[1]) if r[1] is not None else None) for r in rows}
    owners = dict(backend.sql(cluster, "SELECT tablename::text, tableowner::text FROM pg_tables "
                                       "WHERE schemaname = 'public'", dbname=fixture.database))
    return state, owners


def check_ledger(backend: Backend, cluster: ClusterHandle | None, ledger: Ledger, fixture: Fixture,
                 path: str, kind: PathKind, bound_seq: int, target_seq: int | None = None,
                 disaster_at: str | None = None,
                 lost_elsewhere: set[int] | None = None) -> tuple[LedgerCheck, PathMeasure | None]:
    """The ``ledger`` detector for one recovery path: every acknowledged write it owes, by its
    effect (docs/measures.md), plus table ownership.  Returns the path's measure too.

    ``lost_elsewhere``: writes an earlier path already lost and reported (commits lost at a
    failover cannot be in the archive either); they count in this path's measure but are not
    reported again as SILENT_DATA_LOSS."""
    started = time.monotonic()
    if cluster is None:
        return LedgerCheck(could_not("ledger", f"{path}: the recovered cluster never came up, so no row "
                                      "could be read", started)), None
    try:
        state, owners = read_state(backend, cluster, ledger, fixture)
    except PgdrillError as exc:
        return LedgerCheck(could_not("ledger", f"{path}: could not read the recovered rows: {exc}", started)), None
    except Exception as exc:  # a database error is evidence of a broken recovery, but not a verdict on rows
        return LedgerCheck(could_not("ledger", f"{path}: could not read the recovered rows: "
                                      f"{type(exc).__name__}: {exc}", started)), None
    # read_state gives None for a table without a version column: judged per row, not per drill.
    measure = measure_path(path, kind, cluster.name, ledger.all_writes, state, bound_seq, target_seq,
                           disaster_at=disaster_at)
    findings: list[Finding] = []
    if measure.after_target_present:
        findings.append(Finding(
            TARGET_OVERSHOT, f"{path}: {len(measure.after_target_present)} write(s) committed after the recovery "
            "target are present: " + ", ".join(f"{w['op']} {w['table']} id {w['row_id']}"
                                                 for w in measure.after_target_present), "ledger",
            evidence={"path": path, "writes": measure.after_target_present}))
    silent = [w for w in measure.lost if w["seq"] not in (lost_elsewhere or set())]
    if silent:
        by_op: dict[str, list[int]] = {}
        for write in silent:
            by_op.setdefault(f"{write['op']} {write['table']}", []).append(write["row_id"])
        findings.append(Finding(
            SILENT_DATA_LOSS,
            f"{path}: the recovery promoted and accepted writes, yet {len(silent)} of {measure.expected} "
            "acknowledged writes are missing: " + "; ".join(f"{k} ids {id_ranges(v)}" for k, v in by_op.items())
            + (f" (besides {measure.lost_writes - len(silent)} lost earlier)" if len(silent) < measure.lost_writes
               else ""),
            "ledger",
            evidence={"path": path, "lost": silent[:200], "lost_count": len(silent),
                      "segments_of_lost_writes": sorted({w["walfile"] for w in silent if w["walfile"]}),
                      "survivors_after_first_loss": measure.survivors_after_first_loss[:50],
                      "present": measure.present, "expected": measure.expected}))
    for table in ledger.tables():
        owner = owners.get(table)
        if owner != fixture.owner:
            findings.append(Finding(OWNERSHIP_MISMATCH, f"{table} is owned by {owner!r}, expected {fixture.owner!r}",
                                    "ledger", evidence={"table": table, "owner": owner, "expected": fixture.owner}))
    status = DetectorStatus.FINDINGS if findings else DetectorStatus.CLEAN
    summary = (f"{path}: {measure.present}/{measure.expected} acknowledged writes present"
               + (f"; lost {measure.lost_writes}" if measure.lost else "")
               + (f"; {len(measure.in_doubt)} in doubt" if measure.in_doubt else "")
               + (f"; {len(measure.after_target_present)} after the target present" if measure.after_target_present
                  else ""))
    return LedgerCheck(DetectorOutcome("ledger", status, summary, findings, time.monotonic() - started), state,
                       {"path": path, "committed": len(ledger), "expected": measure.rows_expected,
                        "recovered": measure.rows_present, "expected_writes": measure.expected,
                        "present_writes": measure.present, "lost_writes": measure.lost_writes,
                        "in_doubt": len(measure.in_doubt), "owners": owners}), measure
