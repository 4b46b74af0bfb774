"""Content digests: what every table held on the source, compared with the recovered cluster.

Row counts catch missing rows, not wrong ones.  Here every table is read in primary-key order
as ``COPY ... TO STDOUT`` text (the server's own canonical rendering of each value, so source
and recovery hash identical bytes for identical rows), and hashed per *leaf*: a run of
``leaf_rows`` consecutive rows.  The leaf digests, the first/last key of each leaf and a
Merkle root over them are kept in the drill's state directory (``digests.json``), outside the
database under test, like the ledger.

After recovery the table is streamed again and cut the same way: equal root and row count
means equal content (the fast path: one ordered pass, no key parsing).  Otherwise the rows are
re-assigned to the *source's* key ranges by the server (``width_bucket`` over the recorded leaf
boundaries, so a missing or extra row cannot shift every later leaf), and a Merkle bisection
names the leaves that differ; adjacent ones are merged into key ranges for the finding.

Hash: BLAKE2b-128 (stdlib, ~1 GB/s).  The threat is accidental damage, not an adversary, so
128 bits is plenty and keeps ``digests.json`` small.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DIGEST_FILE = "digests.json"
LEAF_MIN_ROWS = 8
"""Small tables still get several leaves, so a mismatch names a few keys, not the whole table."""
MAX_LEAVES = 1024
"""Bounds ``digests.json`` (~100 bytes a leaf) and the width_bucket array of the located pass."""
WORK_MEM = "256MB"
"""For the ORDER BY: an external (on-disk) sort of a 150 MB table is twice as slow as in memory."""


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


EMPTY_LEAF = _hasher().hexdigest()


# -- data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    rows: int
    digest: str
    first_key: list[str | None] | None = None
    """Decoded key values of the leaf's first row (None for tables without a key)."""
    last_key: list[str | None] | None = None


@dataclass
class TableDigest:
    schema: str
    name: str
    key: list[str]
    """Primary-key columns in index order; empty: no primary key, ordered by all columns."""
    key_types: list[str]
    key_positions: list[int]
    """0-based positions of the key columns in ``SELECT *`` (= COPY fields)."""
    leaf_rows: int
    """Rows per leaf; 0 means one leaf for the whole table (no key to cut on)."""
    rows: int = 0
    leaves: list[Leaf] = field(default_factory=list)
    root: str = ""
    seconds: float = 0.0

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ordered_by(self) -> str:
        return "primary key (" + ", ".join(self.key) + ")" if self.key else "all columns"


@dataclass(frozen=True)
class Unverifiable:
    table: str
    reason: str


@dataclass
class DigestSet:
    """Digests of every table of one database at one point (here: the end of the workload)."""

    cluster: str
    database: str
    recorded_at: str = ""
    lsn: str | None = None
    """WAL insert position when the snapshot was taken (the recovery point these digests describe)."""
    tables: list[TableDigest] = field(default_factory=list)
    unverifiable: list[Unverifiable] = field(default_factory=list)
    skipped: list[Unverifiable] = field(default_factory=list)
    """Tables not expected to survive recovery (unlogged): listed, not compared."""
    error: str | None = None
    """Set when the source could not be read at all: nothing can be compared later."""
    seconds: float = 0.0

    def table(self, qualified: str) -> TableDigest | None:
        return next((t for t in self.tables if t.qualified == qualified), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigestSet:
        tables = [TableDigest(**{**t, "leaves": [Leaf(**leaf) for leaf in t["leaves"]]}) for t in data["tables"]]
        return cls(**{**data, "tables": tables,
                      "unverifiable": [Unverifiable(**u) for u in data.get("unverifiable", [])],
                      "skipped": [Unverifiable(**u) for u in data.get("skipped", [])]})

    def save(self, state_dir: Path) -> Path:
        path = state_dir / DIGEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, state_dir: Path) -> DigestSet | None:
        path = state_dir / DIGEST_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None


# -- pure logic --------------------------------------------------------------------------

_ESCAPES = {ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t", ord("v"): "\v",
            ord("\\"): "\\"}


