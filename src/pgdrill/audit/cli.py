"""``pgdrill audit s3://<bucket>/<prefix>/<serverName>``: the argparse front end."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO
from urllib.error import HTTPError

from pgdrill.archive.store import (
    ObjectStore,
    S3Credentials,
    S3Location,
    check_endpoint_url,
)
from pgdrill.audit.render import (
    DEFAULT_PUSHGATEWAY_JOB,
    EXIT_COULD_NOT_VERIFY,
    check_pushgateway_url,
    exit_code,
    push_prometheus,
    render_table,
    without_userinfo,
    write_prometheus,
)
from pgdrill.audit.replica_options import (
    add_replica_arguments,
    replica_settings,
    replica_target,
)
from pgdrill.audit.run import run_audit, unverified_report
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.errors import UsageError
from pgdrill.runs import check_writable_dir
from pgdrill.strict import ArgumentParser


def build_parser(prog: str = "pgdrill audit") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description=(
            "Audit a barman-cloud archive read-only (list and get only): base backups, WAL gaps, "
            "ages, recoverability. Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "(and AWS_DEFAULT_REGION). Exit 0 healthy, 1 an alert fires, 2 could not verify or bad "
            "input (one line on stderr), 130 interrupted."),
    )
    parser.add_argument("location", metavar="s3://BUCKET/PREFIX/SERVERNAME",
                        help="the serverName folder that holds base/ and wals/")
    parser.add_argument("--endpoint-url", help="S3 endpoint (e.g. https://s3.fr-par.scw.cloud); "
                        "default: AWS_ENDPOINT_URL or AWS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--prometheus", metavar="FILE",
                        help="also write metrics in node-exporter textfile format to FILE (atomically)")
    parser.add_argument("--pushgateway", metavar="URL",
                        help="also push the metrics to this Prometheus Pushgateway (PUT: replaces the "
                        "group, so metrics this audit could not measure disappear)")
    parser.add_argument("--pushgateway-job", metavar="JOB", default=DEFAULT_PUSHGATEWAY_JOB,
                        help=f"the Pushgateway job; the grouping key adds server_name (default {DEFAULT_PUSHGATEWAY_JOB})")
    parser.add_argument("--config", metavar="FILE",
                        help="pgdrill TOML config; its [audit] table sets thresholds "
                        "(default: PGDRILL_CONFIG, else ./pgdrill.toml if present, else ADR 007 values)")
    add_replica_arguments(parser)
    return parser


def audit_main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``pgdrill audit``; returns the exit code (0 healthy, 1 alert, 2 could not verify)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        location = S3Location.parse(args.location)
        if args.endpoint_url is not None:
            check_endpoint_url(args.endpoint_url, "--endpoint-url")
        else:  # boto3 reads it itself, and fails with a traceback-worthy ValueError
            check_endpoint_url(os.environ.get("AWS_ENDPOINT_URL") or None, "AWS_ENDPOINT_URL")
        if args.prometheus:
            # The textfile's folder is created if missing (as before); it must be creatable.
            check_writable_dir(Path(args.prometheus).parent, "fix --prometheus")
        gateway = None if args.pushgateway is None else check_pushgateway_url(args.pushgateway)
        if not args.pushgateway_job:
            raise UsageError("--pushgateway-job must not be empty")
        thresholds = _thresholds(args.config)
        # The replica's own credentials: a missing variable is bad input (one line), like a bad option.
        replica_config = replica_settings(args, thresholds.replica)
        replica = None if replica_config is None else replica_target(replica_config, args.endpoint_url)
    except UsageError as exc:  # bad arguments, URL or config: say what to fix, no traceback
        print(f"pgdrill audit: error: {exc}", file=err)
        return EXIT_COULD_NOT_VERIFY
    now = datetime.now(timezone.utc)
    try:
        credentials = S3Credentials.from_environment()
        store = ObjectStore(args.endpoint_url, credentials, location.bucket)
    except UsageError as exc:
        report = unverified_report(location, thresholds, now, str(exc), args.endpoint_url, replica)
    except Exception as exc:  # boto3 rejects e.g. a malformed endpoint URL at client creation
        report = unverified_report(location, thresholds, now,
                                   f"cannot create an S3 client for {args.endpoint_url or 'AWS'}: "
                                   f"{type(exc).__name__}", args.endpoint_url, replica)
    else:
        report = run_audit(location, store, thresholds, now, replica)
    if args.json:
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        out.write(render_table(report))
    # Undelivered metrics are an unverified audit as far as alerting goes: exit 2.  Each output
    # is tried even if the other failed, so one broken sink does not silence the other.
    delivered = True
    if args.prometheus:
        try:
            write_prometheus(report, args.prometheus)
        except OSError as exc:
            print(f"pgdrill audit: cannot write {args.prometheus}: {exc.strerror or exc}", file=err)
            delivered = False
    if gateway is not None:
        try:
            push_prometheus(report, gateway, args.pushgateway_job)
        except (OSError, ValueError) as exc:  # urllib: URLError/HTTPError are OSError, InvalidURL ValueError
            reason = exc if isinstance(exc, HTTPError) else getattr(exc, "reason", None) or exc
            print(f"pgdrill audit: cannot push to the Pushgateway {without_userinfo(gateway)}: {reason}",
                  file=err)
            delivered = False
    return exit_code(report) if delivered else EXIT_COULD_NOT_VERIFY


def _thresholds(path: str | None) -> AuditThresholds:
    """The ``[audit]`` table of pgdrill's config; the whole file is checked strictly."""
    from pgdrill.config import load_config

    return load_config(path).audit
