"""The one interface every backend (local, kind, k8s) implements.

The drill runner only speaks this protocol, so scenarios run unchanged on every backend.
All backends keep CNPG's object layout under ``destination``:
``<prefix>/<serverName>/base/<backup_id>/`` and ``<prefix>/<serverName>/wals/<16 hex>/<segment>``.

Optional capabilities are Protocols too, probed with ``isinstance`` (never ``hasattr``):
``FailoverBackend``, ``ObjectStoreOutage``, ``RetentionBackend``, ``KeepInfo`` and
``IntegrityToolsProvider``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pgdrill.archive.store import ObjectStore, S3Location
from pgdrill.postgres.wal import Lsn


@dataclass
class ClusterHandle:
    """A PostgreSQL cluster a backend created (source or recovered)."""

    name: str
    server_name: str
    archiving: bool
    details: dict[str, Any] = field(default_factory=dict)
    """Backend-specific facts for reports and --keep (data dir, port, namespace...)."""


@dataclass(frozen=True)
class RecoveryTarget:
    """What to recover to; ``None`` fields mean "latest" (end of the archive)."""

    lsn: Lsn | None = None
    time: str | None = None
    name: str | None = None
    backup_id: str | None = None


@dataclass
class RecoveryOutcome:
    """What happened when a backend tried to bring a recovered cluster up."""

    cluster: ClusterHandle | None
    promoted: bool
    """True when the cluster left recovery and accepted a write."""
    backup_id: str | None
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds per phase, e.g. restore, replay, promote (sums to ``total``)."""
    total: float | None = None
    fork_lsn: Lsn | None = None
    """Where the new timeline branched off (from its .history file)."""
    timeline: int | None = None
    fatal_lines: list[str] = field(default_factory=list)
    log_excerpt: list[str] = field(default_factory=list)
    restored_segments: list[str] = field(default_factory=list)
    """WAL segment names the restore_command fetched, in order."""
    wal_fetch: dict[str, int] | None = None
    """What the parallel WAL fetch did (``wal.maxParallel`` > 1: requests served from its spool,
    fetched on demand, prefetched); None for one plain barman-cloud-wal-restore per segment."""
    failed_step: str | None = None
    """Where a failed recovery stopped: ``preflight`` (backup/begin WAL checks), ``restore``
    (the base backup could not be restored), ``replay`` (PostgreSQL did not promote) or ``timeout``
    (pgdrill's own wait ran out: nothing is known, so it is could-not-verify, not a failure)."""


