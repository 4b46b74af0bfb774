"""Benchmark: ``pgdrill audit`` vs a bare paginated ``list_objects_v2`` of the same prefix.

    python bench/bench_audit.py --dir /tmp/pgdrill-bench [--wal 100000] [--repeat 3]

Generates the archive first if ``--dir`` has none (see generate_archive.py), starts the local
S3 server on it, then alternates the two measurements ``--repeat`` times.  The audit runs with
the read-only identity.  Exits 1 if the audit takes more than 2x the bare listing or does not
report exactly the planted gaps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_archive import generate  # noqa: E402

from pgdrill.archive.store import S3Location, make_client
from pgdrill.audit import AuditThresholds, exit_code, run_audit  # noqa: E402
from pgdrill.audit.replica import ReplicaTarget  # noqa: E402
from pgdrill.backends.local.seaweed import SeaweedServer  # noqa: E402

TARGET_RATIO = 2.0


def bare_list(client, bucket: str, prefix: str) -> int:
    """What any tool must do at least: page through every key under the prefix."""
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        count += len(page.get("Contents", ()))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pgdrill-bench"))
    parser.add_argument("--wal", type=int, default=100_000)
    parser.add_argument("--backups", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--replica", action="store_true",
                        help="generate and check a replica copy under replica/<root> too (--replica of the audit)")
    args = parser.parse_args(argv)

    manifest_path = args.dir / "manifest.json"
    if not manifest_path.exists():
        print(f"generating {args.wal} WAL segments and {args.backups} backups in {args.dir} ...", flush=True)
        generate(args.dir, args.wal, args.backups, workers=10, replica=args.replica)
    manifest = json.loads(manifest_path.read_text())
    print(f"archive: {manifest['objects']} objects ({manifest['wal_objects']} under wals/), "
          f"{manifest['backups']} backups, generated in {manifest['upload_seconds']} s "
          f"({manifest['upload_rate']} puts/s)")

    # Audit "as of" the end of the upload, so a re-run on an older archive judges the same
    # ages (LastModified is the upload time) and only the planted gaps are findings.
    as_of = (datetime.fromisoformat(manifest["uploaded_at"]) if "uploaded_at" in manifest else
             datetime.fromisoformat(manifest["generated_at"]) + timedelta(seconds=manifest["upload_seconds"] + 5))
    with SeaweedServer(args.dir / "s3") as server:
        location = S3Location(server.bucket, manifest["root"].rstrip("/"))
        client = make_client(server.endpoint_url, server.reader.credentials)
        store = server.store(server.reader)
        bare_list(client, server.bucket, manifest["root"])  # warm-up: server caches, TCP, imports
        replica_root = manifest.get("replica_root") if args.replica else None
        if args.replica and not replica_root:
            print("FAIL: the archive in --dir has no replica copy: generate it with --replica in a new --dir")
            return 1
        target = (ReplicaTarget(S3Location(server.bucket, replica_root.rstrip("/")), store)
                  if replica_root else None)
        list_times, audit_times = [], []
        listed = report = None
        for _ in range(args.repeat):
            started = time.perf_counter()
            listed = bare_list(client, server.bucket, manifest["root"])
            if replica_root:  # the floor of a replica check: listing the copy as well
                listed += bare_list(client, server.bucket, replica_root)
            list_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = run_audit(location, store, AuditThresholds(), as_of, replica=target)
            audit_times.append(time.perf_counter() - started)
    assert report is not None
    found = [g.to_dict() for g in report.wal.gaps] if report.wal else None
    ratio = statistics.median(audit_times) / statistics.median(list_times)
    print(f"bare list_objects_v2: {listed} objects, median {statistics.median(list_times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in list_times)})")
    print(f"pgdrill audit:        {report.objects_listed} objects, median {statistics.median(audit_times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in audit_times)}), exit code {exit_code(report)}, "
          f"findings {sorted({f.code for f in report.findings})}")
    print(f"ratio audit/list: {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"gaps planted: {len(manifest['gaps'])}, found: {len(found or [])}, "
          f"exact: {found == manifest['gaps']}")
    ok = True
    if report.replica is not None:
        r = report.replica
        print(f"replica {r.location}: checked {r.checked_objects}, missing {r.missing_objects}, "
              f"mismatched {r.mismatched_objects}, lag {r.lag_seconds}")
    if sorted({f.code for f in report.findings}) != ["WAL_GAP"]:
        print("FAIL: the archive is healthy apart from the planted gaps; expected WAL_GAP only")
        ok = False
    if found != manifest["gaps"]:
        print(f"FAIL: gaps differ\n  planted {manifest['gaps']}\n  found   {found}")
        ok = False
    if ratio > TARGET_RATIO:
        print(f"FAIL: audit took {ratio:.2f}x the bare listing")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