def decode_copy_field(raw: bytes) -> str | None:
    r"""One field of COPY text format to its value text (``\N`` is NULL)."""
    if raw == b"\\N":
        return None
    if b"\\" not in raw:
        return raw.decode()
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != 0x5C or i + 1 == len(raw):
            out.append(byte)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt].encode()
            i += 2
        elif 0x30 <= nxt <= 0x37:  # \ooo, one to three octal digits
            j = i + 1
            while j < len(raw) and j < i + 4 and 0x30 <= raw[j] <= 0x37:
                j += 1
            out.append(int(raw[i + 1:j], 8) & 0xFF)
            i = j
        elif nxt == 0x78 and i + 2 < len(raw) and chr(raw[i + 2]) in "0123456789abcdefABCDEF":  # \xh[h]
            j = i + 2
            while j < len(raw) and j < i + 4 and chr(raw[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(raw[i + 2:j], 16))
            i = j
        else:  # any other escaped character stands for itself
            out.append(nxt)
            i += 2
    return out.decode()


def copy_key(line: bytes, positions: Sequence[int]) -> list[str | None]:
    fields = line.rstrip(b"\n").split(b"\t")
    return [decode_copy_field(fields[p]) for p in positions]


def cut_leaves(lines: Iterable[bytes], leaf_rows: int, key_positions: Sequence[int] = ()) -> list[Leaf]:
    """Hash COPY lines (each ending in ``\\n``) into leaves of ``leaf_rows`` rows (0: one leaf).

    The hot loop of every digest: per row one hash update and a counter, and key parsing only
    at leaf edges, so it keeps up with COPY itself.
    """
    leaves: list[Leaf] = []
    hasher = _hasher()
    in_leaf = 0
    first: list[str | None] | None = None
    prev = b""
    want_keys = bool(key_positions)
    for line in lines:
        if in_leaf == 0 and want_keys:
            first = copy_key(bytes(line), key_positions)
        hasher.update(line)
        in_leaf += 1
        prev = line
        if in_leaf == leaf_rows:
            leaves.append(Leaf(in_leaf, hasher.hexdigest(), first,
                               copy_key(bytes(prev), key_positions) if want_keys else None))
            hasher, in_leaf = _hasher(), 0
    if in_leaf or not leaves:
        leaves.append(Leaf(in_leaf, hasher.hexdigest(), first if in_leaf else None,
                           copy_key(bytes(prev), key_positions) if want_keys and in_leaf else None))
    return leaves


def leaf_size(estimated_rows: float) -> int:
    return max(LEAF_MIN_ROWS, math.ceil(max(estimated_rows, 0) / MAX_LEAVES))


class MerkleTree:
    """Digests of leaf ranges: ``node(lo, hi)`` hashes ``node(lo, mid)`` and ``node(mid, hi)``."""

    def __init__(self, leaves: Sequence[str]):
        self.leaves = list(leaves)
        self._memo: dict[tuple[int, int], str] = {}

    def node(self, lo: int, hi: int) -> str:
        if hi - lo <= 0:
            return EMPTY_LEAF
        if hi - lo == 1:
            return self.leaves[lo]
        key = (lo, hi)
        if key not in self._memo:
            mid = (lo + hi) // 2
            hasher = _hasher()
            hasher.update(b"node:" + self.node(lo, mid).encode() + b":" + self.node(mid, hi).encode())
            self._memo[key] = hasher.hexdigest()
        return self._memo[key]

    @property
    def root(self) -> str:
        return self.node(0, len(self.leaves))


def merkle_root(leaves: Sequence[Leaf]) -> str:
    return MerkleTree([f"{leaf.rows}:{leaf.digest}" for leaf in leaves]).root


def locate_mismatches(expected: Sequence[str], probe: Callable[[int, int], str]) -> list[int]:
    """Bisection: indexes of the leaves whose digest differs, descending only into differing halves.

    ``probe(lo, hi)`` is the other side's Merkle node over the same leaf index range; for k
    differing leaves out of n it is called O(k log n) times, not n.
    """
    tree = MerkleTree(expected)
    found: list[int] = []

    def walk(lo: int, hi: int) -> None:
        if hi <= lo or tree.node(lo, hi) == probe(lo, hi):
            return
        if hi - lo == 1:
            found.append(lo)
            return
        mid = (lo + hi) // 2
        walk(lo, mid)
        walk(mid, hi)

    walk(0, len(tree.leaves))
    return found


def runs(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indexes → inclusive (first, last) runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


@dataclass(frozen=True)
class RangeDiff:
    first_leaf: int
    last_leaf: int
    first_key: list[str | None] | None
    last_key: list[str | None] | None
    expected_rows: int
    found_rows: int
    unreadable: str | None = None
    """The server's error when this range could not be read at all."""

    def describe(self, key: Sequence[str]) -> str:
        if not key or self.first_key is None:
            where = "whole table"
        elif len(key) == 1:
            where = f"{key[0]} {self.first_key[0]}..{self.last_key[0] if self.last_key else '?'}"
        else:
            where = f"({', '.join(key)}) ({', '.join(map(str, self.first_key))})..(" + \
                    (", ".join(map(str, self.last_key)) if self.last_key else "?") + ")"
        rows = f"{self.expected_rows} rows expected, {self.found_rows} found"
        return f"{where} [{rows}" + (f"; unreadable: {self.unreadable}" if self.unreadable else "") + "]"


def diff_ranges(expected: TableDigest, found: Sequence[Leaf], unreadable: dict[int, str] | None = None
                ) -> list[RangeDiff]:
    """Compare key-aligned leaves (``found[i]`` holds the rows in the key range of ``expected.leaves[i]``)."""
    if len(found) != len(expected.leaves):
        raise ValueError(f"{len(found)} found leaves for {len(expected.leaves)} expected ones")
    unreadable = unreadable or {}
    found_nodes = MerkleTree([f"{leaf.rows}:{leaf.digest}" for leaf in found])
    bad = set(locate_mismatches([f"{leaf.rows}:{leaf.digest}" for leaf in expected.leaves], found_nodes.node))
    bad |= set(unreadable)
    diffs = []
    for first, last in runs(bad):
        errors = sorted({unreadable[i] for i in range(first, last + 1) if i in unreadable})
        diffs.append(RangeDiff(first, last, expected.leaves[first].first_key, expected.leaves[last].last_key,
                               sum(leaf.rows for leaf in expected.leaves[first:last + 1]),
                               sum(found[i].rows for i in range(first, last + 1) if i not in unreadable),
                               "; ".join(errors) if errors else None))
    return diffs


# -- reading a database ------------------------------------------------------------------

@dataclass(frozen=True)
class _Table:
    schema: str
    name: str
    key: list[str]
    key_types: list[str]
    key_positions: list[int]
    columns: int
    estimated_rows: float
    persistence: str


_TABLES = """
SELECT n.nspname::text, c.relname::text,
       coalesce(pk.cols, '{}'), coalesce(pk.types, '{}'), coalesce(pk.positions, '{}'),
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       greatest(c.reltuples, pg_relation_size(c.oid) / 64.0), c.relpersistence::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT array_agg(a.attname::text ORDER BY k.ord) AS cols,
           array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord) AS types,
           array_agg((SELECT count(*) FROM pg_attribute b WHERE b.attrelid = c.oid AND b.attnum > 0
                      AND NOT b.attisdropped AND b.attnum < a.attnum)::int ORDER BY k.ord) AS positions
    FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary
) pk ON true
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
  AND NOT (n.nspname = 'public' AND c.relname = 'pgdrill_write_probe')
ORDER BY 1, 2
"""


def _tables(conn: Any) -> list[_Table]:
    return [_Table(r[0], r[1], list(r[2]), list(r[3]), list(r[4]), int(r[5]), float(r[6]), r[7])
            for r in conn.execute(_TABLES).fetchall()]


def _order_by(table: _Table | TableDigest, columns: int) -> Any:
    from psycopg import sql

    if table.key:
        return sql.SQL(", ").join(sql.Identifier(k) for k in table.key)
    return sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(columns))


def _stream(conn: Any, query: Any) -> Iterable[Any]:
    with conn.cursor() as cur, cur.copy(query) as copy:
        read = copy.read
        while data := read():
            yield data


def _begin_snapshot(conn: Any) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")


def _scan_settings(conn: Any, avoid_indexes: bool) -> None:
    # A B-tree that amcheck flagged may return rows out of order or miss some; then the digest
    # must read the heap (seq scan + sort) so it describes the table, not the damaged index.
    value = "off" if avoid_indexes else "on"
    for setting in ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
        conn.execute(f"SET LOCAL {setting} = {value}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def record(connect: Callable[[str], Any], cluster: str, database: str) -> DigestSet:
    """Digest every table of ``database`` in one REPEATABLE READ snapshot."""
    from psycopg import sql

    started = time.monotonic()
    digests = DigestSet(cluster, database, recorded_at=_now())
    try:
        conn = connect(database)
    except Exception as exc:  # a source we cannot read is a could-not-verify later, not a crash now
        digests.error = f"could not connect to database {database!r} on {cluster}: {_first_line(exc)}"
        return digests
    with conn:
        try:
            with conn.transaction():
                _begin_snapshot(conn)
                digests.lsn = str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
                for table in _tables(conn):
                    qualified = f"{table.schema}.{table.name}"
                    if table.persistence == "u":
                        digests.skipped.append(Unverifiable(qualified, "unlogged: not WAL-logged, empty after any "
                                                                       "recovery by design"))
                        continue
                    leaf_rows = leaf_size(table.estimated_rows) if table.key else 0
                    digest = TableDigest(table.schema, table.name, table.key, table.key_types, table.key_positions,
                                         leaf_rows)
                    query = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
                        sql.Identifier(table.schema, table.name), _order_by(table, table.columns))
                    begun = time.monotonic()
                    try:
                        with conn.transaction():  # savepoint: one unsortable table must not end the snapshot
                            digest.leaves = cut_leaves(_stream(conn, query), leaf_rows, table.key_positions)
                    except Exception as exc:
                        digests.unverifiable.append(Unverifiable(
                            qualified, ("no primary key and its columns cannot be ordered: " if not table.key
                                        else "could not be read: ") + _first_line(exc)))
                        continue
                    digest.rows = sum(leaf.rows for leaf in digest.leaves)
                    digest.root = merkle_root(digest.leaves)
                    digest.seconds = time.monotonic() - begun
                    digests.tables.append(digest)
        except Exception as exc:
            digests.error = f"could not read database {database!r} on {cluster}: {_first_line(exc)}"
    digests.seconds = time.monotonic() - started
    return digests


@dataclass
class TableComparison:
    table: str
    status: str
    """``match``, ``mismatch``, ``missing`` (table gone) or ``unverifiable``."""
    expected_rows: int
    found_rows: int | None = None
    ranges: list[RangeDiff] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    path: str = "fast"
    """``fast`` (one ordered pass matched) or ``located`` (ranges re-read against the source's bounds)."""
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "status": self.status, "expected_rows": self.expected_rows,
                "found_rows": self.found_rows, "path": self.path, "error": self.error,
                "seconds": round(self.seconds, 3),
                "ranges": [{"range": r.describe(self.key), "first_key": r.first_key, "last_key": r.last_key,
                            "expected_rows": r.expected_rows, "found_rows": r.found_rows,
                            "unreadable": r.unreadable} for r in self.ranges[:200]]}


