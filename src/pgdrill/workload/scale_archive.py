"""A realistic archive at a chosen size, built by real PostgreSQL and real barman-cloud.

``build_scale_archive`` makes a source cluster on a local backend (which archives with
``barman-cloud-wal-archive`` as the plugin does), loads a pgbench database of about ``db_mb``,
takes a ``barman-cloud-backup``, then runs a pgbench workload until about ``wal_mb`` of WAL
have been written after the backup, and waits until the archive holds all of it.  The backend's
S3 location decides where it lands: the embedded SeaweedFS, or an external endpoint
(``s3.mode = "external"``), e.g. a SeaweedFS the caller keeps for later runs (bench/).

Nothing here reads an object: sizes come from the listing and ``backup.info`` only, so the
same code builds archives far larger than memory.

Sizes (PostgreSQL 18, measured): a pgbench scale step is 14.95 MiB of database, an empty
database 7.1 MiB, so the smallest database is ~22 MiB (scale 1).  The workload is pgbench's
TPC-B script (9 of 10 transactions) plus a range update of 1000 accounts (1 of 10), with
``synchronous_commit = off``: TPC-B alone writes ~1.7 MB/s of WAL here, 10 minutes per GB;
the mix writes ~40 MB/s of the same kind of WAL (heap updates, index inserts, full-page images
after each checkpoint), so 1 GB takes seconds and archiving is what sets the pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgdrill.archive.catalog import read_catalog
from pgdrill.errors import CouldNotVerify, UsageError
from pgdrill.postgres.wal import Lsn, SegmentName

if TYPE_CHECKING:
    from pgdrill.backends.base import ClusterHandle
    from pgdrill.backends.local.backend import LocalBackend

MIB = 1024 * 1024
SCALE_BYTES = 15_681_536  # pg_database_size per pgbench scale step, PostgreSQL 18
EMPTY_DATABASE_BYTES = 7_438_863  # pg_database_size of a database fresh from template1
DATABASE = "pgbench"
ACCOUNTS_PER_SCALE = 100_000
# One transaction in ten touches 1000 neighbouring accounts: the batch job next to the OLTP traffic.
RANGE_UPDATE = """\\set aid random(1, :naccounts - 1000)
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid BETWEEN :aid AND :aid + 999;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, :aid, 1, CURRENT_TIMESTAMP);
"""


@dataclass(frozen=True)
class ScaleArchive:
    """What was built, and how long each part took."""

    server_name: str
    destination: str
    """``s3://bucket/prefix/run``: the serverName's archive is under ``<destination>/<server_name>/``."""
    root: str
    """The key prefix of ``<server_name>/`` in the bucket (for ``read_catalog``)."""
    backup_id: str
    scale: int
    db_bytes: int
    """``pg_database_size`` of the pgbench database when the backup started."""
    backup_bytes: int
    """The backup's objects in the listing (``data.tar`` of the whole cluster, as stored)."""
    wal_bytes: int
    """WAL after the backup: the archived segments after the backup's end segment, whole (what a
    recovery fetches and replays on top of the base backup)."""
    begin_wal: str
    last_wal: str
    segments_after_backup: int
    seconds: dict[str, float] = field(default_factory=dict)
    """``init`` (initdb, start), ``load`` (pgbench -i), ``backup``, ``wal`` (workload), ``archive``
    (waiting for the archiver to catch up), ``total``."""

    @property
    def mb_per_second(self) -> float:
        """Archive built per second of wall time: database plus WAL, in MiB/s."""
        total = self.seconds.get("total") or 0.0
        return (self.db_bytes + self.wal_bytes) / MIB / total if total else 0.0


def scale_for(db_mb: float) -> int:
    """The pgbench scale whose database is closest to ``db_mb`` MiB (at least 1)."""
    return max(1, round((db_mb * MIB - EMPTY_DATABASE_BYTES) / SCALE_BYTES))


