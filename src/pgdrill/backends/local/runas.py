"""Processes of a local run: each in a process group of its own, as the PostgreSQL OS user when
pgdrill is root.

PostgreSQL refuses to run as root.  Instead of ``runuser`` (which resets the environment and
PATH), pgdrill forks with ``subprocess``'s ``user=``/``group=``, so the child gets exactly the
environment pgdrill hands it, credentials included, and nothing has to be written to disk or put
in argv.

Every child starts a session of its own (``ProcessGroups.spawn``), so a terminal's Ctrl-C reaches
pgdrill alone and pgdrill stops each group whole: barman-cloud's multiprocessing workers, which
outlive their parent with ppid 1, included.  A process belongs to the groups when its process
group is recorded and the group's leader is still the recorded process (same start time from
``/proc/<pid>/stat``), or when it started after its group (or the run) and works inside the run's
directories; never by its name.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdrill.errors import UsageError

log = logging.getLogger("pgdrill.local")

# -- processes, from /proc -----------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks since boot) of ``pid``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[2] if stat else None


def running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _all() -> Iterator[tuple[int, int, int]]:
    """(pid, process group, start time) of every live (non-zombie) process."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat and stat[0] not in ("Z", "X"):
                yield int(entry.name), stat[1], stat[2]


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)"))
    except OSError:
        return None


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# -- signals while stopping ----------------------------------------------------------------

