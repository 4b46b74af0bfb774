"""Integrity beyond row counts (issue 9): two detectors run on every recovered cluster.

* ``physical`` — every page checksum-verified (pg_checksums), every table and B-tree amchecked
  (pg_amcheck --heapallindexed): DATA_CHECKSUM_FAILURE, HEAP_CORRUPTION, INDEX_CORRUPTION.
* ``content``  — per-table, per-key-range digests recorded on the source at the end of the
  workload (``record_digests``), recomputed on the recovered cluster: CONTENT_MISMATCH naming
  table and key range.

Public surface: ``record_digests``, ``check_integrity``, ``IntegrityCheck``.  A check that cannot
run reports COULD_NOT_VERIFY with its reason, never clean.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdrill.backends.base import (
    Backend,
    ClusterHandle,
    IntegrityTools,
    IntegrityToolsProvider,
)
from pgdrill.detectors.base import could_not
from pgdrill.detectors.digest import DigestSet
from pgdrill.detectors.digest_compare import TableComparison, compare
from pgdrill.detectors.digest_sql import record
from pgdrill.detectors.physical import PhysicalCheck, check_physical
from pgdrill.findings import COULD_NOT_VERIFY, Finding
from pgdrill.findings.codes import CONTENT_MISMATCH, DATABASE_UNREACHABLE
from pgdrill.results import DetectorOutcome, DetectorStatus

__all__ = ["DigestSet", "IntegrityCheck", "check_integrity", "integrity_tools", "record_digests"]

MAX_RANGES_IN_MESSAGE = 5


def integrity_tools(backend: Backend) -> IntegrityTools | None:
    """The backend's connection/pg_checksums/pg_amcheck access (``IntegrityToolsProvider``), or
    None if it has none yet."""
    if isinstance(backend, IntegrityToolsProvider):
        return backend.integrity_tools()
    return None


def record_digests(backend: Backend, cluster: ClusterHandle, database: str, state_dir: Path) -> DigestSet:
    """Digest every table of ``database`` on the (still running) source; saved as ``state_dir/digests.json``.

    Never raises for an unreadable source: the returned set carries ``error`` and the content
    detector turns it into COULD_NOT_VERIFY.
    """
    tools = integrity_tools(backend)
    if tools is None:
        digests = DigestSet(cluster.name, database,
                            error=f"backend {backend.name!r} offers no direct connection for content digests")
    else:
        digests = record(lambda dbname: tools.connect(cluster, dbname), cluster.name, database)
    digests.save(state_dir)
    return digests


@dataclass
class IntegrityCheck:
    outcomes: list[DetectorOutcome]
    report: dict[str, Any] = field(default_factory=dict)
    """For ``result.integrity``: ``relations`` (one row per relation), ``physical``, ``content``."""


def check_integrity(backend: Backend, cluster: ClusterHandle | None, database: str,
                    expected: DigestSet | None, compare_content: bool = True) -> IntegrityCheck:
    """Run ``physical`` then ``content`` on a recovered cluster (None: it never came up).

    ``compare_content=False`` runs only ``physical``: for a recovery to a point the digests do not
    describe (a PITR target before the end of the workload), a comparison would blame the target.
    """
    tools = integrity_tools(backend)
    if cluster is None or tools is None:
        why = ("the recovered cluster never came up" if cluster is None
               else f"backend {backend.name!r} has no integrity tools (pg_checksums/pg_amcheck access) yet")
        return IntegrityCheck([could_not("physical", why)] + ([could_not("content", why)] if compare_content else []),
                              {"relations": [], "physical": {}, "content": {}})
    physical = check_physical(tools, cluster)
    if not compare_content:
        return IntegrityCheck([physical.outcome], build_report(physical, [], None, None))
    content, comparisons = check_content(tools, cluster, database, expected, physical)
    return IntegrityCheck([physical.outcome, content], build_report(physical, comparisons, content, expected))


def check_content(tools: IntegrityTools, cluster: ClusterHandle, database: str, expected: DigestSet | None,
                  physical: PhysicalCheck | None = None) -> tuple[DetectorOutcome, list[TableComparison]]:
    started = time.monotonic()
    if expected is None:
        return could_not("content", "no content digests were recorded on the source", started), []
    if expected.error:
        return could_not("content", expected.error, started), []
    # Indexes amcheck did not vouch for are not used to order rows (see digest_sql.scan_settings).
    if physical is not None and physical.amcheck_ran:
        avoid = set(physical.suspect_tables)
    else:
        avoid = {t.qualified for t in expected.tables}
    try:
        comparisons = compare(lambda dbname: tools.connect(cluster, dbname), expected, avoid)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DetectorOutcome("content", DetectorStatus.FINDINGS, f"database {database!r} unreachable", [Finding(
            DATABASE_UNREACHABLE, f"database {database!r} of {cluster.name} cannot be read, so none of its "
            f"{len(expected.tables)} table(s) can be compared: {message}", "content",
            evidence={"database": database, "error": message})], time.monotonic() - started), []
    findings: list[Finding] = []
    for comparison in comparisons:
        if comparison.status in ("match",):
            continue
        shown = [r.describe(comparison.key) for r in comparison.ranges[:MAX_RANGES_IN_MESSAGE]]
        more = len(comparison.ranges) - len(shown)
        findings.append(Finding(
            CONTENT_MISMATCH,
            f"{database}.{comparison.table}: "
            + ("table missing in the recovered cluster" if comparison.status == "missing" else
               f"{len(comparison.ranges)} key range(s) differ from the source: " + "; ".join(shown)
               + (f" (+{more} more)" if more > 0 else "")),
            "content", evidence={"database": database, **comparison.to_dict(),
                                 "source_lsn": expected.lsn, "recorded_at": expected.recorded_at}))
    for item in expected.unverifiable:
        findings.append(Finding(COULD_NOT_VERIFY, f"content: {database}.{item.table}: {item.reason}", "content",
                                evidence={"database": database, "table": item.table, "reason": item.reason}))
    mismatched = [f for f in findings if f.code != COULD_NOT_VERIFY]
    status = (DetectorStatus.FINDINGS if mismatched else
              DetectorStatus.COULD_NOT_VERIFY if findings else DetectorStatus.CLEAN)
    rows = sum(c.found_rows or 0 for c in comparisons)
    summary = (f"{len(mismatched)} of {len(comparisons)} table(s) differ from the source" if mismatched else
               f"{len(findings)} table(s) could not be digested" if findings else
               f"{len(comparisons)} table(s), {rows} rows identical to the source at {expected.lsn}")
    return DetectorOutcome("content", status, summary, findings, time.monotonic() - started), comparisons


def build_report(physical: PhysicalCheck, comparisons: list[TableComparison], content: DetectorOutcome | None,
                 expected: DigestSet | None) -> dict[str, Any]:
    """``result.integrity``: per-relation rows (pages read, checksum failures, amcheck, digest)."""
    relations = [dict(r) for r in physical.relations]
    database = expected.database if expected else None
    by_table = {c.table: c for c in comparisons}
    for row in relations:
        comparison = by_table.get(row["relation"]) if row["database"] == database and row["kind"] == "table" else None
        if comparison is not None:
            row["digest"] = comparison.status
            row["digest_ranges"] = [r.describe(comparison.key) for r in comparison.ranges[:MAX_RANGES_IN_MESSAGE]]
    return {
        "relations": relations,
        "physical": {"status": physical.outcome.status.value, **physical.summary},
        "content": {"status": content.status.value if content else "not_run", "source_lsn": expected.lsn if expected else None,
                    "recorded_at": expected.recorded_at if expected else None,
                    "record_seconds": round(expected.seconds, 3) if expected else None,
                    "tables": [c.to_dict() for c in comparisons],
                    "unverifiable": [{"table": u.table, "reason": u.reason} for u in expected.unverifiable]
                    if expected else [],
                    "skipped": [{"table": u.table, "reason": u.reason} for u in expected.skipped] if expected else []},
    }

