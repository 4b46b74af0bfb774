"""A second real S3 server on 127.0.0.1: moto's server mode (``moto[server]``, ``ThreadedMotoServer``).

It exists so the suite proves that nothing depends on one S3 implementation's quirks
(SeaweedFS keeps emptied "folders" as common prefixes; moto does not).  It serves real HTTP:
barman-cloud, run by PostgreSQL's ``archive_command`` as another OS user in other processes,
reaches it exactly as it reaches SeaweedFS.

What differs from ``SeaweedServer`` and why:

* **State lives in this Python process**, in moto's module-level backends, shared by every
  ``MotoServer`` of the process (each has its own port; bucket names are global in moto, as in
  AWS).  Runs stay apart by their own prefixes, as on a shared external bucket.  The data dies
  with the process: ``--keep`` cannot keep it.  ``stop()`` keeps it (the S3-outage fault restarts
  on the same port with the same objects); ``close()`` drops this server's users and, when it is
  the last live one, all of moto's state, so a long pytest session does not hoard archives.
* **Credentials are real IAM identities.**  moto checks signatures and IAM policies only once
  ``INITIAL_NO_AUTH_ACTION_COUNT`` is reached (default: never).  The first server of the process
  creates a bootstrap user with auth still off, then switches auth on for the whole process
  (``settings.INITIAL_NO_AUTH_ACTION_COUNT = 0``, as moto's ``enable_iam_authentication``); every server then creates its own admin (``s3:*``) and read-only
  (Get/List) users *through* that bootstrap identity, so auth is never switched off again while
  another server is in use.  Wrong keys get ``InvalidAccessKeyId``, a read-only identity's PUT
  ``AccessDenied``, as on SeaweedFS.  Access key ids are moto's (``AKIA...``), not ours.
* Objects above moto's 5 MB key buffer spill into anonymous (already unlinked) temp files:
  nothing named is left in /tmp.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.local.seaweed import Identity
from pgdrill.backends.naming import free_port
from pgdrill.errors import CouldNotVerify, UsageError

# Allowed actions of the read-only identity.  moto authorises HEAD on a bucket as its own
# "s3:HeadBucket" action (AWS: s3:ListBucket), so a Get/List-only policy would fail head_bucket.
READ_ONLY_ACTIONS = ("s3:Get*", "s3:List*", "s3:HeadBucket")

_LOCK = threading.Lock()


def _moto() -> Any:
    try:
        import moto.server
    except ImportError:
        raise UsageError("s3.mode = 'moto' needs moto's server mode: pip install 'moto[server]' "
                         "(it is in pgdrill's test extra)") from None
    return moto.server


def _cannot_bind(port: int) -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug's server does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return str(exc)
    return None


def _policy(actions: tuple[str, ...]) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}]})


@dataclass
class MotoServer:
    """Start/stop a ``ThreadedMotoServer``; ``stop()`` then ``start()`` keeps data, port and keys."""

    bucket: str = "backups"
    read_only_identity: bool = True
    """Also create a Get/List-only identity (for proving audit never writes)."""
    admin: Identity = field(init=False)
    reader: Identity = field(init=False)
    port: int = field(init=False, default=0)
    _server: Any = field(init=False, default=None)
    _users: list[str] = field(init=False, default_factory=list)
    _tag: str = field(init=False, default="")

    # Process-wide: moto's state is, too (see the module docstring).
    _live: ClassVar[set[int]] = set()
    _bootstrap: ClassVar[S3Credentials | None] = None
    _auth_before: ClassVar[float | None] = None

    def __post_init__(self) -> None:
        import secrets

        self._tag = secrets.token_hex(4)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store(self, identity: Identity | None = None, bucket: str | None = None) -> ObjectStore:
        return ObjectStore(self.endpoint_url, (identity or self.admin).credentials, bucket or self.bucket)

    @property
    def running(self) -> bool:
        thread = getattr(self._server, "_thread", None)
        return thread is not None and thread.is_alive()

    def start(self, timeout: float = 30.0) -> MotoServer:
        if self.running:
            return self
        server_module = _moto()
        # werkzeug logs every request at INFO to stderr unless told otherwise; drills and tests
        # print their own progress.  An explicit level set by the caller is left alone.
        werkzeug = logging.getLogger("werkzeug")
        if werkzeug.level == logging.NOTSET:
            werkzeug.setLevel(logging.WARNING)
        first_start = not self.port
        self.port = self.port or free_port()
        # ThreadedMotoServer binds in its thread and start() waits for that without a timeout:
        # a taken port (someone grabbed it during an outage) would hang here.  Check first.
        problem = _cannot_bind(self.port)
        if problem:
            raise CouldNotVerify(f"moto S3 cannot listen on {self.endpoint_url}: {problem}")
        self._server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        if first_start:
            with _LOCK:
                MotoServer._live.add(id(self))
                try:
                    self._provision()
                except BaseException:
                    MotoServer._live.discard(id(self))
                    self.stop()
                    self.port = 0
                    raise
        self._wait_ready(timeout)
        return self

    def _client(self, service: str, credentials: S3Credentials | None) -> Any:
        import boto3

        creds = credentials or S3Credentials("bootstrap", "bootstrap")
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=creds.region,
                            aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key)

    def _provision(self) -> None:
        """Identities and bucket; the first server of the process also turns IAM enforcement on."""
        from moto import settings

        if MotoServer._bootstrap is None:
            # Auth is still off here (moto's default), so the bootstrap user can be created at all.
            iam = self._client("iam", None)
            # Not one of this server's users: it outlives this server while others are live.
            MotoServer._bootstrap = self._create_user(iam, f"pgdrill-bootstrap-{self._tag}", ("*",), own=False)
            MotoServer._auth_before = settings.INITIAL_NO_AUTH_ACTION_COUNT
            # What moto's own enable_iam_authentication() does: enforce from the next request on.
            settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        iam = self._client("iam", MotoServer._bootstrap)
        self.admin = Identity(f"pgdrill-admin-{self._tag}", self._create_user(iam, f"pgdrill-admin-{self._tag}",
                                                                              ("s3:*",)))
        if self.read_only_identity:
            name = f"pgdrill-reader-{self._tag}"
            self.reader = Identity(name, self._create_user(iam, name, READ_ONLY_ACTIONS), ("Read", "List"))

    def _create_user(self, iam: Any, name: str, actions: tuple[str, ...], own: bool = True) -> S3Credentials:
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="pgdrill", PolicyDocument=_policy(actions))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        if own:
            self._users.append(name)
        return S3Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def _wait_ready(self, timeout: float) -> None:
        import time

        import botocore.exceptions

        client = self.store()._client
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except botocore.exceptions.ClientError as exc:
                last = str(exc.response.get("Error", {}).get("Code", ""))
                if last in ("404", "NoSuchBucket", "NotFound"):
                    client.create_bucket(Bucket=self.bucket)
                    return
            except Exception as exc:  # the thread is listening once start() returns; be safe anyway
                last = type(exc).__name__
            time.sleep(0.1)
        self.stop()
        raise CouldNotVerify(f"moto S3 on {self.endpoint_url} not ready after {timeout:.0f}s ({last})")

    def stop(self) -> None:
        """Stop serving; objects, users and the port number stay for the next ``start()``.

        moto's own ``stop()`` ends the accept loop but leaves the listening socket open: clients
        would then connect and hang instead of being refused (no outage), and the port could not
        be bound again.  So the socket is closed here.  Keep-alive connections a client of *this*
        process already holds may still be answered; the barman-cloud processes an
        ``archive_command`` starts open new connections, which are refused."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        wsgi = getattr(server, "_server", None)
        if wsgi is not None:
            wsgi.server_close()

    def close(self) -> None:
        """Stop for good.  The last live server of the process resets moto's state (objects,
        users) and the auth setting it changed; any other one first removes its own users (while
        it still listens), and its objects stay until then: they are under its run's prefix."""
        with _LOCK:
            MotoServer._live.discard(id(self))
            last = not MotoServer._live
            if not last and self.running and MotoServer._bootstrap is not None:
                self._delete_users()
            self.stop()
            if last and MotoServer._bootstrap is not None:
                from moto import settings
                from moto.moto_api._internal.models import moto_api_backend

                moto_api_backend.reset()
                settings.INITIAL_NO_AUTH_ACTION_COUNT = MotoServer._auth_before or float("inf")
                MotoServer._bootstrap = MotoServer._auth_before = None
            self._users = []

    def _delete_users(self) -> None:
        iam = self._client("iam", MotoServer._bootstrap)
        for name in self._users:
            for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
            iam.delete_user_policy(UserName=name, PolicyName="pgdrill")
            iam.delete_user(UserName=name)

    def version(self) -> str:
        from importlib.metadata import version

        return f"moto {version('moto')} (ThreadedMotoServer)"

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