@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while a run is released (a second Ctrl-C must not leave it
    half released); one that came is raised as KeyboardInterrupt once the release is done."""
    pending: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, lambda s, f: pending.append(s))
    except ValueError:  # not the main thread: signals go to the main thread anyway
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if pending and sys.exc_info()[0] is None:
            raise KeyboardInterrupt(f"signal {pending[0]}")


# -- process groups ------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    pgid: int
    started: int
    """Start time of its leader: a recorded pgid whose leader has another start time was reused."""
    what: str
    stop_signal: int = signal.SIGTERM
    """Sent to the leader first (a postmaster: SIGQUIT, PostgreSQL's immediate shutdown)."""


@dataclass
class ProcessGroups:
    """The process groups one run started (``pgdrill.cleanup.RunScope`` adds its directory and record)."""

    uid: int | None = None
    """The OS user PostgreSQL and barman-cloud run as (None: unknown)."""
    started: int = 0
    """Start time of the run's owner: a process that started before it is never the run's."""
    groups: dict[int, Group] = field(default_factory=dict)
    ports: set[int] = field(default_factory=set)
    """TCP ports of the servers it started (SeaweedFS names its /tmp sockets after them)."""
    shm: dict[int, int] = field(default_factory=dict)
    """shmid -> key of each postmaster's SysV segment (a SIGKILLed one leaves it behind)."""

    def roots(self) -> list[Path]:
        """Directories whose processes are the run's (none without a run directory)."""
        return []

    def _append(self, *lines: str) -> None:
        """Record lines (a run's ``run.record``); nothing without a run directory."""

    def add_group(self, pgid: int, what: str, stop_signal: int = signal.SIGTERM) -> None:
        started = start_time(pgid)
        if started is None or (pgid in self.groups and self.groups[pgid].started == started):
            return
        self.groups[pgid] = Group(pgid, started, what, stop_signal)
        self._append(f"group {pgid} {started} {int(stop_signal)} {what}")

    def add_ports(self, ports: Sequence[int]) -> None:
        new = sorted(set(ports) - self.ports)
        if new:
            self.ports.update(new)
            self._append("ports " + " ".join(map(str, new)))

    def add_shm(self, key: int, shmid: int) -> None:
        if self.shm.get(shmid) != key:
            self.shm[shmid] = key
            self._append(f"shm {key} {shmid}")

    def spawn(self, argv: Sequence[str], what: str | None = None, stop_signal: int = signal.SIGTERM,
              **popen: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in a session of its own and record its process group."""
        with deferred_interrupts():
            process = subprocess.Popen(list(argv), start_new_session=True, **popen)
            self.add_group(process.pid, what or Path(argv[0]).name, stop_signal)
        return process

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float | None = None,
            **popen: Any) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run(capture_output=True, text=True)``, in a process group of its own
        that is killed whole (children and orphans too) on a timeout, an exception or an interrupt."""
        process = self.spawn(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        try:
            out, err = process.communicate(input, timeout=timeout)
        except BaseException:
            with deferred_interrupts():
                self.terminate(grace=2.0, pgids={process.pid})
                process.kill()
                for stream in (process.stdin, process.stdout, process.stderr):
                    if stream:
                        stream.close()
                process.wait()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def processes(self, pgids: set[int] | None = None) -> dict[int, tuple[int, str]]:
        """pid -> (process group, what) of every live process of this run.  PostgreSQL's backends
        are group leaders of their own (each calls setsid), so a SIGKILLed postmaster's orphans
        are found by working inside the run's directories, as the run's OS user."""
        me, roots = os.getpid(), self.roots()
        verified = {g.pgid for g in self.groups.values() if start_time(g.pgid) == g.started}
        found = {}
        for pid, pgrp, started in _all():
            if pid == me or (pgids is not None and pgrp not in pgids):
                continue
            group = self.groups.get(pgrp)
            if group is not None and pgrp in verified:
                found[pid] = (pgrp, group.what)
                continue
            if started < (group.started if group else self.started):
                continue
            if group is None and self.uid is not None and _uid(pid) != self.uid:
                continue
            cwd = _cwd(pid)
            if cwd is not None and any(cwd == r or r in cwd.parents for r in roots):
                found[pid] = (pgrp, group.what if group else f"working in {cwd}")
        return found

    def terminate(self, grace: float = 5.0, pgids: set[int] | None = None) -> list[str]:
        """Stop every process of the run (or of ``pgids``): each group's first signal (a
        postmaster's immediate shutdown; SIGTERM otherwise), then SIGKILL for what outlives
        ``grace`` or its postmaster.  Returns what was stopped."""
        procs = self.processes(pgids)
        stopped = [f"{pid} ({what})" for pid, (_, what) in sorted(procs.items())]
        special = {g.pgid for g in self.groups.values() if g.stop_signal != signal.SIGTERM}
        for pid, (pgrp, _) in procs.items():
            if pgrp not in special:
                _kill(pid, signal.SIGTERM)
            elif pid == pgrp:
                _kill(pid, self.groups[pgrp].stop_signal)
        for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            deadline = time.monotonic() + wait
            while procs and time.monotonic() < deadline:
                time.sleep(0.05)
                procs = self.processes(pgids)
                for pid, (pgrp, _) in procs.items():
                    if signum == signal.SIGKILL or (pgrp in special and not running(pgrp)):
                        _kill(pid, signal.SIGKILL)  # a postmaster's orphans once it is gone
            if procs:
                log.debug("still running %.1fs after %s: %s", wait, signum.name, procs)
            for pid in procs:
                _kill(pid, signal.SIGKILL)
        return stopped


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int
    switch: bool
    """True when pgdrill runs as root and must drop to this user for PostgreSQL work."""
    scope: ProcessGroups = field(default_factory=ProcessGroups, compare=False, repr=False)
    """Where every process this user starts is recorded (a backend's ``RunScope``)."""

    @classmethod
    def for_postgres(cls, wanted: str) -> OsUser:
        """The current user, or (as root) ``wanted``, created as a system user if missing."""
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, False)
        try:
            entry = pwd.getpwnam(wanted)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            result = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", wanted],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise UsageError(f"could not create OS user {wanted!r} for PostgreSQL "
                                 f"({result.stderr.strip()}); create it or set local.os_user") from None
            entry = pwd.getpwnam(wanted)
        if entry.pw_uid == 0:
            raise UsageError(f"local.os_user {wanted!r} is root; PostgreSQL refuses to run as root")
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, True)

    def popen_kwargs(self) -> dict[str, object]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path, mode: int = 0o700) -> Path:
        """Create ``path`` (if needed) owned by this user with ``mode``."""
        path.mkdir(parents=True, exist_ok=True)
        if self.switch:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def run(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
            timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = self.scope.run(argv, env=env, cwd=cwd, timeout=timeout, **self.popen_kwargs())
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv[:1], result.stdout, result.stderr)
        return result

    def can_execute(self, program: Path, env: dict[str, str], cwd: Path) -> str | None:
        """``None`` if this user can run ``program --version``; else the reason."""
        try:
            result = self.run([str(program), "--version"], env, cwd, timeout=60)
        except PermissionError as exc:
            return str(exc)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return lines[-1] if lines else f"exit {result.returncode}"
        return None