@runtime_checkable
class Backend(Protocol):
    name: str

    @property
    def destination(self) -> S3Location:
        """Where this run's archives live (``s3://bucket/<prefix>/<run id>``)."""

    @property
    def store(self) -> ObjectStore:
        """Read/write access to the drill's bucket (fault injection only touches ``destination``)."""

    def versions(self) -> dict[str, str]:
        """Component versions for reports (PostgreSQL, barman, CNPG, plugin...)."""

    def create_source(self, name: str, archive_timeout_seconds: int | None = None) -> ClusterHandle:
        """Provision a primary archiving WAL to ``destination``/<name>.

        ``archive_timeout_seconds`` overrides the configured value for this cluster.

        Must refuse (``UsageError``) if that serverName already has WAL ("Expected empty archive").
        """

    def sql(self, cluster: ClusterHandle, query: str, params: tuple[Any, ...] = (),
            dbname: str = "postgres", user: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit and return its rows (empty for no result)."""

    def connect(self, cluster: ClusterHandle, dbname: str = "postgres", user: str = "postgres") -> Any:
        """An open psycopg connection in autocommit; the caller closes it.  The ledger writer
        keeps one per cluster, so each write and its follow-up read share a session."""

    def run_script(self, cluster: ClusterHandle, script: str, dbname: str = "postgres") -> None:
        """Run a SQL script (fixtures)."""

    def take_backup(self, cluster: ClusterHandle) -> str:
        """Take a base backup the way the CNPG plugin does; return the backup id."""

    def wait_archived(self, cluster: ClusterHandle, segment: str, timeout: float = 60.0) -> None:
        """Block until ``segment`` is archived (``pg_stat_archiver.last_archived_wal``)."""

    def lose(self, cluster: ClusterHandle, destroy_data: bool) -> None:
        """The disaster: stop the cluster hard; with ``destroy_data`` its storage is gone too."""

    def next_recovery_name(self, source_name: str) -> str:
        """``<source>-vN`` with the lowest N >= 2 not used by a cluster or a serverName."""

    def recover(self, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
                archive: bool = True) -> RecoveryOutcome:
        """Recover ``source``'s archive into a new cluster, like CNPG's ``bootstrap.recovery``.

        With ``archive`` the new cluster archives to its *own* serverName (``new_name``).
        """

    def destroy(self, cluster: ClusterHandle) -> None:
        """Remove a cluster this run created (processes, storage)."""

    def close(self) -> None:
        """Release everything this backend started; idempotent."""


@runtime_checkable
class FailoverBackend(Backend, Protocol):
    """Optional: backends that can run node-level faults (kill the primary, fail over, crash-restart).

    Kept separate from ``Backend`` so a backend can run every archive/recovery drill before it
    implements these.  Drills check ``isinstance(backend, FailoverBackend)`` and report
    "not run" otherwise.  Every method waits by polling the server, never by trusting a
    tool's exit code (``pg_ctl -w`` returns 0 for servers that die a second later).
    """

    def create_replica(self, primary: ClusterHandle, name: str) -> ClusterHandle:
        """An asynchronous streaming replica of ``primary``, like a CNPG replica instance.

        Same serverName and archive settings as the primary: it archives nothing while it is a
        standby (``archive_mode = on``) and archives to the cluster's serverName once promoted.
        Returns once the replica streams from the primary.
        """

    def kill_primary(self, cluster: ClusterHandle) -> None:
        """SIGKILL the postmaster (a node that vanishes); its data directory stays."""

    def promote(self, cluster: ClusterHandle) -> RecoveryOutcome:
        """Promote a replica; ``promoted`` once ``pg_is_in_recovery()`` is false.

        ``phases["promote"]`` is the promote request → out of recovery; ``timeline`` and
        ``fork_lsn`` come from the new timeline's history file.
        """

    def restart_after_crash(self, cluster: ClusterHandle) -> RecoveryOutcome:
        """Start a killed cluster on its own data directory (crash recovery).

        ``promoted`` once it accepts connections out of recovery; phases ``start`` and
        ``crash_recovery``.
        """


# -- optional capabilities -------------------------------------------------------------------
# Each is a small runtime-checkable Protocol on its own (not a ``Backend`` subclass), so a
# backend offers it by having the method and callers probe it with ``isinstance``.


@runtime_checkable
class ObjectStoreOutage(Protocol):
    """Optional: backends that can take their (own, embedded) object store down and back up
    (the ``s3_outage`` fault).  Both directions return once the store is down / serving again;
    a backend whose object store is not its own refuses with ``UsageError``."""

    def set_object_store_available(self, available: bool) -> None: ...


@runtime_checkable
class RetentionBackend(Protocol):
    """Optional: apply a barman retention policy (e.g. ``"1d"``) to one serverName of this run."""

    def apply_retention(self, server_name: str, policy: str) -> list[str]:
        """Return the backup ids the policy removed."""


@runtime_checkable
class KeepInfo(Protocol):
    """Optional: what ``--keep`` left behind (directories, namespaces...), for the result."""

    def keep_info(self) -> dict[str, Any]: ...


class ToolRunLike(Protocol):
    """One run of a client tool (pg_checksums, pg_amcheck)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class ToolRun:
    """What a backend's integrity tools return for one run of a client tool."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    restart_seconds: float = 0.0
    """Time spent stopping and starting the cluster around an offline tool."""


class NotApplicable(Exception):
    """A check that does not apply on this backend (not a failure to run it); ``str()`` says why."""


class IntegrityTools(Protocol):
    """What the integrity detectors need from a backend (``LocalIntegrityTools`` and
    ``KubernetesIntegrityTools`` offer it).  ``pg_checksums`` raises ``NotApplicable`` where the
    data directory is out of reach; any other exception means the tool could not run."""

    def connect(self, cluster: ClusterHandle, dbname: str) -> Any: ...

    def pg_checksums(self, cluster: ClusterHandle) -> ToolRunLike: ...

    def pg_amcheck(self, cluster: ClusterHandle) -> ToolRunLike: ...


@runtime_checkable
class IntegrityToolsProvider(Protocol):
    """Optional: connections and pg_checksums/pg_amcheck access to this backend's clusters
    (``None``: none yet, the integrity detectors then report COULD_NOT_VERIFY)."""

    def integrity_tools(self) -> IntegrityTools | None: ...