def build_scale_archive(backend: LocalBackend, db_mb: float = 1024, wal_mb: float = 1024,
                        server_name: str = "postgres-cluster", clients: int = 2,
                        progress: Callable[[str], None] | None = None) -> ScaleArchive:
    """Build the archive on ``backend`` (a ``LocalBackend``) under ``server_name``.

    :raises UsageError: for sizes that make no archive
    :raises CouldNotVerify: when PostgreSQL, pgbench or barman-cloud fail on the way
    """
    if db_mb <= 0 or wal_mb <= 0 or clients < 1:
        raise UsageError(f"db_mb and wal_mb must be positive and clients >= 1 (got {db_mb}, {wal_mb}, {clients})")
    say = progress or (lambda _message: None)
    segment_size = backend.config.archive.segment_size_mb * MIB
    seconds: dict[str, float] = {}
    started = last = time.monotonic()

    def lap(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        seconds[name] = round(now - last, 3)
        last = now

    source = backend.create_source(server_name)
    backend.sql(source, f"CREATE DATABASE {DATABASE}")
    lap("init")
    scale = scale_for(db_mb)
    say(f"loading pgbench scale {scale} (~{(scale * SCALE_BYTES + EMPTY_DATABASE_BYTES) / MIB:.0f} MiB)")
    # Server-side generation (G): the rows never cross the socket; v, p: vacuum and primary keys.
    _pgbench(backend, source, ["-i", "-I", "dtGvp", "-s", str(scale), "-q"], timeout=6 * 3600)
    db_bytes = int(backend.sql(source, "SELECT pg_database_size(%s)", (DATABASE,))[0][0])
    lap("load")
    say(f"database {db_bytes / MIB:.0f} MiB; barman-cloud-backup")
    backup_id = backend.take_backup(source)
    start_lsn = Lsn.parse(backend.sql(source, "SELECT pg_current_wal_lsn()::text")[0][0])
    lap("backup")
    # Counted from the first segment after the backup's (pg_backup_stop switched to it), and
    # stopped 1 MiB short: the closing pg_switch_wal then ends the last whole segment, not one more.
    first_after = SegmentName(1, start_lsn.segment(segment_size), segment_size).start_lsn.value
    target = first_after + max(int(wal_mb * MIB) - MIB, 1)
    say(f"pgbench until {wal_mb:g} MiB of WAL after the backup")
    _workload_until(backend, source, scale, target, clients)
    last_wal = backend.sql(source, "SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    lap("wal")
    pending = _pending_segments(backend, source, last_wal, segment_size)
    say(f"waiting for the archiver ({pending} segments to go)")
    # ~0.5 s per segment for barman-cloud-wal-archive with gzip on a busy 2-core host, doubled.
    backend.wait_archived(source, last_wal, timeout=120 + 1.0 * pending)
    lap("archive")
    seconds["total"] = round(time.monotonic() - started, 3)

    catalog = read_catalog(backend.store, backend.destination.key(server_name), server_name, segment_size)
    backup = catalog.backups.get(backup_id)
    if backup is None or backup.begin_wal is None or backup.end_lsn is None:
        raise CouldNotVerify(f"backup {backup_id} of {server_name} has no readable backup.info in the archive")
    last = SegmentName.parse(last_wal, segment_size)
    return ScaleArchive(
        server_name=server_name, destination=backend.destination.url, root=catalog.archive.root,
        backup_id=backup_id, scale=scale, db_bytes=db_bytes, backup_bytes=catalog.stored_bytes.get(backup_id, 0),
        wal_bytes=(last.number - backup.end_lsn.segment(segment_size)) * segment_size,
        begin_wal=backup.begin_wal.name, last_wal=last_wal,
        segments_after_backup=last.number - backup.end_lsn.segment(segment_size), seconds=seconds)


def _environment(backend: LocalBackend) -> dict[str, str]:
    # pgbench needs no S3 credentials: keep them where they are needed (barman-cloud) only.
    return {k: v for k, v in backend.environment.items() if not k.startswith("AWS_")}


def _connection(backend: LocalBackend, source: ClusterHandle) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(backend.node(source).port), "-U", "postgres"]


def _pgbench(backend: LocalBackend, source: ClusterHandle, options: list[str], timeout: float) -> None:
    from pgdrill.backends.local.postgres import pg_bin_dir

    result = backend.scope.run([str(pg_bin_dir() / "pgbench"), *options, *_connection(backend, source), DATABASE],
                               env=_environment(backend), timeout=timeout)
    if result.returncode != 0:
        raise CouldNotVerify(f"pgbench {options[0]} failed: {result.stderr.strip().splitlines()[-1:]}")


def _workload_until(backend: LocalBackend, source: ClusterHandle, scale: int, target: int, clients: int) -> None:
    """Run the pgbench mix until the insert position passes ``target``, then stop it."""
    from pgdrill.backends.local.postgres import pg_bin_dir

    script = backend.tmp_dir / "pgdrill-range-update.sql"
    script.write_text(RANGE_UPDATE)
    errors = backend.tmp_dir / "pgbench-workload.err"
    env = {**_environment(backend), "PGOPTIONS": "-c synchronous_commit=off"}
    argv = [str(pg_bin_dir() / "pgbench"), "-n", "-c", str(clients), "-j", str(clients), "-T", "86400",
            "-D", f"naccounts={scale * ACCOUNTS_PER_SCALE}", "-b", "tpcb-like@9", "-f", f"{script}@1",
            *_connection(backend, source), DATABASE]
    with errors.open("w") as stderr:
        process = backend.scope.spawn(argv, "pgbench workload", env=env, stdout=stderr, stderr=stderr)
    # One connection for the polls: a new one per poll takes long enough under this load to
    # overshoot the target by a segment or two.
    conn = backend.connect(source)
    try:
        while True:
            lsn = Lsn.parse(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
            if lsn.value >= target:
                return
            if process.poll() is not None:
                tail = errors.read_text(errors="replace").strip().splitlines()[-2:]
                raise CouldNotVerify(f"pgbench workload exited with {process.returncode}: {tail}")
            time.sleep(0.1)  # ~40 MB/s of WAL: a poll's worth of overshoot stays under a segment
    finally:
        backend.scope.terminate(grace=5.0, pgids={process.pid})
        process.wait(timeout=30)
        conn.close()


def _pending_segments(backend: LocalBackend, source: ClusterHandle, last_wal: str, segment_size: int) -> int:
    archived = backend.sql(source, "SELECT last_archived_wal FROM pg_stat_archiver")[0][0]
    if not archived:
        return SegmentName.parse(last_wal, segment_size).number
    try:
        done = SegmentName.parse(archived[:24], segment_size).number
    except ValueError:
        return 0
    return max(0, SegmentName.parse(last_wal, segment_size).number - done)
