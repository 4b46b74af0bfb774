"""The scale fixture (issue 16 item 3): real PostgreSQL + barman-cloud build an archive of the
requested size, checked with the one archive reader (``read_catalog``), never by reading WAL."""

from __future__ import annotations

import secrets

import pytest

from pgdrill.archive.catalog import read_catalog
from pgdrill.archive.continuity import find_gaps, recovery_chain
from pgdrill.backends.base import ClusterHandle
from pgdrill.config import Config
from pgdrill.errors import UsageError
from pgdrill.postgres.wal import SegmentName
from pgdrill.workload.scale_archive import MIB, build_scale_archive, scale_for


def test_scale_for_the_requested_database_size():
    assert scale_for(1) == scale_for(20) == 1  # the smallest pgbench database (~22 MiB)
    assert scale_for(1024) == 68  # 68 * 14.95 MiB + 7.1 MiB = 1024 MiB
    assert scale_for(200) == 13


@pytest.mark.integration
def test_small_scale_archive_has_the_requested_shape():
    try:
        from pgdrill.backends.local.backend import LocalBackend
        from pgdrill.backends.local.postgres import pg_bin_dir

        pg_bin_dir()
    except Exception as exc:  # noqa: BLE001 - the local extra is optional
        pytest.skip(f"local backend not available: {exc}")
    backend = LocalBackend(Config(), f"scale-{secrets.token_hex(4)}")
    try:
        with pytest.raises(UsageError, match="must be positive"):
            build_scale_archive(backend, db_mb=0, wal_mb=40)
        built = build_scale_archive(backend, db_mb=20, wal_mb=40)
        catalog = read_catalog(backend.store, built.root, built.server_name)
        # And it restores, to its end: the new timeline forks after the last archived segment.
        source = ClusterHandle(built.server_name, built.server_name, True)
        recovered = backend.recover(source, "postgres-cluster-v2", None, archive=False)
        assert recovered.promoted and recovered.fork_lsn == SegmentName.parse(built.last_wal).end_lsn
        accounts = backend.sql(recovered.cluster, "SELECT count(*) FROM pgbench_accounts", dbname="pgbench")
        assert accounts == [(100_000 * built.scale,)]
    finally:
        backend.close()

    (backup,) = catalog.backups.values()  # one completed backup, the one reported
    assert backup.backup_id == built.backup_id and backup.done and catalog.problems == ()
    assert backup.begin_wal is not None and backup.begin_wal.name == built.begin_wal
    # WAL after the backup is continuous up to the last segment the build archived.
    chain = recovery_chain(backup.begin_wal, dict(catalog.histories))
    assert find_gaps(catalog.archive, chain) == []
    last = SegmentName.parse(built.last_wal)
    assert set(range(backup.begin_wal.number, last.number + 1)) <= set(catalog.archive.segments(1))
    assert catalog.archive.last_segment(1) == last
    # Sizes as requested: pgbench's scale step is ~15 MiB, WAL comes in whole 16 MiB segments.
    assert 20 * MIB * 0.8 <= built.db_bytes <= 20 * MIB * 1.25, built.db_bytes
    assert built.wal_bytes == built.segments_after_backup * 16 * MIB
    assert 40 * MIB - 16 * MIB <= built.wal_bytes <= 40 * MIB + 2 * 16 * MIB, built.wal_bytes
    assert last.number - backup.end_lsn.segment() == built.segments_after_backup
    # data.tar (uncompressed, as CNPG's default) holds the whole cluster, the pgbench database too.
    assert catalog.stored_bytes[backup.backup_id] == built.backup_bytes >= built.db_bytes
    assert set(built.seconds) == {"init", "load", "backup", "wal", "archive", "total"}
    assert built.mb_per_second > 0
