"""The local backend: real PostgreSQL, real barman-cloud, a real S3 server, no containers.

Each run gets its own directory and its own S3 prefix (``<prefix>/<run id>``); pgdrill
only ever deletes inside those.  Everything the run starts, and the directory, temp dir,
shared memory and sockets it leaves, is recorded in its ``RunScope`` (``pgdrill.cleanup``):
``close`` releases all of it and checks by that record that nothing is left.  Recovery
(``recovery.py``) and the node-level faults (``replica.py``) are module functions over this
class's public methods; the server-log filters they share are in ``serverlog.py``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgdrill.archive.catalog import BaseBackup, ServerArchive, read_server_archive
from pgdrill.archive.store import ObjectStore, S3Credentials, S3Location
from pgdrill.backends.base import ClusterHandle, RecoveryOutcome, RecoveryTarget
from pgdrill.backends.local.barman import BarmanCloud, tools_dir
from pgdrill.backends.local.nodes import Node
from pgdrill.backends.local.postgres import Instance, pg_bin_dir
from pgdrill.backends.local.recovery import choose_backup
from pgdrill.backends.local.runas import deferred_interrupts
from pgdrill.backends.local.rundir import new_instance, open_run_dir
from pgdrill.backends.local.s3servers import make_s3_server
from pgdrill.backends.naming import next_recovery_name
from pgdrill.config import Config
from pgdrill.errors import CouldNotVerify, S3Error, UsageError
from pgdrill.postgres.wal import SegmentName

if TYPE_CHECKING:
    from pgdrill.backends.local.integrity_tools import LocalIntegrityTools
    from pgdrill.backends.local.s3servers import EmbeddedS3

log = logging.getLogger("pgdrill.local")


class LocalBackend:
    name = "local"

    def __init__(self, config: Config, run_id: str, keep: bool = False):
        self.config = config
        self.run_id = run_id
        self.keep = keep
        self.run_dir, self.scope, self.user = open_run_dir(config.local.os_user, config.local.workdir, run_id)
        self.leftovers: list[str] = []
        """What ``close`` found still there after releasing the run (empty: nothing)."""
        self._clusters: dict[str, Node] = {}
        self._s3_server: EmbeddedS3 | None = None
        self._closed = False
        try:
            # AF_UNIX sockets (barman-cloud's multiprocessing under TMPDIR, PostgreSQL's, weed's)
            # go to a short private dir: paths over 107 bytes fail, whatever the work dir is.
            self.tmp_dir = self.scope.make_tmp(self.user.uid, self.user.gid)
            self._setup_s3()
            self._env = self._postgres_environment()
            self._check_tools()
        except BaseException:
            self.close()
            raise

    # -- setup -----------------------------------------------------------------------

    def _setup_s3(self) -> None:
        s3 = self.config.s3
        if s3.mode != "external":
            # Assigned before it starts: close() must release what a failed start left.
            self._s3_server = make_s3_server(s3, self.run_dir / "s3", self.scope, self.tmp_dir,
                                             self.config.kubernetes.minio_image)
            self._s3_server.start()
            self.endpoint_url: str | None = self._s3_server.endpoint_url
            self.credentials = self._s3_server.admin.credentials
        else:
            self.endpoint_url = s3.endpoint_url
            self.credentials = S3Credentials.from_environment()
        self._store = ObjectStore(self.endpoint_url, self.credentials, s3.bucket)
        self._store.check_access()
        self._destination = S3Location(s3.bucket, "/".join(p for p in (s3.prefix.strip("/"), self.run_id) if p))
        if any(True for _ in self._store.list(self._destination.key() + "/")):
            raise UsageError(f"{self._destination.url} is not empty; pgdrill only writes to a fresh run prefix")
        self.barman = BarmanCloud(self._destination.url, self.endpoint_url,
                                  self.config.archive.wal_compression, self.config.archive.data_compression,
                                  tools_dir(), wal_max_parallel=self.config.archive.wal_max_parallel,
                                  segment_size=self.config.archive.segment_size_mb * 1024 * 1024,
                                  walfetch_script=self._walfetch())

    def _walfetch(self) -> Path | None:
        """The parallel WAL fetch, copied where the postgres OS user can run it (N > 1 only)."""
        if self.config.archive.wal_max_parallel <= 1:
            return None
        from pgdrill.backends.local.walfetch import install

        return install(self.run_dir / "bin", self.user.uid, self.user.gid)

    def _postgres_environment(self) -> dict[str, str]:
        home = self.user.own(self.run_dir / "tmp", 0o700)
        path = os.pathsep.join([str(pg_bin_dir()), str(tools_dir()),
                                "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        env = {"PATH": path, "HOME": str(home), "TMPDIR": str(self.tmp_dir), "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(self.credentials.as_environment())
        return env

    def _check_tools(self) -> None:
        problem = self.user.can_execute(Path(tools_dir()) / "barman-cloud-wal-archive", self._env, self.run_dir)
        if problem:
            raise UsageError(
                f"OS user {self.user.name!r} cannot run barman-cloud from {tools_dir()} ({problem}); "
                "install pgdrill into a virtualenv outside root's home, built from the system python3 "
                "(./scripts/bootstrap does this)")

    # -- Backend protocol --------------------------------------------------------------

    @property
    def destination(self) -> S3Location:
        return self._destination

    @property
    def store(self) -> ObjectStore:
        return self._store

    @property
    def s3_server(self) -> EmbeddedS3 | None:
        return self._s3_server

    def apply_retention(self, server_name: str, policy: str) -> list[str]:
        """``barman-cloud-backup-delete -r <policy>`` on one of this run's serverNames (as the
        plugin's retention does); returns the backup ids it removed."""
        # Counted by backup.info objects: SeaweedFS keeps emptied "folders" as common prefixes.
        before = {b.backup_id for b in self.read_archive(server_name)[1]}
        result = self.user.run(self.barman.backup_delete(server_name, policy), self._env, self.run_dir, timeout=600)
        if result.returncode != 0:
            raise CouldNotVerify(f"barman-cloud-backup-delete failed for {server_name}: "
                                 f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
        return sorted(before - {b.backup_id for b in self.read_archive(server_name)[1]})

    def set_object_store_available(self, available: bool) -> None:
        """The S3-outage fault: stop or restart the embedded S3 server (same ports, same data;
        SeaweedFS and moto both keep it across stop/start)."""
        if self._s3_server is None:
            raise UsageError("an S3 outage needs the embedded S3 server (s3.mode = 'embedded' or 'moto'); "
                             "pgdrill never takes an external endpoint down")
        if self.config.s3.mode == "minio":
            # A testcontainers stop removes the container and its data: no outage to recover from.
            raise UsageError("s3.mode = 'minio' cannot take MinIO down and bring it back (not implemented); "
                             "run the s3-outage drill with s3.mode = 'embedded' or 'moto'")
        if available:
            self._s3_server.start()
        else:
            self._s3_server.stop()

    def versions(self) -> dict[str, str]:
        versions = {}
        for key, argv in (("postgresql", [str(pg_bin_dir() / "postgres"), "--version"]),
                          ("barman", [str(tools_dir() / "barman-cloud-backup"), "--version"])):
            out = self.scope.run(argv, timeout=60)
            versions[key] = (out.stdout or out.stderr).strip().split()[-1] if (out.stdout or out.stderr) else "unknown"
        versions["s3"] = self._s3_server.version() if self._s3_server else f"external {self.endpoint_url}"
        return versions

    # -- nodes (what recovery.py, replica.py and integrity_tools.py build on) ----------

    @property
    def environment(self) -> dict[str, str]:
        """The environment every PostgreSQL and barman-cloud process of this run gets."""
        return self._env

    def new_instance(self, name: str) -> Instance:
        """A not yet initialised instance in its own directory, on a free port."""
        return new_instance(self.run_dir, self.tmp_dir, self.user, self._env, name)

    def add_node(self, handle: ClusterHandle, instance: Instance) -> None:
        """Track a node so ``node``, ``destroy`` and ``close`` know it."""
        if handle.name in self._clusters:
            raise UsageError(f"cluster {handle.name!r} already exists in this run")
        self._clusters[handle.name] = Node(handle, instance)

    def has_cluster(self, name: str) -> bool:
        return name in self._clusters

    def node(self, cluster: ClusterHandle) -> Instance:
        return self._clusters[cluster.name].instance

    def archive_settings(self, server_name: str | None) -> dict[str, str | int]:
        """The archiving part of a node's settings: barman-cloud into ``server_name``, or off."""
        if server_name is None:
            return {"archive_mode": "off"}
        return {"archive_mode": "on", "archive_command": self.barman.archive_command(server_name),
                "archive_timeout": self.config.archive.archive_timeout_seconds}

    def integrity_tools(self) -> LocalIntegrityTools:
        from pgdrill.backends.local.integrity_tools import LocalIntegrityTools

        return LocalIntegrityTools(self)

    def check_empty_archive(self, server_name: str) -> None:
        """CNPG's "Expected empty archive" pre-flight, with barman's own tool."""
        result = self.user.run(self.barman.check_wal_archive(server_name), self._env, self.run_dir, timeout=120)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            message = detail[-1] if detail else f"exit {result.returncode}"
            if "Expected empty archive" in message:
                raise UsageError(f"serverName {server_name!r} already has WAL in {self._destination.url} "
                                 "(Expected empty archive): use a new serverName; nothing was written")
            raise S3Error(f"barman-cloud-check-wal-archive failed for {server_name!r}: {message}")

    def create_source(self, name: str, archive_timeout_seconds: int | None = None) -> ClusterHandle:
        if name in self._clusters:
            raise UsageError(f"cluster {name!r} already exists in this run")
        self.check_empty_archive(name)
        instance = self.new_instance(name)
        instance.initdb(self.config.archive.segment_size_mb)
        settings = {**instance.base_settings(), **self.archive_settings(name)}
        if archive_timeout_seconds is not None:
            settings["archive_timeout"] = archive_timeout_seconds
        instance.write_settings(settings)
        instance.start()
        instance.wait_ready()
        handle = ClusterHandle(name, name, True, {"pgdata": str(instance.pgdata), "port": instance.port,
                                                  "log": str(instance.log_file)})
        self.add_node(handle, instance)
        return handle

    def sql(self, cluster: ClusterHandle, query: str, params: Any = (),
            dbname: str = "postgres", user: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        try:
            with self.node(cluster).connect(dbname, user) as conn:
                cur = conn.execute(query, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise CouldNotVerify(f"{cluster.name}: SQL failed in database {dbname!r}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None

    def connect(self, cluster: ClusterHandle, dbname: str = "postgres", user: str = "postgres") -> Any:
        """A psycopg connection in autocommit (the ledger writer keeps one open per cluster)."""
        import psycopg

        try:
            return self.node(cluster).connect(dbname, user)
        except psycopg.Error as exc:
            raise CouldNotVerify(f"{cluster.name}: cannot connect to {dbname!r}: "
                                 f"{str(exc).strip().splitlines()[0]}") from None

    def run_script(self, cluster: ClusterHandle, script: str, dbname: str = "postgres") -> None:
        """Through psql, so scripts may hold statements that refuse a transaction block."""
        instance = self.node(cluster)
        result = self.scope.run(
            [str(pg_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(instance.port), "-U", "postgres", "-d", dbname, "-f", "-"],
            input=script, timeout=600, env=self._env)
        if result.returncode != 0:
            raise CouldNotVerify(f"{cluster.name}: SQL script failed in {dbname!r}: "
                                 f"{result.stderr.strip().splitlines()[-1:] or result.returncode}")

    def take_backup(self, cluster: ClusterHandle) -> str:
        instance = self.node(cluster)
        before = set(self._backup_ids(cluster.server_name))
        name = f"pgdrill-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        result = self.user.run(self.barman.backup(cluster.server_name, name, "127.0.0.1", instance.port),
                               self._env, self.run_dir, timeout=3600)
        if result.returncode != 0:
            raise CouldNotVerify(f"barman-cloud-backup failed for {cluster.server_name}: "
                                 f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
        new = sorted(set(self._backup_ids(cluster.server_name)) - before)
        if len(new) != 1:
            raise CouldNotVerify(f"expected one new base backup for {cluster.server_name}, found {new}")
        return new[0]

    def _backup_ids(self, server_name: str) -> list[str]:
        root = self._destination.key(server_name, "base") + "/"
        return sorted({p[len(root):].strip("/") for p in self._store.list_prefixes(root)})

    def read_archive(self, server_name: str) -> tuple[ServerArchive, list[BaseBackup]]:
        archive, backups, _ = read_server_archive(self._store, self._destination.key(server_name),
                                                  server_name, self.config.archive.segment_size_mb * 1024 * 1024)
        return archive, backups

    def wait_archived(self, cluster: ClusterHandle, segment: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rows = self.sql(cluster, "SELECT last_archived_wal, failed_count, last_failed_wal FROM pg_stat_archiver")
            last = rows[0]
            if last[0] and last[0][:24] >= segment and SegmentName.parse(last[0][:24]).timeline >= \
                    SegmentName.parse(segment).timeline:
                return
            time.sleep(0.1)
        raise CouldNotVerify(f"{cluster.name}: WAL segment {segment} not archived after {timeout:.0f}s "
                             f"(pg_stat_archiver last={last[0] if last else None}, failed={last[1] if last else None})")

    def lose(self, cluster: ClusterHandle, destroy_data: bool) -> None:
        instance = self.node(cluster)
        instance.kill()
        if destroy_data:
            shutil.rmtree(instance.pgdata, ignore_errors=True)

    def next_recovery_name(self, source_name: str) -> str:
        used = set(self._clusters)
        used.update(p.rstrip("/").rsplit("/", 1)[-1]
                    for p in self._store.list_prefixes(self._destination.key() + "/"))
        return next_recovery_name(source_name, used)

    def recover(self, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
                archive: bool = True) -> RecoveryOutcome:
        from pgdrill.backends.local import recovery

        return recovery.recover(self, source, new_name, target, archive)

    def destroy(self, cluster: ClusterHandle) -> None:
        entry = self._clusters.pop(cluster.name, None)
        if entry is None:
            return
        entry.instance.track()
        entry.instance.stop("immediate")
        shutil.rmtree(self.run_dir / cluster.name, ignore_errors=True)
        shutil.rmtree(entry.instance.socket_dir, ignore_errors=True)

    def close(self) -> None:
        """Release the run (unless ``keep``): every process group it started, whole (SIGQUIT
        to postmasters, SIGTERM, then SIGKILL), the shared memory killed postmasters left, the
        sockets, the temp and run directories; then check by the record (``leftovers``)."""
        if self._closed:
            return
        self._closed = True
        if self.keep:
            self.scope.kept = True
            return
        with deferred_interrupts():
            for entry in list(self._clusters.values()):
                try:
                    entry.instance.track()  # a postmaster whose start was interrupted, its segment
                except Exception as exc:  # keep releasing the rest
                    log.warning("could not read %s's postmaster.pid: %s", entry.handle.name, exc)
            released = self.scope.release()
            if self._s3_server is not None:
                # SeaweedFS: already stopped, this reaps it and removes stale sockets.  moto and
                # MinIO hold data outside the run directory: close() releases it.
                getattr(self._s3_server, "close", self._s3_server.stop)()
            self.leftovers = released.left
            if self.leftovers:
                log.warning("left after releasing run %s: %s", self.run_id, "; ".join(self.leftovers))

    def keep_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"run_dir": str(self.run_dir), "socket_dir": str(self.tmp_dir),
                                "destination": self._destination.url,
                                "endpoint_url": self.endpoint_url,
                                "clusters": {n: c.handle.details for n, c in self._clusters.items()}}
        return info

    # -- FailoverBackend (node-level faults; implementation in replica.py) -------------

    def create_replica(self, primary: ClusterHandle, name: str) -> ClusterHandle:
        from pgdrill.backends.local import replica

        return replica.create_replica(self, primary, name, self.config.local.startup_timeout_seconds)

    def kill_primary(self, cluster: ClusterHandle) -> None:
        from pgdrill.backends.local import replica

        replica.kill_primary(self, cluster)

    def promote(self, cluster: ClusterHandle) -> RecoveryOutcome:
        from pgdrill.backends.local import replica

        return replica.promote(self, cluster, self.config.local.startup_timeout_seconds)

    def restart_after_crash(self, cluster: ClusterHandle) -> RecoveryOutcome:
        from pgdrill.backends.local import replica

        return replica.restart_after_crash(self, cluster, self.config.local.startup_timeout_seconds)


__all__ = ["LocalBackend", "choose_backup"]
