"""Content digests, reading a database: the catalogue of tables to digest, COPY streaming in
one snapshot, and :func:`record` (every table of the source at the end of the workload).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pgdrill.detectors.digest import DigestSet, TableDigest, Unverifiable
from pgdrill.detectors.digest_merkle import cut_leaves, leaf_size, merkle_root

WORK_MEM = "256MB"
"""For the ORDER BY: an external (on-disk) sort of a 150 MB table is twice as slow as in memory."""


@dataclass(frozen=True)
class CatalogTable:
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


def catalog_tables(conn: Any) -> list[CatalogTable]:
    return [CatalogTable(r[0], r[1], list(r[2]), list(r[3]), list(r[4]), int(r[5]), float(r[6]), r[7])
            for r in conn.execute(_TABLES).fetchall()]


def order_by(table: CatalogTable | TableDigest, columns: int) -> Any:
    from psycopg import sql

    if table.key:
        return sql.SQL(", ").join(sql.Identifier(k) for k in table.key)
    return sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(columns))


def stream_copy(conn: Any, query: Any) -> Iterable[Any]:
    with conn.cursor() as cur, cur.copy(query) as copy:
        read = copy.read
        while data := read():
            yield data


def begin_snapshot(conn: Any) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")


def scan_settings(conn: Any, avoid_indexes: bool) -> None:
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
        digests.error = f"could not connect to database {database!r} on {cluster}: {first_line(exc)}"
        return digests
    with conn:
        try:
            with conn.transaction():
                begin_snapshot(conn)
                digests.lsn = str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
                for table in catalog_tables(conn):
                    qualified = f"{table.schema}.{table.name}"
                    if table.persistence == "u":
                        digests.skipped.append(Unverifiable(qualified, "unlogged: not WAL-logged, empty after any "
                                                                       "recovery by design"))
                        continue
                    leaf_rows = leaf_size(table.estimated_rows) if table.key else 0
                    digest = TableDigest(table.schema, table.name, table.key, table.key_types, table.key_positions,
                                         leaf_rows)
                    query = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT").format(
                        sql.Identifier(table.schema, table.name), order_by(table, table.columns))
                    begun = time.monotonic()
                    try:
                        with conn.transaction():  # savepoint: one unsortable table must not end the snapshot
                            digest.leaves = cut_leaves(stream_copy(conn, query), leaf_rows, table.key_positions)
                    except Exception as exc:
                        digests.unverifiable.append(Unverifiable(
                            qualified, ("no primary key and its columns cannot be ordered: " if not table.key
                                        else "could not be read: ") + first_line(exc)))
                        continue
                    digest.rows = sum(leaf.rows for leaf in digest.leaves)
                    digest.root = merkle_root(digest.leaves)
                    digest.seconds = time.monotonic() - begun
                    digests.tables.append(digest)
        except Exception as exc:
            digests.error = f"could not read database {database!r} on {cluster}: {first_line(exc)}"
    digests.seconds = time.monotonic() - started
    return digests


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]
