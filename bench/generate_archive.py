"""Fill the local S3 server with a realistic barman-cloud archive for the audit benchmark.

30 days of a busy cluster: 100,000 WAL segments (one every ~25 s), a base backup a day
(30 of them), a promotion to timeline 2 at 80 % (``00000002.history`` + a ``.partial``), and
WAL gaps planted at known positions on both timelines.  Uploads run on a thread pool; WAL
bodies are empty because the audit never reads them.

    python bench/generate_archive.py --dir /tmp/pgdrill-bench [--wal 100000] [--backups 30]

writes ``manifest.json`` (server name, counts, the planted gaps) next to the S3 data, and
leaves the server stopped; ``bench_audit.py`` starts it again on the same directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.backends.local.seaweed import SeaweedServer
from pgdrill.postgres.wal import Lsn, SegmentName

SERVER_NAME = "postgres-cluster"
FIRST = 0x100  # first archived segment number
#: (fraction of the archive, length) of each planted gap; the last one lands on timeline 2.
GAP_PLAN = ((0.05, 1), (0.20, 3), (0.50, 1), (0.7999, 2), (0.90, 4))
SWITCH_AT = 0.80


def build_archive(now: datetime, wal: int = 100_000, backups: int = 30) -> tuple[SyntheticArchive, list[dict]]:
    """The archive in memory and the gaps an audit must report, exactly."""
    synth = SyntheticArchive(root=f"postgres/{SERVER_NAME}/")
    # Backups daily at start + 1 h, the newest one an hour before the end: a healthy schedule.
    span = timedelta(days=backups - 1, hours=2)
    start = now - span
    step = span / wal
    switch = FIRST + int(wal * SWITCH_AT)
    backup_segments: set[int] = set()
    backup_plan = []
    for day in range(backups):
        when = start + timedelta(days=day, hours=1)
        begin = FIRST + int((when - start) / step)
        backup_plan.append((when, begin))
        backup_segments |= {begin, begin + 1}
    holes: set[int] = set()
    gaps = []
    for fraction, length in GAP_PLAN:
        first = FIRST + int(wal * fraction)
        while any(n in backup_segments or n == switch for n in range(first - 1, first + length + 1)):
            first += 5  # keep backups consistent and the switch segment intact: only WAL_GAP expected
        numbers = range(first, first + length)
        holes |= set(numbers)
        tli = 2 if first >= switch else 1
        gaps.append({"timeline": tli, "first": SegmentName(tli, first).name,
                     "last": SegmentName(tli, first + length - 1).name, "count": length})
    for i in range(wal):
        number = FIRST + i
        if number in holes:
            continue
        tli = 2 if number >= switch else 1
        synth.add_wal(tli, number, start + (i + 1) * step, size=0)  # bodies are never read
    # The old primary's last, incomplete segment and the new timeline's history.
    switchpoint = Lsn(SegmentName(1, switch).start_lsn.value + 0x5A8)
    synth.add_wal(1, switch, start + (switch - FIRST) * step, suffix=".partial")
    synth.add_history(2, [(1, switchpoint, "no recovery target specified")], start + (switch - FIRST) * step)
    for when, begin in backup_plan:
        tli = 2 if begin >= switch else 1
        synth.add_backup(when.strftime("%Y%m%dT%H%M%S"), timeline=tli, begin=begin, end=begin + 1,
                         begin_time=when, duration=timedelta(minutes=3), data_bytes=2048)
    return synth, gaps


def generate(directory: Path, wal: int, backups: int, workers: int, replica: bool = False) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / "manifest.json"
    now = datetime.now(timezone.utc)
    synth, gaps = build_archive(now, wal, backups)
    with SeaweedServer(directory / "s3") as server:
        started = time.monotonic()
        count = synth.upload(server.store(), workers=workers, body_limit=2048)
        seconds = time.monotonic() - started
        replica_root = None
        if replica:
            # The same objects under a second prefix, as a replication rule would copy them.
            replica_root = "replica/" + synth.root
            copy = SyntheticArchive(root=replica_root, segment_size=synth.segment_size,
                                    objects={replica_root + k[len(synth.root):]: o for k, o in synth.objects.items()})
            copy.upload(server.store(), workers=workers, body_limit=2048)
    wal_objects = sum(1 for k in synth.objects if "/wals/" in k)
    manifest = {
        "server_name": SERVER_NAME, "root": synth.root, "generated_at": now.isoformat(),
        "objects": count, "wal_objects": wal_objects, "wal_segments_planned": wal,
        "segments_uploaded": wal - sum(g["count"] for g in gaps), "backups": backups,
        "gaps": gaps, "upload_seconds": round(seconds, 1), "upload_rate": round(count / seconds),
        "uploaded_at": datetime.now(timezone.utc).isoformat(), "replica_root": replica_root,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/pgdrill-bench"))
    parser.add_argument("--wal", type=int, default=100_000, help="WAL segments (planted gaps included)")
    parser.add_argument("--backups", type=int, default=30)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--replica", action="store_true", help="also copy the archive to replica/<root>")
    args = parser.parse_args(argv)
    if (args.dir / "s3").exists():
        print(f"{args.dir}/s3 exists: remove it first (an archive is generated once)", file=sys.stderr)
        return 2
    manifest = generate(args.dir, args.wal, args.backups, args.workers, args.replica)
    print(f"uploaded {manifest['objects']} objects ({manifest['wal_objects']} under wals/) in "
          f"{manifest['upload_seconds']} s ({manifest['upload_rate']}/s); planted gaps: "
          + ", ".join(f"{g['first']}+{g['count']}" for g in manifest["gaps"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
