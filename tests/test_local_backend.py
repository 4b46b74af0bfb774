"""The local backend against real PostgreSQL, real barman-cloud and the real S3 server."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path

import pytest

from pgdrill.backends.local.backend import LocalBackend
from pgdrill.backends.local.seaweed import SeaweedServer, free_port
from pgdrill.config import Config, S3Config
from pgdrill.errors import UsageError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    directory = tmp_path_factory.mktemp("s3")
    with SeaweedServer(directory, bucket="backups") as server:
        yield server


def external(server: SeaweedServer, bucket: str = "backups", prefix: str | None = None) -> Config:
    return replace(Config(), s3=S3Config(mode="external", endpoint_url=server.endpoint_url, bucket=bucket,
                                         prefix=prefix or f"t{secrets.token_hex(4)}"))


@pytest.fixture
def creds_env(monkeypatch, s3):
    for key, value in s3.admin.credentials.as_environment().items():
        monkeypatch.setenv(key, value)


def run_id() -> str:
    return f"test-{secrets.token_hex(4)}"


def test_unreachable_s3_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value")
    config = replace(Config(), s3=S3Config(mode="external", endpoint_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UsageError) as info:
        LocalBackend(config, run_id())
    message = str(info.value)
    assert "unreachable" in message and "\n" not in message
    assert "not-a-real-secret-value" not in message


def test_wrong_credentials_are_named_without_leaking(monkeypatch, s3):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.admin.credentials.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-123456")
    with pytest.raises(UsageError, match="rejected the credentials") as info:
        LocalBackend(external(s3), run_id())
    assert "wrong-secret-123456" not in str(info.value)


def test_missing_credentials(monkeypatch, s3):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(UsageError, match="AWS_ACCESS_KEY_ID"):
        LocalBackend(external(s3), run_id())


def test_missing_bucket(creds_env, s3):
    with pytest.raises(UsageError, match="bucket 'no-such-bucket' does not exist"):
        LocalBackend(external(s3, bucket="no-such-bucket"), run_id())


def test_run_prefix_that_is_not_empty_is_refused_and_left_alone(creds_env, s3):
    prefix = f"t{secrets.token_hex(4)}"
    rid = run_id()
    key = f"{prefix}/{rid}/someone-else/file"
    s3.store().put(key, b"precious")
    with pytest.raises(UsageError, match="is not empty"):
        LocalBackend(external(s3, prefix=prefix), rid)
    assert s3.store().get(key) == b"precious"


def test_server_name_with_wal_is_refused_and_nothing_overwritten(creds_env, s3):
    backend = LocalBackend(external(s3), run_id())
    try:
        wal_key = backend.destination.key("postgres-cluster", "wals", "0000000100000000",
                                          "000000010000000000000001.gz")
        backend.store.put(wal_key, b"not ours")
        with pytest.raises(UsageError, match="Expected empty archive"):
            backend.create_source("postgres-cluster")
        assert backend.store.get(wal_key) == b"not ours"
        assert [o.key for o in backend.store.list(backend.destination.key() + "/")] == [wal_key]
    finally:
        backend.close()


def test_recovery_names_skip_used_server_names(creds_env, s3):
    backend = LocalBackend(external(s3), run_id())
    try:
        backend.store.put(backend.destination.key("postgres-cluster-v2", "wals", "x"), b"")
        assert backend.next_recovery_name("postgres-cluster") == "postgres-cluster-v3"
    finally:
        backend.close()


def test_archive_backup_recover_and_credentials_stay_out_of_argv(tmp_path):
    backend = LocalBackend(Config(), run_id())
    secret = backend.credentials.secret_access_key
    try:
        source = backend.create_source("postgres-cluster")
        backend.sql(source, "CREATE TABLE t (id int PRIMARY KEY)")
        backend.sql(source, "INSERT INTO t SELECT generate_series(1, 10)")
        backup_id = backend.take_backup(source)
        walfile = backend.sql(source, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0]
        backend.sql(source, "SELECT pg_switch_wal()")
        backend.wait_archived(source, walfile)
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert secret.encode() not in cmdline.read_bytes()
            except (PermissionError, ProcessLookupError, FileNotFoundError):
                continue
        backend.lose(source, destroy_data=True)
        assert not Path(source.details["pgdata"]).exists()
        outcome = backend.recover(source, backend.next_recovery_name("postgres-cluster"), None)
        assert outcome.promoted and outcome.backup_id == backup_id
        assert outcome.cluster.server_name == "postgres-cluster-v2"
        assert backend.sql(outcome.cluster, "SELECT count(*) FROM t") == [(10,)]
        assert outcome.timeline == 2 and outcome.fork_lsn is not None
        # The recovered cluster archives under its own serverName, never its source's.
        backend.sql(outcome.cluster, "SELECT pg_switch_wal()")
        archived = backend.sql(outcome.cluster, "SHOW archive_command")[0][0]
        assert "postgres-cluster-v2" in archived and "'postgres-cluster'" not in archived
        source_keys = [o.key for o in backend.store.list(backend.destination.key("postgres-cluster") + "/")]
        assert not any(".history" in k for k in source_keys)
        assert all(secret not in line for line in outcome.log_excerpt)
    finally:
        backend.close()
    assert not backend.run_dir.exists()


def test_close_releases_processes_and_directories():
    backend = LocalBackend(Config(), run_id())
    source = backend.create_source("postgres-cluster")
    pid = int((Path(source.details["pgdata"]) / "postmaster.pid").read_text().splitlines()[0])
    server = backend.s3_server
    backend.close()
    assert not backend.run_dir.exists()
    assert server is not None and not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_seaweedfs_picks_new_ports_when_one_was_taken_before_it_could_bind(tmp_path, monkeypatch):
    """free_port() finds a port free at that moment only; another process may bind it first."""
    import socket

    from pgdrill.backends.local import seaweed

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    handed = iter([taken.getsockname()[1]])  # the first port asked for is already in use
    monkeypatch.setattr(seaweed, "free_port", lambda: next(handed, None) or free_port())
    server = SeaweedServer(tmp_path / "s3")
    try:
        server.start()
        assert taken.getsockname()[1] not in server.ports.values()
        server.store().check_access()  # it answers (raises otherwise)
        log = server.log_path.read_text()
        assert "not available" in log or "address already in use" in log  # the first attempt did fail
    finally:
        server.stop()
        taken.close()
