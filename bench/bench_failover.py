"""Benchmark: the node-level drills, timed by step and by RTO phase (never asserted anywhere).

    python bench/bench_failover.py [--repeat 3] [--drill primary-kill-failover] [--json out.json]

Runs each selected drill ``--repeat`` times on the local backend (real PostgreSQL, barman-cloud
and SeaweedFS), each time in a fresh backend, and prints per-step seconds (median, min, max),
the RTO phases, the acknowledged commits lost and the verdict.  Exits 1 if any run's verdict
is not PASSED, so a broken drill cannot produce a pretty timing table.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pgdrill.backends import make_backend
from pgdrill.config import load_config
from pgdrill.drill.node import run_crash_drill, run_failover_drill
from pgdrill.drill.node_plans import (
    CRASH_RESTART,
    FAILOVER,
    FAILOVER_ARCHIVER_BACKLOG,
    FAILOVER_ARCHIVING_STALLED,
    NodeDrillPlan,
)
from pgdrill.results import DrillResult, Verdict

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DRILLS: dict[str, tuple[NodeDrillPlan, object]] = {
    FAILOVER.name: (FAILOVER, run_failover_drill),
    FAILOVER_ARCHIVER_BACKLOG.name: (FAILOVER_ARCHIVER_BACKLOG, run_failover_drill),
    FAILOVER_ARCHIVING_STALLED.name: (FAILOVER_ARCHIVING_STALLED, run_failover_drill),
    CRASH_RESTART.name: (CRASH_RESTART, run_crash_drill),
}


def run_once(name: str, state_root: Path) -> tuple[DrillResult, float]:
    plan, runner = DRILLS[name]
    config = load_config(None)
    backend = make_backend(config, f"bench-{secrets.token_hex(4)}-{name}")
    started = time.monotonic()
    try:
        result = runner(backend, config, plan, state_root / f"{name}-{secrets.token_hex(3)}", FIXTURES,  # type: ignore[operator]
                        progress=lambda line: None)
    finally:
        backend.close()  # type: ignore[attr-defined]
    return result, time.monotonic() - started


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} {min(values):7.2f} {max(values):7.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drill", action="append", choices=sorted(DRILLS),
                        help="drill(s) to time (default: primary-kill-failover and primary-kill-crash-recovery)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args(argv)
    names = args.drill or [FAILOVER.name, CRASH_RESTART.name]
    ok = True
    report: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="pgdrill-bench-") as tmp:
        for name in names:
            steps: dict[str, list[float]] = defaultdict(list)
            phases: dict[str, list[float]] = defaultdict(list)
            totals, rtos, lost, in_doubt = [], [], [], []
            runs: list[dict[str, object]] = []
            for i in range(args.repeat):
                result, wall = run_once(name, Path(tmp))
                print(f"{name} run {i + 1}/{args.repeat}: {result.verdict.value} in {wall:.1f}s "
                      f"({'; '.join(result.verdict_reasons)[:160]})", flush=True)
                ok &= result.verdict == Verdict.PASSED
                for s in result.steps:
                    steps[s["step"]].append(s["seconds"])
                for k, v in result.rto.phases.items():
                    phases[k].append(v)
                totals.append(wall)
                if result.rto.total is not None:
                    rtos.append(result.rto.total)
                lost.append(float(result.rpo.get("lost_writes", 0) or 0))
                in_doubt.append(float(sum(len(v) for v in (result.rpo.get("in_doubt_rows_present") or {}).values())))
                runs.append({"verdict": result.verdict.value, "wall_s": round(wall, 3), "steps": result.steps,
                             "rto": result.rto.to_dict(), "rpo": result.rpo,
                             "load_rows": result.faults[0]["evidence"]["load"]["rows_committed"]
                             if result.faults else None})
            report[name] = runs
            print(f"\n== {name}: {args.repeat} run(s)          median     min     max")
            for title, values in steps.items():
                print(f"  {title[:58]:58} {_stats(values)}")
            print(f"  {'-- drill wall time':58} {_stats(totals)}")
            for title, values in phases.items():
                print(f"  RTO phase {title:48} {_stats(values)}")
            if rtos:
                print(f"  {'RTO total (kill -> first write committed)':58} {_stats(rtos)}")
            print(f"  {'acknowledged commits lost':58} {_stats(lost)}")
            print(f"  {'in-doubt rows present (committed, not in ledger)':58} {_stats(in_doubt)}\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
