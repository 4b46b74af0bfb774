"""The local backend's hands for the integrity detectors (issue 9): connections, pg_checksums,
pg_amcheck.  Kept apart from ``backend.py`` so the backend's own surface does not grow.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Protocol

from pgdrill.backends.base import ClusterHandle, ToolRun
from pgdrill.backends.local.postgres import Instance, pg_bin_dir
from pgdrill.errors import CouldNotVerify


class LocalNodes(Protocol):
    """What the tools need: the local backend, or a restore-test's workspace."""

    @property
    def environment(self) -> dict[str, str]: ...

    def node(self, cluster: ClusterHandle) -> Instance: ...


class LocalIntegrityTools:
    def __init__(self, backend: LocalNodes):
        self.backend = backend

    def connect(self, cluster: ClusterHandle, dbname: str) -> Any:
        return self.backend.node(cluster).connect(dbname, timeout=10)

    def pg_checksums(self, cluster: ClusterHandle) -> ToolRun:
        """``pg_checksums --check`` needs a cleanly shut down data directory: stop (fast, i.e. with a
        checkpoint, so the files hold every replayed page), check, start again."""
        instance = self.backend.node(cluster)
        begun = time.monotonic()
        instance.stop("fast")
        if instance.alive():
            raise CouldNotVerify(f"{cluster.name} did not stop, so pg_checksums cannot run")
        stopped = time.monotonic()
        argv = [str((instance.bin_dir or pg_bin_dir()) / "pg_checksums"), "--check", "-D", str(instance.pgdata)]
        try:
            result = instance.user.run(argv, instance.env, instance.cwd, timeout=3600)
        finally:
            checked = time.monotonic()
            instance.start()
            instance.wait_ready()
        return ToolRun(argv, result.returncode, result.stdout, result.stderr, checked - stopped,
                       (stopped - begun) + (time.monotonic() - checked))

    def pg_amcheck(self, cluster: ClusterHandle, jobs: int | None = None) -> ToolRun:
        """Every table (incl. TOAST) and B-tree of every connectable database, heapallindexed.
        ``--install-missing`` creates the amcheck extension where it is absent (a catalog write
        on the recovered cluster, never on the source)."""
        instance = self.backend.node(cluster)
        jobs = jobs or max(1, min(4, os.cpu_count() or 1))
        argv = [str((instance.bin_dir or pg_bin_dir()) / "pg_amcheck"), "-h", "127.0.0.1", "-p", str(instance.port), "-U", "postgres",
                "--all", "--heapallindexed", "--install-missing", "-w", "-j", str(jobs)]
        begun = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=self.backend.environment,
                                stdin=subprocess.DEVNULL)
        return ToolRun(argv, result.returncode, result.stdout, result.stderr, time.monotonic() - begun)
