"""Content digests, checking a recovered cluster: re-digest every recorded table, fast path
first (one ordered pass, equal root), else re-read on the source's key ranges and bisect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgdrill.detectors.digest import (
    EMPTY_LEAF,
    DigestSet,
    Leaf,
    TableDigest,
    new_hasher,
)
from pgdrill.detectors.digest_merkle import (
    RangeDiff,
    cut_leaves,
    diff_ranges,
    merkle_root,
)
from pgdrill.detectors.digest_sql import (
    CatalogTable,
    begin_snapshot,
    catalog_tables,
    first_line,
    order_by,
    scan_settings,
    stream_copy,
)


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
            begin_snapshot(conn)
            present = {f"{t.schema}.{t.name}": t for t in catalog_tables(conn)}
            for digest in expected.tables:
                begun = time.monotonic()
                table = present.get(digest.qualified)
                if table is None:
                    results.append(TableComparison(digest.qualified, "missing", digest.rows, None, [
                        RangeDiff(0, len(digest.leaves) - 1, digest.leaves[0].first_key, digest.leaves[-1].last_key,
                                  digest.rows, 0)], digest.key, error="table does not exist in the recovered cluster"))
                    continue
                scan_settings(conn, digest.qualified in avoid_indexes)
                result = _compare_table(conn, digest, table)
                result.seconds = time.monotonic() - begun
                results.append(result)
    return results


def _compare_table(conn: Any, digest: TableDigest, table: CatalogTable) -> TableComparison:
    from psycopg import sql

    name = sql.Identifier(digest.schema, digest.name)
    order = order_by(digest, table.columns)
    try:
        with conn.transaction():
            leaves = cut_leaves(stream_copy(conn, sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT")
                                        .format(name, order)), digest.leaf_rows)
        rows = sum(leaf.rows for leaf in leaves)
        if rows == digest.rows and merkle_root(leaves) == digest.root:
            return TableComparison(digest.qualified, "match", digest.rows, rows, key=digest.key)
    except Exception as exc:
        fast_error = first_line(exc)
    else:
        fast_error = None
    located, unreadable = _located_leaves(conn, digest, table, name, order, fast_error)
    ranges = diff_ranges(digest, located, unreadable)
    found = sum(leaf.rows for i, leaf in enumerate(located) if i not in unreadable)
    return TableComparison(digest.qualified, "mismatch" if ranges else "match", digest.rows, found, ranges,
                           digest.key, "located", error=fast_error)


def _located_leaves(conn: Any, digest: TableDigest, table: CatalogTable, name: Any, order: Any,
                    fast_error: str | None) -> tuple[list[Leaf], dict[int, str]]:
    """Leaves aligned on the source's key ranges: one ordered pass with the server computing
    each row's leaf, or (when a page cannot be read) one query per leaf so readable ranges
    still compare and only the damaged ones are reported unreadable."""
    from psycopg import sql

    count = len(digest.leaves)
    if not digest.key or count == 1:
        if fast_error:
            return [Leaf(0, EMPTY_LEAF)], {0: fast_error}
        leaves = cut_leaves(stream_copy(conn, sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT")
                                    .format(name, order)), 0)
        return leaves, {}
    key = _key_expr(digest)
    bounds = [leaf.first_key for leaf in digest.leaves[1:]]
    if fast_error is None:
        array = sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(_key_literal(digest, b) for b in bounds))
        query = sql.SQL("COPY (SELECT width_bucket({}, {}), * FROM {} ORDER BY {}) TO STDOUT").format(
            key, array, name, order)
        hashers = [new_hasher() for _ in range(count)]
        rows = [0] * count
        try:
            with conn.transaction():
                for data in stream_copy(conn, query):
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
                leaves.append(cut_leaves(stream_copy(conn, query), 0)[0])
        except Exception as exc:
            leaves.append(Leaf(0, EMPTY_LEAF))
            unreadable[i] = first_line(exc)
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
