"""Physical integrity of a recovered cluster: every page's checksum, amcheck on every table and B-tree.

Why ``pg_checksums --check`` on the stopped data directory rather than a full read through the
server plus ``pg_stat_database.checksum_failures`` (measured side by side in
``bench/bench_integrity.py``, pgbench scale 15, 232 MB, 2 cores, warm OS cache):
pg_checksums read all ~31,500 blocks of all three databases in 0.08-0.10 s (a sequential C read
of every file, no buffer manager); the full read (``pg_prewarm(rel, 'buffer', fork)`` of every
fork of every relation, after a restart so nothing is served from shared buffers) took
0.17-0.20 s for *one* database.  pg_checksums is the faster reader, but it needs a clean shutdown:
the fast stop (a checkpoint) plus start cost ~0.75 s here, so end to end the server read would be
cheaper on this box.  pgdrill still uses pg_checksums because the server read is weaker:
it skips pages already in shared buffers, needs an extension and a connection per database, and
a bad page raises an ERROR that ends the read of that relation (later bad blocks stay unseen),
while pg_checksums reports every bad block of every fork, catalogs included, by file and block.
The whole physical detector (restart included) measured 0.86-1.05x the same tools run by hand.

amcheck runs through ``pg_amcheck --heapallindexed`` (verify_heapam on every table and TOAST
table, bt_index_check with heapallindexed on every B-tree, parallel connections); its text
output is parsed into findings that name database, relation and block.

Where a backend cannot reach the data directory (Kubernetes: it lives on the pod's volume), its
tools raise ``NotApplicable`` from ``pg_checksums``: that part is reported not applicable, with
the reason, and amcheck still runs (it reads every heap and B-tree page through the server,
which verifies each page's checksum as it reads it).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from pgdrill.backends.base import ClusterHandle, IntegrityTools, NotApplicable
from pgdrill.findings import COULD_NOT_VERIFY, Finding
from pgdrill.findings.codes import (
    DATA_CHECKSUM_FAILURE,
    DATABASE_UNREACHABLE,
    HEAP_CORRUPTION,
    INDEX_CORRUPTION,
)
from pgdrill.postgres.pages import RELSEG_BLOCKS
from pgdrill.results import DetectorOutcome, DetectorStatus

DETECTOR = "physical"
MAX_MESSAGES = 10
"""Per relation and block: a wrecked page can produce hundreds of amcheck lines."""


# -- parsing tool output (pure) -------------------------------------------------------------

_CHECKSUM_FAILED = re.compile(r'checksum verification failed in file "(?P<path>[^"]+)", block (?P<block>\d+): '
                              r"calculated checksum (?P<calc>[0-9A-Fa-f]+) but block contains (?P<stored>[0-9A-Fa-f]+)")
_FILE_BLOCK_ERROR = re.compile(r'error: (?P<msg>could not read block (?P<block>\d+) in file "(?P<path>[^"]+)".*)')
_COUNTER = re.compile(r"^(Files scanned|Blocks scanned|Bad checksums|Files written|Blocks written):\s+(\d+)", re.M)
_FILE = re.compile(r"(?P<rel>(?:base/\d+|global|pg_tblspc/\d+/[^/]+/\d+)/\d+)(?P<fork>_fsm|_vm|_init)?(?:\.(?P<seg>\d+))?$")


@dataclass(frozen=True)
class PageProblem:
    file: str
    """Path relative to the data directory, e.g. ``base/16384/16390.1``."""
    relfile: str
    """The relation's main path (``pg_relation_filepath``), without fork or segment suffix."""
    fork: str
    block: int
    """Block number within the relation (segment files folded in)."""
    message: str


@dataclass
class ChecksumReport:
    problems: list[PageProblem] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    disabled: bool = False
    errors: list[str] = field(default_factory=list)
    """Error lines that name no page: the check did not complete."""


def relative_path(path: str) -> str:
    match = _FILE.search(path)
    return match.group(0) if match else path


def parse_pg_checksums(stdout: str, stderr: str) -> ChecksumReport:
    report = ChecksumReport(counters={m.group(1): int(m.group(2)) for m in _COUNTER.finditer(stdout)})
    for line in stderr.splitlines():
        if "data checksums are not enabled" in line:
            report.disabled = True
            continue
        match = _CHECKSUM_FAILED.search(line) or _FILE_BLOCK_ERROR.search(line)
        if match is None:
            if "error:" in line:
                report.errors.append(line.strip())
            continue
        rel = _FILE.search(match.group("path"))
        segment = int(rel.group("seg")) if rel and rel.group("seg") else 0
        report.problems.append(PageProblem(
            relative_path(match.group("path")), rel.group("rel") if rel else match.group("path"),
            (rel.group("fork") or "_main").lstrip("_") if rel else "main",
            segment * RELSEG_BLOCKS + int(match.group("block")), line.split("error: ", 1)[-1].strip()))
    return report


