"""The suite's second S3 implementation (moto's server, ``s3.mode = "moto"``) and the small
MinIO path (``s3.mode = "minio"``, Docker only).

moto serves real HTTP on 127.0.0.1; these tests check what the drills and the audit rely on:
enforced keys, a write-denied identity, an outage that refuses connections and comes back with
the same data and port, and that a backend releases what it put into moto's in-process state.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import replace

import pytest

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.local.moto_s3 import MotoServer
from pgdrill.config import Config, S3Config, load_config
from pgdrill.errors import ConfigError, CouldNotVerify, S3Error

pytestmark = pytest.mark.integration


@pytest.fixture
def moto():
    server = MotoServer()
    try:
        server.start()
    except Exception as exc:  # moto is in the test extra; say why these cannot run
        pytest.skip(f"moto not available: {exc}")
    yield server
    server.close()


def fresh(store: ObjectStore) -> ObjectStore:
    """A new client (new connections), as each barman-cloud process of an archive_command is."""
    return ObjectStore(store.endpoint_url, store.credentials, store.bucket)


def test_keys_are_enforced_and_the_reader_cannot_write(moto):
    moto.store().put("t/a", b"1")
    reader = moto.store(moto.reader)
    assert [o.key for o in reader.list("t/")] == ["t/a"] and reader.get("t/a") == b"1"
    for write in (lambda: reader.put("t/b", b"x"), lambda: reader.delete("t/a")):
        with pytest.raises(S3Error, match="access denied"):
            write()
    wrong = ObjectStore(moto.endpoint_url, S3Credentials("PGDWRONGKEY", "wrong-secret-value"), moto.bucket)
    with pytest.raises(S3Error, match="rejected the credentials") as info:
        list(wrong.list("t/"))  # list() is lazy: consume it
    assert "wrong-secret-value" not in str(info.value)
    forged = ObjectStore(moto.endpoint_url, S3Credentials(moto.admin.credentials.access_key_id, "forged"),
                         moto.bucket)
    with pytest.raises(S3Error):
        forged.get("t/a")


def test_an_emptied_folder_is_no_common_prefix_on_moto(moto):
    """The SeaweedFS quirk pgdrill must not depend on: there an emptied folder stays listed."""
    store = moto.store()
    store.put("q/base/a/backup.info", b"1")
    store.put("q/base/b/backup.info", b"1")
    store.delete("q/base/b/backup.info")
    assert store.list_prefixes("q/base/") == ["q/base/a/"]


def test_stop_refuses_connections_and_start_brings_back_data_port_and_keys(moto):
    store = moto.store()
    store.put("outage/kept", b"before")
    endpoint, admin = moto.endpoint_url, moto.admin
    moto.stop()
    assert not moto.running
    with pytest.raises(S3Error, match="unreachable"):
        fresh(store).get("outage/kept")
    moto.start()
    assert moto.running and moto.endpoint_url == endpoint and moto.admin == admin
    assert fresh(store).get("outage/kept") == b"before"


def test_a_port_taken_during_the_outage_is_an_error_not_a_hang(moto):
    import socket

    moto.stop()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", moto.port))
        squatter.listen()
        with pytest.raises(CouldNotVerify, match="cannot listen"):
            moto.start()
    moto.start()  # free again: the same port, the same data
    assert moto.running


def test_servers_share_moto_state_and_close_releases_their_users(moto):
    other = MotoServer().start()
    try:
        moto.store().put("shared/x", b"1")
        assert other.store(other.reader).get("shared/x") == b"1"  # one moto state per process
        gone = other.admin.credentials
    finally:
        other.close()
    # Its users are deleted (through its own port, before it stopped); the first server lives on.
    with pytest.raises(S3Error, match="rejected the credentials"):
        list(ObjectStore(moto.endpoint_url, gone, moto.bucket).list("shared/"))
    assert moto.store().get("shared/x") == b"1"


def test_the_last_server_resets_moto_and_the_auth_setting():
    from moto import settings

    if MotoServer._live:
        pytest.skip("another MotoServer of this process is live (a session fixture); reset happens after it")
    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    with MotoServer() as server:
        server.store().put("reset/x", b"1")
        assert settings.INITIAL_NO_AUTH_ACTION_COUNT == 0
    assert settings.INITIAL_NO_AUTH_ACTION_COUNT == before
    with MotoServer() as server:
        assert list(server.store().list("reset/")) == []


def test_config_knows_moto_and_minio(tmp_path):
    path = tmp_path / "pgdrill.toml"
    path.write_text("[s3]\nmode = 'moto'\n")
    assert load_config(path).s3.mode == "moto"
    path.write_text("[s3]\nmode = 'minio'\n")
    try:
        import testcontainers.minio  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"s3.mode = 'minio' needs testcontainers.minio: pip install"):
            load_config(path)
    else:
        assert load_config(path).s3.mode == "minio"


def test_local_backend_on_moto_outage_and_release():
    """What the s3-outage fault does (``set_object_store_available``), on moto."""
    from pgdrill.backends.local.backend import LocalBackend

    backend = LocalBackend(replace(Config(), s3=S3Config(mode="moto")), f"test-{secrets.token_hex(4)}")
    try:
        server = backend.s3_server
        assert isinstance(server, MotoServer)
        assert backend.versions()["s3"].startswith("moto ")
        key = backend.destination.key("postgres-cluster", "marker")
        backend.store.put(key, b"1")
        backend.set_object_store_available(False)
        with pytest.raises(S3Error, match="unreachable"):
            fresh(backend.store).get(key)
        backend.set_object_store_available(True)
        assert fresh(backend.store).get(key) == b"1"
    finally:
        backend.close()
    assert not server.running and not backend.leftovers


def _docker_problem() -> str | None:
    try:
        import testcontainers.minio  # noqa: F401
    except ImportError:
        return "testcontainers is not installed"
    if shutil.which("docker") is None:
        return "no docker binary"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, check=False,
                                text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if result.returncode == 0 and result.stdout.strip() else "docker info failed"


@pytest.mark.docker
def test_local_backend_on_minio_through_testcontainers():
    problem = _docker_problem()
    if problem:
        pytest.skip(f"Docker is not available ({problem})")
    from pgdrill.backends.local.backend import LocalBackend
    from pgdrill.backends.local.minio_s3 import MinioServer

    backend = LocalBackend(replace(Config(), s3=S3Config(mode="minio")), f"test-{secrets.token_hex(4)}")
    try:
        assert isinstance(backend.s3_server, MinioServer)
        key = backend.destination.key("postgres-cluster", "marker")
        backend.store.put(key, b"1")
        assert fresh(backend.store).get(key) == b"1"
        assert backend.versions()["s3"].startswith("MinIO ")
    finally:
        backend.close()
