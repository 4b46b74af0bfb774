"""Read one serverName's archive from S3 (list + get only) and analyse it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from pgdrill.archive.catalog import read_catalog
from pgdrill.archive.store import ObjectInfo, S3Location
from pgdrill.audit import codes
from pgdrill.audit.analyze import analyze
from pgdrill.audit.context import DETECTOR
from pgdrill.audit.replica import (
    ListingRecorder,
    ReplicaTarget,
    audit_replica,
    not_compared,
)
from pgdrill.audit.report import AuditReport
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.errors import S3Error
from pgdrill.findings import Finding


class ReadableStore(Protocol):
    """The only calls the audit makes: it never writes, deletes or HEADs objects."""

    endpoint_url: str | None

    def list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def get(self, key: str) -> bytes: ...

    def list_prefixes(self, prefix: str) -> list[str]: ...


def run_audit(location: S3Location, store: ReadableStore, thresholds: AuditThresholds,
              now: datetime, replica: ReplicaTarget | None = None) -> AuditReport:
    """Audit ``s3://<bucket>/<prefix>/<serverName>`` (``location``) through ``store``.

    ``read_catalog``: one paginated listing of ``<serverName>/`` gives every WAL name, size and
    LastModified; only ``backup.info`` and ``.history`` objects are fetched.  S3 and metadata problems
    become findings (``S3_ACCESS_ERROR``, ``METADATA_UNREADABLE``), never exceptions.

    :param now: the audit's clock (timezone-aware), so ages are reproducible in tests
    :param replica: also compare the replica bucket with this archive (``pgdrill.audit.replica``);
        its findings join the report's, so the exit code follows them
    """
    started = time.monotonic()
    server_name = location.prefix.rsplit("/", 1)[-1]
    endpoint = getattr(store, "endpoint_url", None)
    if not server_name:
        return unverified_report(location, thresholds, now, (
            f"{location.url} names no serverName: expected s3://<bucket>/<prefix>/<serverName>"), endpoint)
    # The trailing slash matters: "postgres-cluster" must not also list "postgres-cluster-v2".
    root = location.prefix + "/"
    # With a replica the comparison needs the primary's listing (ETags included): recorded while
    # read_catalog lists, never listed twice.
    reader = ListingRecorder(store) if replica is not None else store
    try:
        meta = read_catalog(reader, root, server_name)
    except S3Error as exc:
        return replace(unverified_report(location, thresholds, now, str(exc), endpoint, replica),
                       duration_seconds=time.monotonic() - started)

    problems = [Finding(codes.METADATA_UNREADABLE, f"{p.key}: {p.reason}", DETECTOR, {"key": p.key})
                for p in meta.problems]
    notes: tuple[str, ...] = ()
    if not meta.objects_listed:
        siblings = _siblings(store, location)
        notes = (f"nothing under {location.url}"
                 + (f"; serverNames next to it: {', '.join(siblings)} (wrong serverName?)" if siblings else ""),)
    report = analyze(meta, thresholds, now, location=location.url, endpoint_url=endpoint,
                     findings=tuple(problems))
    if replica is not None and isinstance(reader, ListingRecorder):
        checked, found = audit_replica(meta, reader.objects, report, replica, now)
        report = replace(report, replica=checked, findings=report.findings + tuple(found))
    return replace(report, notes=notes, duration_seconds=time.monotonic() - started)


def unverified_report(location: S3Location, thresholds: AuditThresholds, now: datetime, message: str,
                      endpoint_url: str | None = None, replica: ReplicaTarget | None = None) -> AuditReport:
    """The report of an audit that could not even list the bucket: exit 2, success 0.

    :param replica: the replica that was to be compared (reported as not compared)
    """
    finding = Finding(codes.S3_ACCESS_ERROR, message, DETECTOR, {"location": location.url})
    return AuditReport(location.url, location.prefix.rsplit("/", 1)[-1], endpoint_url, now, thresholds,
                       (finding,), replica=None if replica is None else not_compared(
                           replica, "the primary could not be read"))


def _siblings(store: ReadableStore, location: S3Location) -> list[str]:
    parent = location.prefix.rsplit("/", 1)[0] + "/" if "/" in location.prefix else ""
    try:
        return sorted(p[len(parent):].strip("/") for p in store.list_prefixes(parent))[:10]
    except S3Error:
        return []

