"""``pgdrill restore-test s3://BUCKET/PREFIX/SERVERNAME``: the argparse front end.

Exit 0 passed, 1 failed (a verified problem of the archive), 2 could not verify or bad input
(one line on stderr, nothing downloaded, nothing written to the source), 130 interrupted.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from pgdrill.errors import PgdrillError, UsageError
from pgdrill.restoretest.spec import RestoreTestSpec
from pgdrill.strict import ArgumentParser

EXIT = {"passed": 0, "failed": 1}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="pgdrill restore-test",
        description=(
            "Restore a production barman-cloud archive read-only (list and get only) into a throwaway "
            "local cluster as CloudNativePG's plugin does, prove the recovery reached the end of the "
            "archive, check the data, measure the RTO by phase. Without LOCATION: every [[restore_test]] "
            "of the config. Exit 0 passed, 1 failed, 2 could not verify or bad input, 130 interrupted."))
    parser.add_argument("location", nargs="?", metavar="s3://BUCKET/PREFIX/SERVERNAME")
    parser.add_argument("--endpoint-url", help="S3 endpoint (default: AWS)")
    parser.add_argument("--access-key-env", default="AWS_ACCESS_KEY_ID", metavar="NAME",
                        help="environment variable holding the read-only access key id (default AWS_ACCESS_KEY_ID)")
    parser.add_argument("--secret-key-env", default="AWS_SECRET_ACCESS_KEY", metavar="NAME",
                        help="environment variable holding the secret key (default AWS_SECRET_ACCESS_KEY)")
    parser.add_argument("--backup-id", help="restore this backup instead of the newest consistent one")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--target-time", help="point-in-time target, e.g. 2026-12-01T10:00:00Z")
    target.add_argument("--target-lsn", help="target LSN, e.g. 0/9000060")
    target.add_argument("--target-name", help="a named restore point (pg_create_restore_point)")
    parser.add_argument("--wal-max-parallel", type=int, default=None, metavar="N",
                        help="WAL segments fetched at once, as the ObjectStore's wal.maxParallel (default 1)")
    parser.add_argument("--rto-seconds", type=float, default=None, help="RTO bound (default targets.rto_seconds)")
    parser.add_argument("--no-target-check", action="store_true",
                        help="skip the second restore that makes PostgreSQL confirm the end of the archive")
    parser.add_argument("--config", metavar="FILE", help="pgdrill TOML config (default PGDRILL_CONFIG or ./pgdrill.toml)")
    parser.add_argument("--reports-dir", help="where reports/<run id>/ goes (default reports_dir of the config)")
    parser.add_argument("--keep", action="store_true", help="keep the restored cluster running and print how to connect")
    parser.add_argument("--metrics-textfile", metavar="PATH",
                        help="also write the run's Prometheus metrics to this .prom file (docs/metrics.md)")
    parser.add_argument("--pushgateway", metavar="URL", help="also push the run's metrics to this Pushgateway")
    from pgdrill.restoretest.kubernetes_cli import add_backend_arguments

    add_backend_arguments(parser)  # --backend {local,k8s,kind} and the Kubernetes flags
    return parser


def restore_test_main(argv: list[str]) -> int:
    from pgdrill.config import load_config

    try:
        args = build_parser().parse_args(argv)
        config = load_config(args.config)
        specs = _specs(args, config.restore_test)
        for spec in specs:
            spec.check_input()
        from pgdrill.reports.metrics import check_destinations

        check_destinations(args.metrics_textfile, args.pushgateway)
        from pgdrill.restoretest.kubernetes_cli import open_backend

        backend = open_backend(args, config)  # k8s/kind: a reachable cluster, or one line and exit 2
    except SystemExit as exc:
        return int(exc.code or 0)
    except PgdrillError as exc:
        print(f"pgdrill restore-test: error: {exc}", file=sys.stderr)
        return 2
    reports = Path(args.reports_dir or config.reports_dir)
    try:
        return run_specs(specs, config, reports, args.keep, args.metrics_textfile, args.pushgateway, backend)
    finally:
        backend.close(args.keep)


def run_specs(specs: list[RestoreTestSpec], config: object, reports_dir: Path, keep: bool,
              metrics_textfile: str | None = None, pushgateway: str | None = None, backend: object = None) -> int:
    """Run each restore-test into one run folder (results.json, HTML, JUnit, history, metrics).
    ``backend``: a ``kubernetes_cli.RestoreBackend`` (default: local)."""
    from pgdrill.drill.context import error_result
    from pgdrill.restoretest.run import run_restore_test
    from pgdrill.results import summary_line
    from pgdrill.runs import Run, check_writable_dir, new_run_id, sigterm_as_interrupt

    try:
        check_writable_dir(reports_dir, "fix --reports-dir or reports_dir in the config")
    except UsageError as exc:
        print(f"pgdrill restore-test: error: {exc}", file=sys.stderr)
        return 2
    backend_name = getattr(backend, "name", "local")
    runner = getattr(backend, "run", None) or run_restore_test
    run = Run(new_run_id(), reports_dir, backend_name)
    interrupted = False
    try:
        with sigterm_as_interrupt():
            for spec in specs:
                try:
                    result = runner(spec, config, f"{run.run_id}-{spec.display_name}", keep)  # type: ignore[arg-type]
                except UsageError as exc:  # found before anything was downloaded
                    print(f"pgdrill restore-test: error: {spec.display_name}: {exc}", file=sys.stderr)
                    if len(specs) == 1:
                        return 2
                    result = error_result(spec.display_name, backend_name, exc, "preflight")
                except Exception as exc:
                    result = error_result(spec.display_name, backend_name, exc, "restore-test")
                run.add(result)
                print(summary_line(result.to_dict()))
                for reason in result.verdict_reasons:
                    print(f"  {reason}")
                forecast = (result.recovery.get("rto_forecast") or {}).get("seconds")
                if forecast is not None:
                    print(f"  RTO forecast just before the next base backup: {forecast:.1f}s")
                if result.keep:
                    for name, info in (result.keep.get("clusters") or {}).items():
                        print(f"  kept {name}: {info['connect']} (pgdata {info['pgdata']})")
    except KeyboardInterrupt as exc:
        interrupted = True
        run.add(error_result(specs[len(run.results)].display_name if len(run.results) < len(specs) else "restore-test",
                             backend_name, exc, "interrupted"))
    path = run.write()
    from pgdrill.reports import render_run
    from pgdrill.reports.metrics import publish

    # metrics.prom beside results.json: ADR 007's "recovery test failures" alert fires on it.
    published = publish(path, textfile=metrics_textfile, pushgateway=pushgateway)
    for error in published.errors:
        print(f"pgdrill restore-test: error: {error}", file=sys.stderr)

    try:
        render_run(path)
    except Exception as exc:  # the verdicts are safe in results.json
        print(f"pgdrill restore-test: could not render the report: {exc}", file=sys.stderr)
    print(f"overall: {run.overall().upper()}; reports in {run.folder}")
    if interrupted:
        return 130
    status = EXIT.get(run.overall(), 2)
    return 2 if status == 0 and published.errors else status


def _specs(args: object, configured: tuple[RestoreTestSpec, ...]) -> list[RestoreTestSpec]:
    a = args
    if a.location is None:  # type: ignore[attr-defined]
        if not configured:
            raise UsageError("give s3://BUCKET/PREFIX/SERVERNAME, or [[restore_test]] tables in the config")
        specs = list(configured)
    else:
        spec = next((s for s in configured if s.location.rstrip("/") == a.location.rstrip("/")), None)  # type: ignore[attr-defined]
        specs = [spec or RestoreTestSpec(location=a.location)]  # type: ignore[attr-defined]
    overrides = {
        "endpoint_url": a.endpoint_url, "backup_id": a.backup_id, "target_time": a.target_time,  # type: ignore[attr-defined]
        "target_lsn": a.target_lsn, "target_name": a.target_name,  # type: ignore[attr-defined]
        "wal_max_parallel": a.wal_max_parallel, "rto_seconds": a.rto_seconds,  # type: ignore[attr-defined]
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if a.access_key_env != "AWS_ACCESS_KEY_ID":  # type: ignore[attr-defined]
        overrides["access_key_id_env"] = a.access_key_env  # type: ignore[attr-defined]
    if a.secret_key_env != "AWS_SECRET_ACCESS_KEY":  # type: ignore[attr-defined]
        overrides["secret_access_key_env"] = a.secret_key_env  # type: ignore[attr-defined]
    if a.no_target_check:  # type: ignore[attr-defined]
        overrides["target_check"] = False
    return [replace(s, **overrides) for s in specs]
