"""``s3.mode = "minio"``: MinIO in Docker through ``testcontainers`` (what the ADR's stack and the
plugin's e2e tests use).  Only where Docker exists; not installed by default.

A deliberately small path: one root identity (no read-only one: the audit's write-denied
checks stay on SeaweedFS and moto), no S3-outage support (``LocalBackend`` refuses it with a
reason, so that drill cannot pass here).  It cannot run on this project's CI box (no Docker),
so it is exercised only by the ``docker``-marked test, which skips with the reason.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.local.seaweed import Identity
from pgdrill.errors import BackendUnavailable, CouldNotVerify, UsageError


def testcontainers_missing() -> str | None:
    """Why ``s3.mode = "minio"`` cannot work in this environment (None: it can be tried)."""
    import importlib.util

    if importlib.util.find_spec("testcontainers") is None or importlib.util.find_spec("testcontainers.minio") is None:
        return "s3.mode = 'minio' needs testcontainers: pip install 'testcontainers[minio]' (and a Docker engine)"
    return None


@dataclass
class MinioServer:
    image: str
    """Pinned by ``kubernetes.minio_image``: one MinIO release for the kind backend and this."""
    bucket: str = "backups"
    admin: Identity = field(init=False)
    _container: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        # MinIO's root user; it reaches the container as environment variables, never argv.
        self.admin = Identity("minio-root", S3Credentials("PGD" + secrets.token_hex(8).upper(),
                                                          secrets.token_urlsafe(30)))

    @property
    def endpoint_url(self) -> str:
        config = self._container.get_config()
        return f"http://{config['endpoint']}"

    def store(self, identity: Identity | None = None) -> ObjectStore:
        return ObjectStore(self.endpoint_url, (identity or self.admin).credentials, self.bucket)

    @property
    def running(self) -> bool:
        return self._container is not None

    def start(self) -> MinioServer:
        problem = testcontainers_missing()
        if problem:
            raise UsageError(problem)
        from testcontainers.minio import MinioContainer

        credentials = self.admin.credentials
        container = MinioContainer(self.image, access_key=credentials.access_key_id,
                                   secret_key=credentials.secret_access_key)
        try:
            container.start()
        except Exception as exc:  # docker missing or down: the drill is not run, never passed
            raise BackendUnavailable(f"MinIO container did not start (is Docker running?): "
                                     f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
        self._container = container
        try:
            self.store()._client.create_bucket(Bucket=self.bucket)
        except Exception as exc:
            self.stop()
            raise CouldNotVerify(f"could not create bucket {self.bucket!r} in MinIO: {type(exc).__name__}") from None
        return self

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.stop()  # removes the container and its data

    close = stop

    def version(self) -> str:
        return f"MinIO {self.image.rsplit(':', 1)[-1]} (testcontainers)"
