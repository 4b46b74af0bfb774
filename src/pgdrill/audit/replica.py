"""``pgdrill audit --replica``: is the copy of the archive in another organisation's bucket enough?

ADR 007's TODO: the backup data also lives in a bucket that only a different set of credentials can
reach, so that one organisation's mistake (or compromise) cannot take both.  A replica nobody
checks is a hope, so the audit compares it with the primary, read-only on both sides (list + get):

- ``expected_objects`` (pure): what a recovery from the replica needs, taken from the primary's
  analysis: every object under ``base/<id>/`` of the newest consistent backup, the ``.history``
  files of the timelines its recovery follows, and every WAL segment of that chain from its begin
  WAL to the primary's newest one;
- ``compare_replica`` (pure): which of them the replica lacks or holds differently, and its lag;
- ``audit_replica``: reads the replica with the one archive reader, ``read_catalog``, through
  ``ListingRecorder`` (which keeps the listing's sizes and ETags), then compares.

Docs: docs/audit.md, "Replica bucket".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pgdrill.archive.catalog import ArchiveCatalog, MetadataStore, read_catalog
from pgdrill.archive.continuity import ChainLink, recovery_chain
from pgdrill.archive.store import ObjectInfo, S3Location
from pgdrill.audit import codes
from pgdrill.audit.formatting import human_duration
from pgdrill.errors import S3Error
from pgdrill.findings import Finding

if TYPE_CHECKING:
    from pgdrill.audit.report import AuditReport

DETECTOR = "audit.replica"

#: Keys named in a finding's evidence (the count is always complete).
MAX_LISTED = 20

_MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class ExpectedObject:
    """An object of the primary that a recovery from the replica needs."""

    rel: str
    """Its key below the serverName folder (``base/<id>/data.tar``, ``wals/<16 hex>/<segment>``):
    the replica may sit under another prefix, or even another serverName."""
    primary: ObjectInfo
    kind: Literal["backup", "history", "wal"]
    required: bool
    """Without it a recovery from the replica cannot even reach consistency: the backup's objects,
    the timeline histories and the WAL from the backup's begin to its end."""
    order: int = -1
    """Position along the recovery chain (WAL only)."""


@dataclass(frozen=True)
class ReplicaTarget:
    """Where the replica is and how it is read (a store with the replica's own credentials)."""

    location: S3Location
    store: MetadataStore
    max_lag_seconds: float = 600.0
    notes: tuple[str, ...] = ()
    compare_etags: bool = True


@dataclass(frozen=True)
class ReplicaReport:
    """The replica part of the audit report (``AuditReport.replica``)."""

    location: str
    verified: bool
    """Its listing and the metadata a recovery reads could be read, and compared with a consistent
    backup of the primary."""
    lag_seconds: float | None = None
    """How long the oldest WAL segment the replica lacks after its own newest one has been in the
    primary (0: the replica holds the primary's newest segment)."""
    missing_objects: int = 0
    mismatched_objects: int = 0
    checked_objects: int = 0
    endpoint_url: str | None = None
    max_lag_seconds: float = 600.0
    backup_id: str | None = None
    first_wal: str | None = None
    primary_newest_segment: str | None = None
    replica_newest_segment: str | None = None
    """The newest segment of the chain that the replica holds."""
    pending_objects: int = 0
    """Lacking, but the primary has had them for less than the lag limit: a copy in flight."""
    unreplicated_segments: int = 0
    """WAL segments after the replica's newest one: they are its lag, not holes."""
    objects_listed: int = 0
    missing: tuple[str, ...] = ()
    mismatched: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["ok", "alert", "could_not_verify"]:
        if self.missing_objects or self.mismatched_objects or (
                self.lag_seconds is not None and self.lag_seconds > self.max_lag_seconds):
            return "alert"
        return "ok" if self.verified else "could_not_verify"

    def summary_lines(self) -> list[str]:
        """A few lines for the terminal table."""
        state = {"ok": "OK", "alert": "ALERT", "could_not_verify": "COULD NOT VERIFY"}[self.status]
        lines = [f"Replica {self.location}" + (f" (endpoint {self.endpoint_url})" if self.endpoint_url else "")
                 + f": {state}" + (f": {self.error}" if self.error else "")]
        if self.backup_id is not None:
            lines.append(
                f"  backup {self.backup_id} and WAL {self.first_wal}..{self.primary_newest_segment}: "
                f"{self.checked_objects} objects checked, {self.missing_objects} missing, "
                f"{self.mismatched_objects} different, {self.pending_objects} still copying")
        if self.lag_seconds is not None:
            lines.append(f"  lag {human_duration(self.lag_seconds)} (limit {human_duration(self.max_lag_seconds)}): "
                         f"newest WAL in the replica {self.replica_newest_segment or 'none'}, "
                         f"{self.unreplicated_segments} segment(s) behind the primary")
        lines += [f"  note: {note}" for note in self.notes]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location, "endpoint_url": self.endpoint_url, "status": self.status,
            "verified": self.verified, "backup_id": self.backup_id, "first_wal": self.first_wal,
            "primary_newest_segment": self.primary_newest_segment,
            "replica_newest_segment": self.replica_newest_segment,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "max_lag_seconds": self.max_lag_seconds, "checked_objects": self.checked_objects,
            "missing_objects": self.missing_objects, "mismatched_objects": self.mismatched_objects,
            "pending_objects": self.pending_objects, "unreplicated_segments": self.unreplicated_segments,
            "objects_listed": self.objects_listed, "missing": list(self.missing),
            "mismatched": list(self.mismatched), "error": self.error, "notes": list(self.notes),
        }