def compare(connect: Callable[[str], Any], expected: DigestSet, avoid_indexes: set[str] | None = None
            ) -> list[TableComparison]:
    """Re-digest every recorded table on a recovered cluster; raise only if the database is unreachable."""
    avoid_indexes = avoid_indexes or set()
    conn = connect(expected.database)  # the caller turns a failure into DATABASE_UNREACHABLE
    results: list[TableComparison] = []
    with conn:
        with conn.transaction():
            _begin_snapshot(conn)
            present = {f"{t.schema}.{t.name}": t for t in _tables(conn)}
            for digest in expected.tables:
                begun = time.monotonic()
                table = present.get(digest.qualified)
                if table is None:
                    results.append(TableComparison(digest.qualified, "missing", digest.rows, None, [
                        RangeDiff(0, len(digest.leaves) - 1, digest.leaves[0].first_key, digest.leaves[-1].last_key,
                                  digest.rows, 0)], digest.key, error="table does not exist in the recovered cluster"))
                    continue
                _scan_settings(conn, digest.qualified in avoid_indexes)
                result = _compare_table(conn, digest, table)
                result.seconds = time.monotonic() - begun
                results.append(result)
    return results


def _compare_table(conn: Any, digest: TableDigest, table: _Table) -> TableComparison:
    from psycopg import sql

    name = sql.Identifier(digest.schema, digest.name)
    order = _order_by(digest, table.columns)
    try:
        with conn.transaction():
            leaves = cut_leaves(_stream(conn, sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT")
                                        .format(name, order)), digest.leaf_rows)
        rows = sum(leaf.rows for leaf in leaves)
        if rows == digest.rows and merkle_root(leaves) == digest.root:
            return TableComparison(digest.qualified, "match", digest.rows, rows, key=digest.key)
    except Exception as exc:
        fast_error = _first_line(exc)
    else:
        fast_error = None
    located, unreadable = _located_leaves(conn, digest, table, name, order, fast_error)
    ranges = diff_ranges(digest, located, unreadable)
    found = sum(leaf.rows for i, leaf in enumerate(located) if i not in unreadable)
    return TableComparison(digest.qualified, "mismatch" if ranges else "match", digest.rows, found, ranges,
                           digest.key, "located", error=fast_error)


