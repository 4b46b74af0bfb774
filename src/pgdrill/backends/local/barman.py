"""barman-cloud command lines, built the way the CNPG barman-cloud plugin builds them.

Facts carried over from cloudnative-pg/barman-cloud (pkg/archiver/command.go,
pkg/backup/backup.go): WAL archive = ``[--<wal compression>] --endpoint-url URL
--cloud-provider aws-s3 <destinationPath> <serverName> <wal path>``; backup =
``-U postgres -n <name> [--<data compression>] [--immediate-checkpoint] --endpoint-url URL
--cloud-provider aws-s3 <destinationPath> <serverName>``.  No credentials in argv: they
reach the tools through the environment.
"""

from __future__ import annotations

import shlex
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from pgdrill.errors import UsageError

# The walfetch spool, relative to the data directory (PostgreSQL's working directory).
WAL_RESTORE_SPOOL = "../wal-restore-spool"
_COMPRESSION_FLAG = {"gzip": "--gzip", "bzip2": "--bzip2", "snappy": "--snappy", "lz4": "--lz4"}


def tools_dir() -> Path:
    """Where ``barman-cloud-*`` live, resolved so another OS user is not sent through a symlink
    into root's home (the pitfall that makes archive_command exit 126)."""
    for candidate in (Path(sysconfig.get_path("scripts")), Path(sys.prefix) / "bin"):
        if (candidate / "barman-cloud-wal-archive").is_file():
            return candidate.resolve()
    raise UsageError("barman-cloud tools not found: install the local extra (pip install 'pgdrill[local]')")


@dataclass(frozen=True)
class BarmanCloud:
    """Commands for one destination (``s3://bucket/prefix``) on one endpoint."""

    destination: str
    endpoint_url: str | None
    wal_compression: str = "gzip"
    data_compression: str = "none"
    bin_dir: Path | None = None
    wal_max_parallel: int = 1
    """The ObjectStore's ``wal.maxParallel``: > 1 makes ``restore_command`` the walfetch program."""
    segment_size: int = 16 * 1024 * 1024
    """The cluster's WAL segment size in bytes: walfetch computes the next segment names with it."""
    walfetch_script: Path | None = None
    """A copy of ``walfetch.py`` the postgres OS user can read (``walfetch.install``); required
    when ``wal_max_parallel`` > 1."""

    def _tool(self, name: str) -> str:
        return str((self.bin_dir or tools_dir()) / name)

    def _common(self) -> list[str]:
        options = ["--cloud-provider", "aws-s3"]
        if self.endpoint_url:
            options += ["--endpoint-url", self.endpoint_url]
        return options

    def wal_archive(self, server_name: str, wal_path: str) -> list[str]:
        options = []
        if self.wal_compression in _COMPRESSION_FLAG:
            options.append(_COMPRESSION_FLAG[self.wal_compression])
        return [self._tool("barman-cloud-wal-archive"), *options, *self._common(),
                self.destination, server_name, wal_path]

    def wal_restore(self, server_name: str, wal_name: str, dest_path: str) -> list[str]:
        return [self._tool("barman-cloud-wal-restore"), *self._common(),
                self.destination, server_name, wal_name, dest_path]

    def backup(self, server_name: str, backup_name: str, host: str, port: int) -> list[str]:
        options = ["-U", "postgres", "-n", backup_name, "-h", host, "-p", str(port), "-d", "postgres"]
        if self.data_compression in _COMPRESSION_FLAG:
            options.append(_COMPRESSION_FLAG[self.data_compression])
        # The plugin passes --immediate-checkpoint only when configured; drills want
        # the backup now rather than at the next scheduled checkpoint.
        options.append("--immediate-checkpoint")
        return [self._tool("barman-cloud-backup"), *options, *self._common(), self.destination, server_name]

    def restore(self, server_name: str, backup_id: str, pgdata: str) -> list[str]:
        return [self._tool("barman-cloud-restore"), *self._common(), self.destination, server_name,
                backup_id, pgdata]

    def backup_delete(self, server_name: str, retention_policy: str) -> list[str]:
        return [self._tool("barman-cloud-backup-delete"), *self._common(), "-r", retention_policy,
                self.destination, server_name]

    def check_wal_archive(self, server_name: str) -> list[str]:
        return [self._tool("barman-cloud-check-wal-archive"), *self._common(), self.destination, server_name]

    def archive_command(self, server_name: str) -> str:
        """The ``archive_command`` setting: PostgreSQL substitutes %p."""
        return " ".join(shlex.quote(a) for a in self.wal_archive(server_name, "__P__")).replace("__P__", "%p")

    def restore_command(self, server_name: str, spool_dir: str = WAL_RESTORE_SPOOL) -> str:
        """The ``restore_command`` setting: PostgreSQL substitutes %f and %p.

        With ``wal_max_parallel`` 1 it is the plain ``barman-cloud-wal-restore``, exactly what
        drills have always run; above 1 it is ``walfetch`` (the plugin's parallel fetch) around
        the same command.  ``spool_dir`` is relative to the data directory, where PostgreSQL runs
        the command: the default puts it next to PGDATA, in the instance's private directory
        (the plugin's is ``/controller/wal-restore-spool``, outside PGDATA too, so a later base
        backup of the recovered cluster never carries prefetched WAL).
        """
        if self.wal_max_parallel <= 1:
            argv = self.wal_restore(server_name, "__F__", "__P__")
        else:
            wal_restore = self.wal_restore(server_name, "", "")[:-2]
            # The venv's own interpreter (not resolved: a venv python is a symlink whose target
            # would lose the venv's site-packages); -P keeps the data directory off sys.path.
            python = str((self.bin_dir or tools_dir()) / "python3")
            if self.walfetch_script is None:
                raise ValueError("wal_max_parallel > 1 needs walfetch_script (walfetch.install): the postgres OS "
                                 "user may not be able to import pgdrill itself")
            argv = [python, "-P", str(self.walfetch_script),
                    "--max-parallel", str(self.wal_max_parallel), "--segment-size", str(self.segment_size),
                    "--spool", spool_dir, "__F__", "__P__", "--", *wal_restore]
        return " ".join(shlex.quote(a) for a in argv).replace("__F__", "%f").replace("__P__", "%p")
