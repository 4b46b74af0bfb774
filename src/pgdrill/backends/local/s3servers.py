"""Which S3 server the local backend starts for ``s3.mode`` (not ``external``).

* ``embedded``: SeaweedFS ``weed mini`` (``seaweed.py``), the default;
* ``moto``: moto's server in this process (``moto_s3.py``), the suite's second S3 implementation,
  so no drill logic can lean on one server's quirks;
* ``minio``: MinIO in Docker through testcontainers (``minio_s3.py``), where Docker exists.

The moto and MinIO modules are imported only when chosen: their packages are test/optional
extras, and ``import pgdrill`` must stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from pgdrill.backends.local.runas import ProcessGroups
from pgdrill.backends.local.seaweed import SeaweedServer

if TYPE_CHECKING:
    from pgdrill.backends.local.minio_s3 import MinioServer
    from pgdrill.backends.local.moto_s3 import MotoServer
    from pgdrill.config import S3Config

EmbeddedS3 = Union[SeaweedServer, "MotoServer", "MinioServer"]
"""All three offer endpoint_url, bucket, admin, store(), start(), stop(), running, version()."""


def make_s3_server(s3: S3Config, directory: Path, scope: ProcessGroups, socket_dir: Path,
                   minio_image: str) -> EmbeddedS3:
    """A not yet started server for ``s3.mode``; ``directory`` is created for SeaweedFS only
    (moto keeps its state in memory, MinIO in its container)."""
    if s3.mode == "moto":
        from pgdrill.backends.local.moto_s3 import MotoServer

        # No read-only identity: drills write with the admin one; the audit tests make their own.
        return MotoServer(bucket=s3.bucket, read_only_identity=False)
    if s3.mode == "minio":
        from pgdrill.backends.local.minio_s3 import MinioServer

        return MinioServer(minio_image, bucket=s3.bucket)
    server = SeaweedServer(directory, bucket=s3.bucket, scope=scope, socket_dir=socket_dir)
    server.directory.mkdir(mode=0o700)
    return server
