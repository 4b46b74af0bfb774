"""pgdrill restore-test against the bare tools, on the same archive, in one run.

    python bench/bench_restore_test.py --dir /tmp/pgdrill-scale --small-dir /tmp/pgdrill-scale-small

Both directories come from ``bench/build_archive.py`` (their ``manifest.json`` and SeaweedFS
data; the large one e.g. ``--db-mb 1024 --wal-mb 1024``, the small one ``--db-mb 200 --wal-mb 200``).
Measured, in this order, each on a cold start of the same SeaweedFS:

1. **bare**: ``barman-cloud-restore`` + PostgreSQL with ``restore_command`` =
   ``barman-cloud-wal-restore`` and ``recovery_target_action = promote``, started by hand (as the
   unprivileged OS user) and polled until it leaves recovery: the floor pgdrill is measured against.
2. **pgdrill, maxParallel 1**: ``run_restore_test`` without the target check and checks (they run
   after the RTO clock stops; their cost is reported apart): ratio = pgdrill's RTO / bare.
3. **pgdrill, maxParallel 8**: the plugin's parallel WAL fetch.
4. **forecast**: ``rto_forecast`` from the *small* archive's measured rates, applied to the large
   archive's backup and WAL sizes, against the large archive's measured RTO.

Prints one JSON document with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pgdrill.backends.local.barman import BarmanCloud, tools_dir
from pgdrill.backends.local.postgres import pg_bin_dir
from pgdrill.backends.local.runas import OsUser, ProcessGroups
from pgdrill.backends.local.seaweed import SeaweedServer
from pgdrill.config import Config
from pgdrill.restoretest.forecast import rto_forecast
from pgdrill.restoretest.run import run_restore_test
from pgdrill.restoretest.spec import RestoreTestSpec

KEY, SECRET = "PGDRILL_BENCH_RO_KEY", "PGDRILL_BENCH_RO_SECRET"


def _server(manifest: dict, directory: Path) -> SeaweedServer:
    server = SeaweedServer(Path(manifest["s3_dir"]), bucket=manifest["bucket"]).start()
    os.environ[KEY] = server.reader.credentials.access_key_id
    os.environ[SECRET] = server.reader.credentials.secret_access_key
    return server


def _location(manifest: dict) -> str:
    return f"{manifest['destination']}/{manifest['server_name']}"


def bare(manifest: dict, server: SeaweedServer) -> dict:
    """The plugin's steps with nothing of pgdrill around them."""
    import psycopg

    user = OsUser.for_postgres("pgdrill")
    scope = ProcessGroups()
    user = replace(user, scope=scope)
    work = user.own(Path(tempfile.mkdtemp(prefix="pgd-bare-")), 0o700)  # PostgreSQL writes its log and socket here
    pgdata = user.own(work / "pgdata", 0o700)
    env = {"PATH": f"{pg_bin_dir()}:{tools_dir()}:/usr/bin:/bin", "HOME": str(user.own(work / "home")),
           "LANG": "C.UTF-8", **server.reader.credentials.as_environment()}
    barman = BarmanCloud(manifest["destination"], server.endpoint_url, bin_dir=tools_dir())
    try:
        began = time.monotonic()
        restore = user.run(barman.restore(manifest["server_name"], manifest["backup_id"], str(pgdata)), env, work,
                           timeout=7200)
        assert restore.returncode == 0, restore.stderr[-500:]
        restored = time.monotonic()
        port = 55432
        (pgdata / "postgresql.auto.conf").write_text(
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
            f"archive_mode = off\nrestore_command = '{barman.restore_command(manifest['server_name'])}'\n"
            "recovery_target_action = promote\nrecovery_target_timeline = latest\n")
        (pgdata / "recovery.signal").touch()
        for path in pgdata.iterdir():
            if user.switch:
                os.chown(path, user.uid, user.gid)
        started = user.run([str(pg_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-l", str(work / "log"), "-W", "start"],
                           env, work, timeout=60)
        assert started.returncode == 0, started.stderr[-500:]
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                     autocommit=True, connect_timeout=2) as conn:
                    if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        conn.execute("CREATE TABLE bench_probe (x int)")
                        break
            except psycopg.OperationalError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"bare recovery did not promote; see {work / 'log'}")
        done = time.monotonic()
        user.run([str(pg_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "stop"], env, work, timeout=60)
        return {"restore_s": round(restored - began, 3), "replay_promote_write_s": round(done - restored, 3),
                "total_s": round(done - began, 3)}
    finally:
        scope.terminate()
        shutil.rmtree(work, ignore_errors=True)


def pgdrill(manifest: dict, server: SeaweedServer, parallel: int) -> dict:
    spec = RestoreTestSpec(location=_location(manifest), endpoint_url=server.endpoint_url,
                           access_key_id_env=KEY, secret_access_key_env=SECRET, wal_max_parallel=parallel,
                           target_check=False, rto_seconds=86400)
    began = time.monotonic()
    result = run_restore_test(spec, Config(), f"bench-{parallel}-{int(began)}", progress=lambda m: None)
    wall = time.monotonic() - began
    rec = result.recovery
    return {"verdict": result.verdict.value, "rto_s": round(result.rto.total or 0, 3),
            "phases_s": {k: round(v, 3) for k, v in result.rto.phases.items()}, "wall_s": round(wall, 3),
            "restore": rec.get("restore"), "wal_fetched": rec.get("wal_fetched"),
            "forecast": rec.get("rto_forecast"), "stored_backup_bytes": rec.get("restore", {}).get("stored_bytes"),
            "_result": result}


def _median(values) -> float:
    import statistics

    return round(statistics.median(list(values)), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pgdrill-scale"))
    parser.add_argument("--small-dir", type=Path, default=None)
    parser.add_argument("--parallel", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=2, help="rounds of bare, then each N (medians)")
    args = parser.parse_args(argv)
    large = json.loads((args.dir / "manifest.json").read_text())
    out: dict = {"archive": {k: large[k] for k in ("backup_bytes", "wal_bytes", "segments_after_backup", "db_bytes")}}
    server = _server(large, args.dir)
    bares: list[dict] = []
    rounds: dict[int, list[dict]] = {n: [] for n in args.parallel}
    try:
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both sides
            bares.append(bare(large, server))
            for n in args.parallel:
                rounds[n].append(pgdrill(large, server, n))
    finally:
        server.stop()
    out["bare"] = {"runs_total_s": [b["total_s"] for b in bares], "median_total_s": _median(b["total_s"] for b in bares),
                   "runs": bares}
    runs = {n: sorted(r, key=lambda x: x["rto_s"])[len(r) // 2] for n, r in rounds.items()}
    first = runs[args.parallel[0]]
    out["pgdrill"] = {f"maxParallel_{n}": {"runs_rto_s": [x["rto_s"] for x in rounds[n]],
                                           **{k: v for k, v in r.items() if k != "_result"}} for n, r in runs.items()}
    out["overhead_ratio_rto"] = round(_median(x["rto_s"] for x in rounds[args.parallel[0]])
                                      / out["bare"]["median_total_s"], 3)
    if args.small_dir:
        small = json.loads((args.small_dir / "manifest.json").read_text())
        server = _server(small, args.small_dir)
        try:
            measured_small = pgdrill(small, server, args.parallel[0])
        finally:
            server.stop()
        phases = measured_small["phases_s"]
        wal = measured_small["wal_fetched"]
        # The large archive's shape from its listing: one backup, so the segments along its chain.
        forecast = rto_forecast(phases, measured_small["stored_backup_bytes"], wal["segments"],
                                large["backup_bytes"], first["forecast"]["basis"]["worst_interval_wal_segments"],
                                args.parallel[0])
        out["forecast_from_small"] = {"forecast_s": forecast["seconds"], "measured_large_rto_s": first["rto_s"],
                                      "error": round(forecast["seconds"] / first["rto_s"] - 1, 3)
                                      if forecast["seconds"] else None, "basis": forecast["basis"]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    from pgdrill.runs import sigterm_as_interrupt

    # SIGTERM unwinds like Ctrl-C, so the finally blocks stop SeaweedFS and the bare PostgreSQL
    # (a killed bench once left its weed server running on the archive's data directory).
    with sigterm_as_interrupt():
        sys.exit(main())