class ListingRecorder:
    """Reads through ``store`` and keeps what it listed, ETags included: ``read_catalog`` stays the
    only reader, and the comparison gets the listing it already made (no second listing)."""

    def __init__(self, store: MetadataStore):
        self.store = store
        self.objects: list[ObjectInfo] = []

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for obj in self.store.list(prefix):
            self.objects.append(obj)
            yield obj

    def get(self, key: str) -> bytes:
        return self.store.get(key)


# -- what a recovery from the replica needs (pure) --------------------------------------------

def newest_consistent(report: AuditReport) -> str | None:
    """The primary's newest base backup that a recovery can use (``consistent`` or better)."""
    usable = [b for b in report.backups if b.consistent and b.end_time is not None]
    return max(usable, key=lambda b: (b.end_time, b.backup_id)).backup_id if usable else None  # type: ignore[arg-type,return-value]


def expected_objects(meta: ArchiveCatalog, listing: Iterable[ObjectInfo], backup_id: str) -> list[ExpectedObject]:
    """The objects of ``backup_id`` and of its recovery chain in the primary, WAL in chain order."""
    root = meta.archive.root
    by_key = {o.key: o for o in listing}
    base = f"{root}base/{backup_id}/"
    out = [ExpectedObject(k[len(root):], o, "backup", True) for k, o in sorted(by_key.items()) if k.startswith(base)]
    info = meta.backups[backup_id]
    assert info.begin_wal is not None and info.end_wal is not None  # consistent: both are known
    try:
        chain = recovery_chain(info.begin_wal, dict(meta.histories))
    except ValueError:  # a switch without its history (reported as TIMELINE_HISTORY_MISSING)
        chain = [ChainLink(info.begin_wal.timeline, info.begin_wal.number, None)]
    histories = meta.archive.history_keys()
    for link in chain[1:]:
        if link.timeline in histories:
            key = histories[link.timeline]
            out.append(ExpectedObject(key[len(root):], by_key[key], "history", True))
    order, required = 0, True
    for link in chain:
        segments = meta.archive.segments(link.timeline)
        for number in sorted(n for n in segments if n >= link.first and (link.last is None or n <= link.last)):
            wal = segments[number]
            out.append(ExpectedObject(wal.key[len(root):], by_key[wal.key], "wal", required, order))
            order += 1
            if (link.timeline, number) == (info.end_wal.timeline, info.end_wal.number):
                required = False  # the rest serves later recovery points, not consistency
    return out


# -- the comparison (pure) -----------------------------------------------------------------------

def plain_md5(etag: str | None) -> bool:
    """A single-part upload's ETag is the body's MD5; a multipart one ends in ``-<parts>``."""
    return etag is not None and _MD5.fullmatch(etag) is not None


def difference(primary: ObjectInfo, copy: ObjectInfo, compare_etags: bool = True) -> str | None:
    if primary.size != copy.size:
        return f"size {copy.size} instead of {primary.size}"
    if compare_etags and plain_md5(primary.etag) and plain_md5(copy.etag) \
            and primary.etag.lower() != copy.etag.lower():  # type: ignore[union-attr]
        # SSE-KMS and SSE-C ETags are not MD5s but look like one: compare_etags = false then.
        return f"MD5 ETag {copy.etag} instead of {primary.etag}"
    return None