_AMCHECK_HEAD = re.compile(r'^(?P<kind>heap table|btree index|toast table|[a-z]+ (?:table|index|relation)) '
                           r'"(?P<name>[^"]+)"(?P<rest>[^:]*):\s*$')
_INVALID_PAGE = re.compile(r'invalid page in block (?P<block>\d+) of relation "(?P<path>[^"]+)"')
_BLOCK_IN = re.compile(r"(?:block |blkno=|tid=\()(\d+)")


@dataclass
class AmcheckProblem:
    kind: str
    """``heap table``, ``toast table`` or ``btree index`` (as pg_amcheck prints it)."""
    database: str
    relation: str
    """``schema.name``."""
    block: int | None
    offset: int | None
    attribute: int | None
    messages: list[str] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return "index" in self.kind


def parse_pg_amcheck(stdout: str) -> list[AmcheckProblem]:
    problems: list[AmcheckProblem] = []
    current: AmcheckProblem | None = None
    for line in stdout.splitlines():
        head = _AMCHECK_HEAD.match(line)
        if head:
            database, _, relation = head.group("name").partition(".")
            rest = head.group("rest")
            numbers = {k: int(v) for k, v in re.findall(r"(block|offset|attribute) (\d+)", rest)}
            current = AmcheckProblem(head.group("kind"), database, relation, numbers.get("block"),
                                     numbers.get("offset"), numbers.get("attribute"))
            problems.append(current)
        elif current is not None and line.strip():
            current.messages.append(line.strip())
            if current.block is None and (found := _BLOCK_IN.search(line)):
                current.block = int(found.group(1))
    return problems


# -- inventory -----------------------------------------------------------------------------

@dataclass
class Relation:
    database: str
    schema: str
    name: str
    kind: str
    pages: int
    system: bool
    access_method: str | None
    table: str | None
    """For an index or TOAST table: the table it belongs to (``schema.name``)."""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


_INVENTORY = """
SELECT pg_relation_filepath(c.oid), n.nspname::text, c.relname::text, c.relkind::text,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint,
       n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\\_toast%',
       am.amname::text,
       (SELECT tn.nspname || '.' || t.relname FROM pg_class t JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE t.oid = (SELECT i.indrelid FROM pg_index i WHERE i.indexrelid = c.oid) OR t.reltoastrelid = c.oid
        LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r', 'i', 'm', 't', 'S') AND c.relpersistence <> 't' AND pg_relation_filepath(c.oid) IS NOT NULL
"""
_KINDS = {"r": "table", "i": "index", "m": "materialized view", "t": "toast table", "S": "sequence"}


def inventory(tools: IntegrityTools, cluster: ClusterHandle) -> tuple[dict[str, Relation], list[str], list[Finding]]:
    """Relations by file path, connectable databases, and a finding per database that refused us."""
    with tools.connect(cluster, "postgres") as conn:
        databases = [r[0] for r in conn.execute(
            "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY datname").fetchall()]
    relations: dict[str, Relation] = {}
    findings: list[Finding] = []
    for database in databases:
        try:
            with tools.connect(cluster, database) as conn:
                rows = conn.execute(_INVENTORY).fetchall()
        except Exception as exc:
            findings.append(Finding(DATABASE_UNREACHABLE, f"database {database!r} of {cluster.name} cannot be read: "
                                    f"{_first_line(exc)}", DETECTOR, evidence={"database": database,
                                                                               "error": _first_line(exc)}))
            continue
        for path, schema, name, kind, pages, system, am, table in rows:
            if path.startswith("global/") and path in relations:
                continue  # shared catalogs appear in every database's pg_class
            relations[path] = Relation("(shared)" if path.startswith("global/") else database, schema, name,
                                       _KINDS.get(kind, kind), int(pages), bool(system), am, table)
    return relations, databases, findings


# -- the detector --------------------------------------------------------------------------

