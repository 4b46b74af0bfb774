"""Bench the integrity stage (issue 9) on a pgbench database >= 200 MB, on the local backend.

    /opt/pgdrill/venv/bin/python bench/bench_integrity.py [--scale 15] [--rounds 3]

Side by side, in one run, on the same data directory:
* by hand: stop + ``pg_checksums --check`` + start, then ``pg_amcheck --all --heapallindexed``
  (same -j as pgdrill uses) — the reference;
* pgdrill's physical detector (``check_physical``: the same tools plus inventory and parsing)
  and the whole integrity stage (physical + content digests of every table);
* the alternative to pg_checksums: a full read through the server (``pg_prewarm`` of every fork
  of every relation after a restart) with ``pg_stat_database.checksum_failures``;
* ``COPY pgbench_accounts TO STDOUT`` streamed and discarded vs pgdrill's digest of that table
  (recording on the source, and the fast comparison pass on a recovery), in rows per second.

Targets: physical detector <= 1.5x by hand; digest >= 0.5x COPY rows/s (gated, exit 2 otherwise).
The whole stage (physical + content) is printed too.  Best of ``--rounds``.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from typing import Any

from pgdrill.backends import make_backend
from pgdrill.backends.local.integrity_tools import LocalIntegrityTools
from pgdrill.backends.local.postgres import pg_bin_dir
from pgdrill.config import Config
from pgdrill.detectors.digest_compare import compare
from pgdrill.detectors.digest_sql import record
from pgdrill.detectors.integrity import check_integrity
from pgdrill.detectors.physical import check_physical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    backend = make_backend(Config(), f"bench-integrity-{secrets.token_hex(3)}")
    try:
        return run(backend, args.scale, args.rounds)
    finally:
        backend.close()


def run(backend: Any, scale: int, rounds: int) -> int:
    source = backend.create_source("bench")
    instance = backend.node(source)
    tools = LocalIntegrityTools(backend)

    def connect(dbname: str) -> Any:
        return tools.connect(source, dbname)

    began = time.monotonic()
    init = subprocess.run([str(pg_bin_dir() / "pgbench"), "-i", "-s", str(scale), "-q", "-h", "127.0.0.1",
                           "-p", str(instance.port), "-U", "postgres", "postgres"],
                          capture_output=True, text=True, env=backend.environment, timeout=1800)
    if init.returncode != 0:
        print(init.stderr, file=sys.stderr)
        return 1
    with connect("postgres") as conn:
        size = conn.execute("SELECT pg_database_size('postgres')").fetchone()[0]
        accounts = conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone()[0]
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    print(f"pgbench -i -s {scale}: {time.monotonic() - began:.1f}s; database {size / 2**20:.0f} MB; "
          f"pgbench_accounts {accounts} rows")
    tools.pg_amcheck(source)  # warm-up: installs amcheck where missing, like a first drill would

    def checkpoint() -> None:
        with connect("postgres") as conn:
            conn.execute("CHECKPOINT")

    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    digests = None
    for _ in range(rounds):
        checkpoint()
        checksums = tools.pg_checksums(source)
        amcheck = tools.pg_amcheck(source)
        assert checksums.returncode == 0 and amcheck.returncode == 0, (checksums.stderr, amcheck.stderr)
        add("by hand: pg_checksums --check", checksums.seconds)
        add("by hand: stop + start around it", checksums.restart_seconds)
        add("by hand: pg_amcheck --heapallindexed", amcheck.seconds)
        add("by hand: total", checksums.seconds + checksums.restart_seconds + amcheck.seconds)

        if digests is None:
            digests = record(connect, source.name, "postgres")
        checkpoint()
        begun = time.monotonic()
        physical = check_physical(tools, source)
        add("pgdrill: physical detector alone", time.monotonic() - begun)
        assert physical.outcome.status.value == "clean", physical.outcome.summary
        begun = time.monotonic()
        comparisons = compare(connect, digests)
        add("pgdrill: content detector alone (all tables)", time.monotonic() - begun)
        assert all(c.status == "match" for c in comparisons)
        checkpoint()
        begun = time.monotonic()
        stage = check_integrity(backend, source, "postgres", digests)
        add("pgdrill: integrity stage (check_integrity)", time.monotonic() - begun)
        assert [o.status.value for o in stage.outcomes] == ["clean", "clean"], [o.summary for o in stage.outcomes]

        # The alternative to pg_checksums: read every fork of every relation through the server.
        instance.stop("fast")
        instance.start()
        instance.wait_ready()
        begun = time.monotonic()
        failures_before = _checksum_failures(connect)
        with connect("postgres") as conn:
            conn.execute("""
                SELECT pg_prewarm(c.oid, 'buffer', f.fork)
                FROM pg_class c CROSS JOIN unnest(ARRAY['main', 'fsm', 'vm']) AS f(fork)
                WHERE c.relkind IN ('r', 'i', 'm', 't', 'S') AND c.relpersistence = 'p'
                  AND pg_relation_size(c.oid, f.fork) > 0""").fetchall()
        assert _checksum_failures(connect) == failures_before
        add("alternative: full read via pg_prewarm (one database)", time.monotonic() - begun)

        with connect("postgres") as conn:
            begun = time.monotonic()
            with conn.cursor() as cur, cur.copy("COPY pgbench_accounts TO STDOUT") as copy:
                while copy.read():
                    pass
            add("COPY pgbench_accounts TO STDOUT rows/s", accounts / (time.monotonic() - begun))
        fresh = record(connect, source.name, "postgres")
        table = fresh.table("public.pgbench_accounts")
        assert table is not None and table.root == digests.table("public.pgbench_accounts").root  # type: ignore[union-attr]
        add("digest (record on source) rows/s", table.rows / table.seconds)
        fast = next(c for c in compare(connect, digests) if c.table == "public.pgbench_accounts")
        add("digest (compare, fast path) rows/s", accounts / fast.seconds)
        no_index = next(c for c in compare(connect, digests, {"public.pgbench_accounts"})
                        if c.table == "public.pgbench_accounts")
        add("digest (compare, heap only: seq scan + sort) rows/s", accounts / no_index.seconds)

    print(f"\n{'measure':58} {'best':>12} {'median':>12}")
    for name, values in figures.items():
        rate = "rows/s" in name
        best = max(values) if rate else min(values)
        fmt = (lambda v: f"{v:,.0f}") if rate else (lambda v: f"{v:.2f}s")
        print(f"{name:58} {fmt(best):>12} {fmt(statistics.median(values)):>12}")

    def best(name: str) -> float:
        values = figures[name]
        return max(values) if "rows/s" in name else min(values)

    stage_ratio = best("pgdrill: integrity stage (check_integrity)") / best("by hand: total")
    physical_ratio = best("pgdrill: physical detector alone") / best("by hand: total")
    copy = best("COPY pgbench_accounts TO STDOUT rows/s")
    print(f"\nphysical detector / by hand: {physical_ratio:.2f}x (target <= 1.5)")
    print(f"whole integrity stage (physical + content digests of every table) / by hand: {stage_ratio:.2f}x "
          "(content alone is bounded below by COPY of every row; reported, not gated)")
    for name in ("digest (record on source) rows/s", "digest (compare, fast path) rows/s",
                 "digest (compare, heap only: seq scan + sort) rows/s"):
        print(f"{name.removesuffix(' rows/s')} / COPY: {best(name) / copy:.2f}x (target >= 0.5)")
    ok = physical_ratio <= 1.5 and all(best(n) / copy >= 0.5 for n in (
        "digest (record on source) rows/s", "digest (compare, fast path) rows/s"))
    print("RESULT:", "within targets" if ok else "OUTSIDE targets")
    return 0 if ok else 2


def _checksum_failures(connect: Any) -> int:
    with connect("postgres") as conn:
        return int(conn.execute("SELECT coalesce(sum(checksum_failures), 0) FROM pg_stat_database").fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