def compare_replica(expected: Sequence[ExpectedObject], replica: Iterable[ObjectInfo], replica_root: str,
                    now: datetime, max_lag_seconds: float, *, location: str, backup_id: str | None,
                    endpoint_url: str | None = None, compare_etags: bool = True,
                    ) -> tuple[ReplicaReport, list[Finding]]:
    """Compare the replica's listing (below ``replica_root``) with what it should hold.

    An object the replica lacks is, by where it is:
    - after the replica's newest WAL segment of the chain: its lag (``REPLICA_LAG`` past the limit);
      the replica is an older but consistent copy;
    - anything else (a hole before that segment, the backup's objects, a history file, WAL up to the
      backup's end): a recovery from the replica cannot pass it: ``REPLICA_OBJECT_MISSING`` once the
      primary has had it for longer than ``max_lag_seconds``; before that, a copy in flight.
    """
    root = replica_root if replica_root.endswith("/") else replica_root + "/"
    copies = {o.key[len(root):]: o for o in replica if o.key.startswith(root)}
    wal = [e for e in expected if e.kind == "wal"]
    head = max((e.order for e in wal if e.rel in copies), default=None)
    missing: list[ExpectedObject] = []
    pending: list[ExpectedObject] = []
    behind: list[ExpectedObject] = []  # WAL after the head, in chain order
    mismatched: list[dict[str, Any]] = []
    for e in expected:
        copy = copies.get(e.rel)
        if copy is not None:
            why = difference(e.primary, copy, compare_etags)
            if why:
                mismatched.append({"key": root + e.rel, "reason": why, "primary_size": e.primary.size,
                                   "replica_size": copy.size, "primary_etag": e.primary.etag,
                                   "replica_etag": copy.etag})
            continue
        after_head = e.kind == "wal" and (head is None or e.order > head)
        if after_head:
            behind.append(e)
            if not e.required:
                continue
        waited = (now - e.primary.last_modified).total_seconds()
        (missing if waited > max_lag_seconds else pending).append(e)
    lag = max(0.0, (now - behind[0].primary.last_modified).total_seconds()) if behind else 0.0
    report = ReplicaReport(
        location=location, verified=True, lag_seconds=lag if wal else None,
        missing_objects=len(missing), mismatched_objects=len(mismatched), checked_objects=len(expected),
        endpoint_url=endpoint_url, max_lag_seconds=max_lag_seconds, backup_id=backup_id,
        first_wal=_name(wal[0]) if wal else None, primary_newest_segment=_name(wal[-1]) if wal else None,
        replica_newest_segment=_name(wal[head]) if head is not None else None,
        pending_objects=len(pending), unreplicated_segments=len(behind), objects_listed=len(copies),
        missing=tuple(root + e.rel for e in missing[:MAX_LISTED]), mismatched=tuple(mismatched[:MAX_LISTED]))
    return report, _findings(report, missing, mismatched, behind, root)


def _name(e: ExpectedObject) -> str:
    return e.rel.rsplit("/", 1)[-1]


def _findings(report: ReplicaReport, missing: list[ExpectedObject], mismatched: list[dict[str, Any]],
              behind: list[ExpectedObject], root: str) -> list[Finding]:
    out = []
    where = {"location": report.location, "backup_id": report.backup_id}
    if missing:
        names = ", ".join(_name(e) for e in missing[:3]) + (", ..." if len(missing) > 3 else "")
        out.append(Finding(codes.REPLICA_OBJECT_MISSING, (
            f"{len(missing)} object(s) that a recovery of backup {report.backup_id} from the replica needs "
            f"are missing from {report.location}: {names}"), DETECTOR,
            {**where, "count": len(missing), "keys": list(report.missing),
             "kinds": sorted({e.kind for e in missing})}))
    if mismatched:
        out.append(Finding(codes.REPLICA_OBJECT_MISMATCH, (
            f"{len(mismatched)} object(s) in {report.location} differ from the primary: "
            f"{mismatched[0]['key'].rsplit('/', 1)[-1]} has {mismatched[0]['reason']}"), DETECTOR,
            {**where, "count": len(mismatched), "objects": list(report.mismatched)}))
    lag = report.lag_seconds
    if lag is not None and lag > report.max_lag_seconds:
        out.append(Finding(codes.REPLICA_LAG, (
            f"the replica {report.location} is {human_duration(lag)} behind the primary "
            f"(limit {human_duration(report.max_lag_seconds)}): {len(behind)} WAL segment(s) from "
            f"{_name(behind[0])} on are only in the primary"), DETECTOR,
            {**where, "lag_seconds": round(lag, 1), "limit_seconds": report.max_lag_seconds,
             "unreplicated_segments": len(behind), "first_unreplicated": root + behind[0].rel,
             "replica_newest_segment": report.replica_newest_segment,
             "primary_newest_segment": report.primary_newest_segment}))
    return out


