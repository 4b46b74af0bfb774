"""Where a local restore-test runs: its own run directory and ``RunScope`` (every process it
starts is recorded and released on exit, failure or Ctrl-C, as for drills), the unprivileged
OS user PostgreSQL runs as, and barman-cloud pointed at the *source* archive with the
read-only credentials the user named.

Nothing here writes to S3: ``barman-cloud-restore`` and ``barman-cloud-wal-restore`` only
read, and every restored instance runs with ``archive_mode = off``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pgdrill.archive.store import S3Credentials
from pgdrill.backends.base import ClusterHandle
from pgdrill.backends.local.barman import BarmanCloud, tools_dir
from pgdrill.backends.local.integrity_tools import LocalIntegrityTools
from pgdrill.backends.local.postgres import Instance
from pgdrill.backends.local.runas import deferred_interrupts
from pgdrill.backends.local.rundir import new_instance, open_run_dir
from pgdrill.backends.local.walfetch import install
from pgdrill.config import Config
from pgdrill.errors import UsageError


class RestoreWorkspace:
    def __init__(self, config: Config, run_id: str, destination: str, endpoint_url: str | None,
                 credentials: S3Credentials, bin_dir: Path, keep: bool = False, wal_max_parallel: int = 1,
                 segment_size: int = 16 << 20):
        """:param destination: ``s3://bucket/prefix`` of the source (without the serverName)"""
        self.keep = keep
        self.bin_dir = bin_dir
        self.run_dir, self.scope, self.user = open_run_dir(config.local.os_user, config.local.workdir, run_id)
        self.leftovers: list[str] = []
        self._nodes: dict[str, Instance] = {}
        self._closed = False
        try:
            self.tmp_dir = self.scope.make_tmp(self.user.uid, self.user.gid)
            # wal_max_parallel > 1: restore_command fetches ahead into a spool, as the plugin does.
            script = install(self.run_dir / "bin", self.user.uid, self.user.gid) if wal_max_parallel > 1 else None
            self.barman = BarmanCloud(destination, endpoint_url, bin_dir=tools_dir(),
                                      wal_max_parallel=wal_max_parallel, segment_size=segment_size,
                                      walfetch_script=script)
            self.environment = self._environment(credentials)
            problem = self.user.can_execute(tools_dir() / "barman-cloud-restore", self.environment, self.run_dir)
            if problem:
                raise UsageError(f"OS user {self.user.name!r} cannot run barman-cloud from {tools_dir()} "
                                 f"({problem}); install pgdrill with ./scripts/bootstrap")
        except BaseException:
            self.close()
            raise

    def _environment(self, credentials: S3Credentials) -> dict[str, str]:
        home = self.user.own(self.run_dir / "tmp", 0o700)
        path = os.pathsep.join([str(self.bin_dir), str(tools_dir()), "/usr/local/bin", "/usr/bin", "/bin"])
        return {"PATH": path, "HOME": str(home), "TMPDIR": str(self.tmp_dir), "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **credentials.as_environment()}

    def new_instance(self, name: str) -> Instance:
        instance = new_instance(self.run_dir, self.tmp_dir, self.user, self.environment, name, self.bin_dir)
        self._nodes[name] = instance
        return instance

    def node(self, cluster: ClusterHandle) -> Instance:
        return self._nodes[cluster.name]

    def integrity_tools(self) -> LocalIntegrityTools:
        return LocalIntegrityTools(self)

    def discard(self, instance: Instance, force: bool = False) -> None:
        """Stop and remove one instance: the restored cluster at the end (kept with ``keep``), a
        failed attempt or the target check's second restore (``force``: always)."""
        if self.keep and not force:
            return
        instance.track()
        instance.stop("immediate")
        self._nodes.pop(instance.name, None)
        shutil.rmtree(instance.cwd, ignore_errors=True)
        shutil.rmtree(instance.socket_dir, ignore_errors=True)

    def disk_free(self) -> int:
        return shutil.disk_usage(self.run_dir).free

    def close(self) -> None:
        """Release every process group, directory and socket of the run (unless ``keep``)."""
        if self._closed:
            return
        self._closed = True
        if self.keep:
            self.scope.kept = True
            return
        with deferred_interrupts():
            for instance in list(self._nodes.values()):
                try:
                    instance.track()
                except Exception:  # keep releasing the rest
                    pass
            self.leftovers = self.scope.release().left

    def keep_info(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "socket_dir": str(self.tmp_dir),
                "clusters": {name: {"pgdata": str(i.pgdata), "port": i.port, "log": str(i.log_file),
                                    "connect": f"psql -h 127.0.0.1 -p {i.port} -U postgres"}
                             for name, i in self._nodes.items()}}
