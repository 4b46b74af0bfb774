"""Build a realistic barman-cloud archive with real PostgreSQL for the restore-test benchmark.

A pgbench database of about ``--db-mb`` MiB, one ``barman-cloud-backup``, then about ``--wal-mb``
MiB of WAL after it, archived by ``barman-cloud-wal-archive`` (``pgdrill.workload.scale_archive``).

    python bench/build_archive.py --db-mb 1024 --wal-mb 1024 --dir /tmp/pgdrill-scale
    python bench/build_archive.py --endpoint-url https://s3.example --bucket b --prefix p   # AWS_* from env

Without ``--endpoint-url`` the archive goes to a SeaweedFS kept in ``<dir>/s3`` (start it again
with ``SeaweedServer(<dir>/s3)``: data and bucket persist, keys are new at each start).  Either
way ``<dir>/manifest.json`` says where the archive is (bucket, run prefix, serverName, backup id),
its sizes and how long each part took.  The source cluster is removed at the end; only the
archive stays.

Measured (2 cores shared with other work, SeaweedFS, gzip WAL, uncompressed data.tar): 1024 MiB
database + 1056 MiB WAL (66 segments) in 237 s, 8.8 MiB/s: load 24 s, backup 95 s (it waits for
the load's own WAL to be archived), workload 18 s, archiver catch-up 99 s (~1.8 s per segment).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from pgdrill.backends.local.backend import LocalBackend
from pgdrill.backends.local.seaweed import SeaweedServer
from pgdrill.config import Config, S3Config
from pgdrill.errors import PgdrillError
from pgdrill.workload.scale_archive import MIB, build_scale_archive


def build(directory: Path, db_mb: float, wal_mb: float, endpoint_url: str | None, bucket: str, prefix: str,
          server_name: str, clients: int) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    run_id = f"scale-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    server = None
    if endpoint_url is None:
        server = SeaweedServer(directory / "s3", bucket=bucket).start()
        endpoint_url = server.endpoint_url
        # LocalBackend's external mode reads the keys from the environment, as barman-cloud does.
        os.environ.update(server.admin.credentials.as_environment())
    config = replace(Config(), s3=S3Config(mode="external", endpoint_url=endpoint_url, bucket=bucket, prefix=prefix))
    try:
        backend = LocalBackend(config, run_id)
        try:
            built = build_scale_archive(backend, db_mb, wal_mb, server_name, clients,
                                        progress=lambda message: print(f"  {message}", flush=True))
        finally:
            backend.close()
    finally:
        if server is not None:
            server.stop()
    manifest = {**asdict(built), "bucket": bucket, "prefix": prefix, "run_id": run_id,
                "endpoint_url": None if server is not None else endpoint_url,
                "s3_dir": str(directory / "s3") if server is not None else None,
                "requested": {"db_mb": db_mb, "wal_mb": wal_mb}, "mb_per_second": round(built.mb_per_second, 1),
                "built_at": datetime.now(timezone.utc).isoformat()}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-mb", type=float, default=1024, help="pgbench database size, MiB (default 1024)")
    parser.add_argument("--wal-mb", type=float, default=1024, help="WAL after the base backup, MiB (default 1024)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pgdrill-scale"), help="manifest (and SeaweedFS data)")
    parser.add_argument("--endpoint-url", help="an external S3 endpoint (keys from AWS_* in the environment)")
    parser.add_argument("--bucket", default="backups")
    parser.add_argument("--prefix", default="scale")
    parser.add_argument("--server-name", default="postgres-cluster")
    parser.add_argument("--clients", type=int, default=2, help="pgbench clients for the WAL workload")
    args = parser.parse_args(argv)
    if (args.dir / "manifest.json").exists():
        print(f"{args.dir}/manifest.json exists: an archive is built once; remove the directory first",
              file=sys.stderr)
        return 2
    print(f"building ~{args.db_mb:g} MiB database + ~{args.wal_mb:g} MiB WAL in {args.dir} ...", flush=True)
    try:
        manifest = build(args.dir, args.db_mb, args.wal_mb, args.endpoint_url, args.bucket, args.prefix,
                         args.server_name, args.clients)
    except PgdrillError as exc:
        print(f"build_archive: {exc}", file=sys.stderr)
        return 2
    s = manifest["seconds"]
    print(f"{manifest['destination']}/{manifest['server_name']}: backup {manifest['backup_id']}, database "
          f"{manifest['db_bytes'] / MIB:.0f} MiB (stored backup {manifest['backup_bytes'] / MIB:.0f} MiB), "
          f"WAL after it {manifest['wal_bytes'] / MIB:.0f} MiB ({manifest['segments_after_backup']} segments), "
          f"{manifest['begin_wal']}..{manifest['last_wal']}")
    print(f"took {s['total']:.0f} s = {manifest['mb_per_second']} MiB/s (init {s['init']:.0f}, load {s['load']:.0f}, "
          f"backup {s['backup']:.0f}, workload {s['wal']:.0f}, archiver catch-up {s['archive']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