# -- reading the replica ---------------------------------------------------------------------

def not_compared(target: ReplicaTarget, reason: str) -> ReplicaReport:
    """The replica part of an audit whose primary could not be read (its S3_ACCESS_ERROR says why)."""
    return ReplicaReport(target.location.url, False, endpoint_url=getattr(target.store, "endpoint_url", None),
                         max_lag_seconds=target.max_lag_seconds, error=f"not compared: {reason}",
                         notes=target.notes)


class UnavailableStore:
    """Stands for a replica store that could not even be created: every read fails with ``message``."""

    def __init__(self, message: str, endpoint_url: str | None = None):
        self.message, self.endpoint_url = message, endpoint_url

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        raise S3Error(self.message)

    def get(self, key: str) -> bytes:
        raise S3Error(self.message)


def unverified_replica(location: str, message: str, endpoint_url: str | None = None,
                       notes: tuple[str, ...] = ()) -> tuple[ReplicaReport, list[Finding]]:
    """The replica could not be read: ``REPLICA_ACCESS_ERROR`` (exit 2 unless something alerts)."""
    return (ReplicaReport(location, False, endpoint_url=endpoint_url, error=message, notes=notes),
            [Finding(codes.REPLICA_ACCESS_ERROR, message, DETECTOR, {"location": location})])


def audit_replica(primary: ArchiveCatalog, primary_listing: Sequence[ObjectInfo], report: AuditReport,
                  target: ReplicaTarget, now: datetime) -> tuple[ReplicaReport, list[Finding]]:
    """Read the replica (one listing, then its backup.info and .history objects) and compare it
    with the newest consistent backup of the primary's ``report`` and its WAL chain."""
    location, url = target.location, target.location.url
    endpoint = getattr(target.store, "endpoint_url", None)
    recorder = ListingRecorder(target.store)
    try:
        replica_meta = read_catalog(recorder, location.prefix + "/", location.prefix.rsplit("/", 1)[-1],
                                    primary.archive.segment_size)
    except S3Error as exc:
        return unverified_replica(url, str(exc), endpoint, target.notes)
    notes = target.notes + (() if recorder.objects else (f"nothing under {url}: wrong prefix or serverName?",))
    backup_id = newest_consistent(report)
    if backup_id is None:
        # Nothing to compare against.  Not healthy: the primary's own findings (no completed or no
        # consistent backup: BACKUP_STALE, BACKUP_NOT_CONSISTENT, BACKUP_WAL_PENDING, or
        # METADATA_UNREADABLE) already make the audit exit 1 or 2.
        return ReplicaReport(url, False, endpoint_url=endpoint, max_lag_seconds=target.max_lag_seconds,
                             objects_listed=replica_meta.objects_listed,
                             error="the primary has no consistent base backup to compare with",
                             notes=notes), []
    expected = expected_objects(primary, primary_listing, backup_id)
    replica, findings = compare_replica(expected, recorder.objects, replica_meta.archive.root, now,
                                        target.max_lag_seconds, location=url, backup_id=backup_id,
                                        endpoint_url=endpoint, compare_etags=target.compare_etags)
    # A recovery from the replica GETs backup.info and the histories: one that is there with the
    # right size but cannot be read (a key allowed to list, not to read) leaves it unverified.
    needed = {replica_meta.archive.root + e.rel for e in expected}
    unread = [p for p in replica_meta.problems if p.key in needed]
    if unread:
        message = f"cannot read {unread[0].key} from the replica: {unread[0].reason}"
        findings.append(Finding(codes.REPLICA_ACCESS_ERROR, message, DETECTOR,
                                {"location": url, "keys": [p.key for p in unread[:MAX_LISTED]]}))
        replica = replace(replica, verified=False, error=message)
    return replace(replica, notes=notes), findings