@dataclass
class PhysicalCheck:
    outcome: DetectorOutcome
    relations: list[dict[str, Any]] = field(default_factory=list)
    """One row per user relation (and per damaged system relation) for the report."""
    summary: dict[str, Any] = field(default_factory=dict)
    suspect_tables: set[str] = field(default_factory=set)
    """Tables (``schema.name``) whose indexes amcheck could not vouch for: read them without indexes."""
    amcheck_ran: bool = False


def check_physical(tools: IntegrityTools, cluster: ClusterHandle) -> PhysicalCheck:
    started = time.monotonic()
    findings: list[Finding] = []
    unverified: list[Finding] = []
    try:
        relations, databases, unreachable = inventory(tools, cluster)
        with tools.connect(cluster, "postgres") as conn:
            checksums_on = conn.execute("SHOW data_checksums").fetchone()[0] == "on"
    except Exception as exc:
        why = f"could not connect to {cluster.name}: {_first_line(exc)}"
        return PhysicalCheck(DetectorOutcome(DETECTOR, DetectorStatus.COULD_NOT_VERIFY, why, [
            Finding(COULD_NOT_VERIFY, f"{DETECTOR}: {why}", DETECTOR)], time.monotonic() - started))
    findings += unreachable
    by_file: dict[str, Relation] = relations
    rows: dict[str, dict[str, Any]] = {}

    def row(rel: Relation) -> dict[str, Any]:
        key = f"{rel.database}/{rel.qualified}"
        if key not in rows:
            checked = rel.kind in ("table", "toast table", "materialized view") or rel.access_method == "btree"
            rows[key] = {"database": rel.database, "relation": rel.qualified, "kind": rel.kind,
                         "access_method": rel.access_method, "table": rel.table, "pages": rel.pages,
                         "checksum_failures": 0, "checksum_blocks": [],
                         "amcheck": "pending" if checked else "not checked (no amcheck for this kind)",
                         "amcheck_problems": 0, "digest": None}
        return rows[key]

    for rel in relations.values():
        if not rel.system:
            row(rel)

    # 1. page checksums
    checksum_summary: dict[str, Any] = {"data_checksums": checksums_on}
    not_applicable: str | None = None
    if not checksums_on:
        unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: data checksums are disabled on {cluster.name}; "
                                  "no page checksum can be verified (initdb --data-checksums or pg_checksums "
                                  "--enable on the source)", DETECTOR, evidence={"data_checksums": "off"}))
    else:
        try:
            run = tools.pg_checksums(cluster)
        except NotApplicable as exc:
            # Not a failure to run: this backend cannot reach the data directory (the reason says why).
            run = None
            not_applicable = f"page checksums not applicable: {_first_line(exc)}"
            checksum_summary.update(status=DetectorStatus.NOT_APPLICABLE.value, reason=_first_line(exc))
        except Exception as exc:
            run = None
            unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: pg_checksums could not run: "
                                      f"{_first_line(exc)}", DETECTOR))
        if run is not None:
            parsed = parse_pg_checksums(run.stdout, run.stderr)
            checksum_summary.update(parsed.counters, seconds=round(run.seconds, 3),
                                    restart_seconds=round(getattr(run, "restart_seconds", 0.0), 3),
                                    returncode=run.returncode)
            if parsed.disabled:
                unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: pg_checksums: data checksums are not "
                                          f"enabled in {cluster.name}", DETECTOR, evidence={"stderr": run.stderr[-2000:]}))
            elif parsed.errors or (run.returncode != 0 and not parsed.problems):
                unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: pg_checksums did not complete (exit "
                                          f"{run.returncode}): " + "; ".join(parsed.errors[:3]), DETECTOR,
                                          evidence={"stderr": run.stderr[-2000:]}))
            for problem in parsed.problems:
                rel = by_file.get(problem.relfile)
                name = f"{rel.database}.{rel.qualified}" if rel else problem.relfile
                if rel:
                    entry = row(rel)
                    entry["checksum_failures"] += 1
                    entry["checksum_blocks"].append(problem.block)
                findings.append(Finding(
                    DATA_CHECKSUM_FAILURE,
                    f"{name}" + (f" ({rel.kind})" if rel else "") + f": block {problem.block}"
                    + ("" if problem.fork == "main" else f" of the {problem.fork} fork") + f" — {problem.message}",
                    DETECTOR, evidence={"database": rel.database if rel else None,
                                        "relation": rel.qualified if rel else None,
                                        "kind": rel.kind if rel else None, "file": problem.file,
                                        "fork": problem.fork, "block": problem.block, "tool": "pg_checksums",
                                        "message": problem.message}))

    # 2. amcheck
    amcheck_summary: dict[str, Any] = {}
    amcheck_ran = False
    suspect: set[str] = set()
    try:
        run = tools.pg_amcheck(cluster)
    except Exception as exc:
        run = None
        unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: pg_amcheck could not run: {_first_line(exc)}",
                                  DETECTOR))
    if run is not None:
        problems = parse_pg_amcheck(run.stdout)
        tool_errors = [ln.strip() for ln in run.stderr.splitlines() if "error:" in ln or "FATAL" in ln]
        amcheck_summary = {"seconds": round(run.seconds, 3), "returncode": run.returncode,
                           "problems": len(problems), "databases": databases}
        # exit 0: clean; 2: corruption reported; anything else (or errors with no relation named):
        # some part of the check did not run, e.g. the amcheck extension could not be created.
        if run.returncode not in (0, 2) or tool_errors:
            unverified.append(Finding(COULD_NOT_VERIFY, f"{DETECTOR}: pg_amcheck did not check everything (exit "
                                      f"{run.returncode}): " + "; ".join(tool_errors[:3] or [run.stderr.strip()[-300:]]),
                                      DETECTOR, evidence={"stderr": run.stderr[-3000:]}))
        else:
            amcheck_ran = True
        seen: set[tuple[str, str, str, int | None]] = set()
        for problem in problems:
            rel = _find(relations, problem.database, problem.relation)
            unreadable = _INVALID_PAGE.search(" ".join(problem.messages))
            if unreadable and unreadable.group("path") in relations:
                # bt_index_check(heapallindexed) reads the table too: a damaged *table* page surfaces
                # under the index's name. Blame the relation whose file the server could not read.
                rel = relations[unreadable.group("path")]
                problem.relation, problem.block = rel.qualified, int(unreadable.group("block"))
                problem.kind = "btree index" if rel.kind == "index" else "heap table"
            dedup = (problem.kind, problem.database, problem.relation, problem.block)
            if dedup in seen:
                continue
            seen.add(dedup)
            if rel is not None:
                entry = row(rel)
                entry["amcheck"] = "corrupt"
                entry["amcheck_problems"] += 1
            table = rel.table if rel and rel.table else problem.relation
            if problem.is_index or (rel and rel.kind == "toast table"):
                suspect.add(table)
            code = INDEX_CORRUPTION if problem.is_index else HEAP_CORRUPTION
            where = ", ".join(f"{k} {v}" for k, v in (("block", problem.block), ("offset", problem.offset),
                                                       ("attribute", problem.attribute)) if v is not None)
            findings.append(Finding(
                code, f"{problem.database}.{problem.relation} ({problem.kind})" + (f", {where}" if where else "")
                + ": " + (problem.messages[0] if problem.messages else "reported by pg_amcheck"),
                DETECTOR, evidence={"database": problem.database, "relation": problem.relation,
                                    "kind": problem.kind, "table": rel.table if rel else None,
                                    "block": problem.block, "offset": problem.offset,
                                    "attribute": problem.attribute, "tool": "pg_amcheck",
                                    "messages": problem.messages[:MAX_MESSAGES]}))
    for entry in rows.values():
        if entry["amcheck"] == "pending":
            entry["amcheck"] = "ok" if amcheck_ran else "not checked"
    status = (DetectorStatus.FINDINGS if findings else
              DetectorStatus.COULD_NOT_VERIFY if unverified else DetectorStatus.CLEAN)
    pages = checksum_summary.get("Blocks scanned")
    checked = (f"tables and B-trees of {len(relations)} relations amchecked in {len(databases)} database(s): "
               "no damage")
    summary_text = (f"{len(findings)} problem(s): " + ", ".join(sorted({f.code for f in findings})) if findings else
                    "could not verify: " + unverified[0].message if unverified else
                    f"{checked}; {not_applicable}" if not_applicable else
                    f"{pages} pages checksum-verified; {checked}")
    if not_applicable and (findings or unverified):
        summary_text += f"; {not_applicable}"
    return PhysicalCheck(
        DetectorOutcome(DETECTOR, status, summary_text, findings + unverified, time.monotonic() - started),
        sorted(rows.values(), key=lambda r: (r["database"], r["relation"])),
        {"checksums": checksum_summary, "amcheck": amcheck_summary, "databases": databases,
         "relations": len(relations)},
        suspect, amcheck_ran)


def _find(relations: dict[str, Relation], database: str, relation: str) -> Relation | None:
    return next((r for r in relations.values()
                 if r.qualified == relation and r.database in (database, "(shared)")), None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