def _located_leaves(conn: Any, digest: TableDigest, table: _Table, name: Any, order: Any,
                    fast_error: str | None) -> tuple[list[Leaf], dict[int, str]]:
    """Leaves aligned on the source's key ranges: one ordered pass with the server computing
    each row's leaf, or (when a page cannot be read) one query per leaf so readable ranges
    still compare and only the damaged ones are reported unreadable."""
    from psycopg import sql

    count = len(digest.leaves)
    if not digest.key or count == 1:
        if fast_error:
            return [Leaf(0, EMPTY_LEAF)], {0: fast_error}
        leaves = cut_leaves(_stream(conn, sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT")
                                    .format(name, order)), 0)
        return leaves, {}
    key = _key_expr(digest)
    bounds = [leaf.first_key for leaf in digest.leaves[1:]]
    if fast_error is None:
        array = sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(_key_literal(digest, b) for b in bounds))
        query = sql.SQL("COPY (SELECT width_bucket({}, {}), * FROM {} ORDER BY {}) TO STDOUT").format(
            key, array, name, order)
        hashers = [_hasher() for _ in range(count)]
        rows = [0] * count
        try:
            with conn.transaction():
                for data in _stream(conn, query):
                    line = bytes(data)
                    tab = line.index(b"\t")
                    leaf = int(line[:tab])
                    hashers[leaf].update(line[tab + 1:])
                    rows[leaf] += 1
            return [Leaf(rows[i], hashers[i].hexdigest()) for i in range(count)], {}
        except Exception:
            pass  # fall through to per-leaf reads
    leaves: list[Leaf] = []
    unreadable: dict[int, str] = {}
    for i in range(count):
        lower = sql.SQL("{} >= {}").format(key, _key_literal(digest, digest.leaves[i].first_key)) if i else sql.SQL("true")
        upper = sql.SQL("{} < {}").format(key, _key_literal(digest, digest.leaves[i + 1].first_key)) \
            if i + 1 < count else sql.SQL("true")
        query = sql.SQL("COPY (SELECT * FROM {} WHERE {} AND {} ORDER BY {}) TO STDOUT").format(
            name, lower, upper, order)
        try:
            with conn.transaction():
                leaves.append(cut_leaves(_stream(conn, query), 0)[0])
        except Exception as exc:
            leaves.append(Leaf(0, EMPTY_LEAF))
            unreadable[i] = _first_line(exc)
    return leaves, unreadable


def _key_expr(digest: TableDigest) -> Any:
    from psycopg import sql

    if len(digest.key) == 1:
        return sql.Identifier(digest.key[0])
    return sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(k) for k in digest.key))


def _key_literal(digest: TableDigest, values: list[str | None] | None) -> Any:
    from psycopg import sql

    if values is None:
        raise ValueError(f"{digest.qualified}: a leaf without a recorded key")
    parts = [sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t)) for v, t in zip(values, digest.key_types)]
    return parts[0] if len(parts) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(parts))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
