"""Faults that only exist on Kubernetes, plus WAL-object damage through the MinIO port-forward.

Each returns (or yields) a small evidence dict for the drill report.  They only touch objects of
the run's namespace and keys under the run's S3 prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import CouldNotVerify, UsageError
from ...s3 import ObjectStore, S3Location
from ...wal import SegmentName
from . import status as st
from .cluster import KubernetesBackend, delete_cluster_and_volumes, say
from .plan import MINIO_NAME


def wal_object_key(keys: Iterable[str], segment: str) -> str:
    """The archived object of ``segment`` among ``keys`` (any compression suffix, never
    ``.partial`` or ``.backup`` labels)."""
    matches = [k for k in keys if k.rsplit("/", 1)[-1].split(".")[0] == segment
               and not k.endswith(".partial") and ".backup" not in k.rsplit("/", 1)[-1]]
    if not matches:
        raise UsageError(f"WAL segment {segment} is not in the archive")
    if len(matches) > 1:
        raise UsageError(f"WAL segment {segment} is archived more than once: {', '.join(sorted(matches))}")
    return matches[0]


def corrupted(body: bytes) -> bytes:
    """Same size, damaged middle: gzip/bz2/lz4 checksums fail and so does an uncompressed
    segment's page header check, so the damage is detected at restore time, not hidden."""
    if len(body) < 64:
        return bytes(b ^ 0xFF for b in body)
    middle = len(body) // 2
    return body[:middle] + bytes(b ^ 0xFF for b in body[middle:middle + 32]) + body[middle + 32:]


def _segment_keys(store: ObjectStore, destination: S3Location, server_name: str, segment: str) -> list[str]:
    seg = SegmentName.parse(segment)
    prefix = destination.key(server_name, "wals", seg.directory, seg.name)
    return [o.key for o in store.list(prefix)]


def delete_wal_object(backend: KubernetesBackend, server_name: str, segment: str) -> dict[str, Any]:
    key = wal_object_key(_segment_keys(backend.store, backend.destination, server_name, segment), segment)
    backend.store.delete(key)
    return {"deleted": key}


def corrupt_wal_object(backend: KubernetesBackend, server_name: str, segment: str) -> dict[str, Any]:
    key = wal_object_key(_segment_keys(backend.store, backend.destination, server_name, segment), segment)
    body = backend.store.get(key)
    backend.store.put(key, corrupted(body))
    return {"corrupted": key, "size": len(body)}


def kill_primary(backend: KubernetesBackend, cluster: str) -> dict[str, Any]:
    """Delete the primary pod with grace period 0 (harsher than CNPG e2e's 1 s)."""
    pods = backend.kube.core.list_namespaced_pod(
        backend.namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster},{st.INSTANCE_ROLE_LABEL}=primary").items
    if not pods:
        raise CouldNotVerify(f"cluster {cluster} has no pod labelled {st.INSTANCE_ROLE_LABEL}=primary")
    pod = pods[0]
    backend.kube.core.delete_namespaced_pod(pod.metadata.name, backend.namespace, grace_period_seconds=0)
    return {"pod": pod.metadata.name, "uid": pod.metadata.uid, "at": time.time()}


def delete_cluster(backend: KubernetesBackend, cluster: str) -> dict[str, Any]:
    delete_cluster_and_volumes(backend, cluster)
    return {"cluster": cluster, "pvcs": "deleted"}


@contextmanager
def s3_outage(backend: KubernetesBackend, timeout: float = 180.0) -> Iterator[dict[str, Any]]:
    """Scale MinIO to zero for the duration of the ``with`` block, then bring it back."""
    if backend.objects.endpoint_url != f"http://{MINIO_NAME}:9000":
        raise UsageError("the S3 outage fault needs the in-namespace MinIO (s3.mode = 'embedded')")
    evidence: dict[str, Any] = {"deployment": MINIO_NAME, "down_at": time.time()}
    _scale(backend, 0)
    backend._wait_deployment(MINIO_NAME, 0, timeout)
    say("S3 outage: MinIO scaled to 0")
    try:
        yield evidence
    finally:
        _scale(backend, 1)
        backend._wait_deployment(MINIO_NAME, 1, timeout)
        evidence["up_at"] = time.time()
        say("S3 outage over: MinIO back")


def _scale(backend: KubernetesBackend, replicas: int) -> None:
    backend.kube.apps.patch_namespaced_deployment_scale(MINIO_NAME, backend.namespace,
                                                        {"spec": {"replicas": replicas}})
