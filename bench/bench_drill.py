"""Drill overhead: the WAL-gap drill by phase, against a bare restore + replay of the same backup.

    .venv/bin/python bench/bench_drill.py                 # wal-gap, 3 repeats
    .venv/bin/python bench/bench_drill.py --all           # wall time of every scenario once

"Bare" is what an operator would type: ``barman-cloud-restore``, write restore_command and
recovery.signal, ``pg_ctl start``, poll ``pg_is_in_recovery()`` with psql until it says f.
pgdrill's recovery does the same work plus its pre-flight checks and its own polling; the
ratio (pgdrill recovery / bare) is its overhead.  Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from pgdrill.backends.local.backend import LocalBackend
from pgdrill.backends.local.postgres import pg_bin_dir
from pgdrill.config import Config
from pgdrill.drill.context import DrillContext
from pgdrill.drill.runner import run_scenario
from pgdrill.drill.spec import load_scenario, load_scenarios
from pgdrill.runs import new_run_id

REPO = Path(__file__).resolve().parent.parent


def bare_recovery(backend: LocalBackend, source_server: str, backup_id: str) -> float:
    instance = backend.new_instance("bare-restore")
    backend.user.own(instance.pgdata, 0o700)
    started = time.monotonic()
    backend.user.run(backend.barman.restore(source_server, backup_id, str(instance.pgdata)), backend.environment,
                     instance.cwd, timeout=600).check_returncode()
    instance.write_settings({**instance.base_settings(), "archive_mode": "off",
                             "restore_command": backend.barman.restore_command(source_server),
                             "recovery_target_action": "promote"})
    (instance.pgdata / "recovery.signal").touch()
    if backend.user.switch:
        import os

        os.chown(instance.pgdata / "recovery.signal", backend.user.uid, backend.user.gid)
    instance.start()
    psql = [str(pg_bin_dir() / "psql"), "-X", "-Atq", "-h", "127.0.0.1", "-p", str(instance.port), "-U", "postgres",
            "-c", "SELECT pg_is_in_recovery()"]
    while subprocess.run(psql, capture_output=True, text=True, env=backend.environment).stdout.strip() != "f":
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    instance.stop("immediate")
    return elapsed


def bench_wal_gap(repeats: int) -> None:
    scenario = load_scenario(REPO / "scenarios" / "wal-gap.yaml")
    rows = []
    for _ in range(repeats):
        run_id = new_run_id()
        backend = LocalBackend(Config(), run_id)
        try:
            started = time.monotonic()
            result = run_scenario(DrillContext(scenario, Config(), backend, Path(f"/tmp/pgdrill-bench/{run_id}"),
                                               REPO / "fixtures", progress=lambda line: None))
            total = time.monotonic() - started
            recovery = sum(v for k, v in result.rto.phases.items() if k in ("restore", "replay", "promote"))
            bare = bare_recovery(backend, "postgres-cluster", result.recovery["backup_id"])
            rows.append((total, result.rto.total, recovery, bare, result))
        finally:
            backend.close()
    print(f"wal-gap drill, {repeats} runs (verdicts: {', '.join(r[4].verdict.value for r in rows)})")
    for name in [s["step"] for s in rows[0][4].steps]:
        times = [next(s["seconds"] for s in r[4].steps if s["step"] == name) for r in rows]
        print(f"  {name:58} {statistics.median(times):6.2f}s")
    phases = rows[0][4].rto.phases
    for phase in phases:
        print(f"  RTO phase {phase:48} {statistics.median(r[4].rto.phases.get(phase, 0) for r in rows):6.2f}s")
    total = statistics.median(r[0] for r in rows)
    rto = statistics.median(r[1] for r in rows)
    recovery = statistics.median(r[2] for r in rows)
    bare = statistics.median(r[3] for r in rows)
    print(f"  whole drill                                                 {total:6.2f}s")
    print(f"  pgdrill RTO (disaster -> write accepted, incl. pre-flight)  {rto:6.2f}s")
    print(f"  pgdrill restore+replay+promote                              {recovery:6.2f}s")
    print(f"  bare barman-cloud-restore + replay + promote                {bare:6.2f}s")
    print(f"  overhead ratio restore+replay+promote / bare: {recovery / bare:.2f}; RTO / bare: {rto / bare:.2f}")


def bench_all() -> None:
    for scenario in load_scenarios(REPO / "scenarios"):
        run_id = new_run_id()
        backend = LocalBackend(Config(), run_id)
        try:
            started = time.monotonic()
            result = run_scenario(DrillContext(scenario, Config(), backend, Path(f"/tmp/pgdrill-bench/{run_id}"),
                                               REPO / "fixtures", progress=lambda line: None))
            print(f"{scenario.name:28} {scenario.tier:6} {time.monotonic() - started:6.1f}s  {result.verdict.value}",
                  flush=True)
        finally:
            backend.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args()
    bench_all() if args.all else bench_wal_gap(args.repeats)
