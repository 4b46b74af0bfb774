"""What a local run owns, and the reaper for what a killed run (``kill -9``, a lost CI runner) left.

A local run (``RunScope``) owns its directory ``pgdrill-<10 hex>`` under the work dir, a short
private temp dir ``/tmp/pgd-*`` (AF_UNIX socket paths are limited to 107 bytes, whatever the
work dir or TMPDIR), every process group it starts (each in its own session; a postmaster's group
is its pid), each postmaster's SysV shared-memory segment and the ports of its S3 server.

The live run holds ``run.lock`` (``flock`` on a descriptor kept for the run's lifetime) naming its
owner (pid and start time from ``/proc/<pid>/stat``), and appends what it starts to ``run.record``.
A process belongs to a run when its process group is recorded and the group's leader is still
the recorded process, or when it started after the run (or its group) and works inside the run's
directories; never by its name.  ``pgdrill clean`` touches only runs whose lock is free and
whose owner is provably dead, and removes only what their record names.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdrill.backends.local.runas import Group, ProcessGroups, start_time

LOCK, RECORD = "run.lock", "run.record"
_RUN_DIR = re.compile(r"^pgdrill-[0-9a-f]{10}$")
TMP_PREFIX = "pgd-"
SOCKET_PATH_MAX = 107
SOCKET_TAIL = 40
"""Room kept under the temp dir for socket names: multiprocessing's ``pymp-*/listener-*`` (32),
a node's ``<dir>/.s.PGSQL.<port>.lock``."""
_YOUNG_SECONDS = 60.0
"""A run directory without a lock file this young may be a run being created: left alone."""

_OPEN: list[RunScope] = []


# -- SysV shared memory and stale sockets --------------------------------------------------

def shm_segments() -> dict[int, tuple[int, int, int]]:
    """shmid -> (key, attached processes, owner uid), from /proc/sysvipc/shm."""
    found = {}
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return {}
    for line in lines:
        cols = line.split()
        found[int(cols[1])] = (int(cols[0]), int(cols[6]), int(cols[7]))
    return found


def weed_tmp_sockets(ports: Sequence[int], since: float) -> list[Path]:
    """SeaweedFS's gRPC sockets it always puts in /tmp (``/tmp/seaweedfs-<svc>-grpc-<port>.sock``),
    and the defaults of the ones pgdrill moves: only those named after ``ports`` and made at or
    after ``since`` (epoch seconds; an older one with the same port number is another run's)."""
    found: list[Path] = []
    for port in sorted(set(ports)):
        for path in sorted(Path("/tmp").glob(f"seaweedfs-*-{port}.sock")):
            try:
                if path.lstat().st_mtime >= since - 1:
                    found.append(path)
            except OSError:
                continue
    return found


def _stale(path: Path) -> bool:
    """A socket nothing listens on any more."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
        except OSError as exc:
            return exc.errno in (errno.ECONNREFUSED, errno.ENOENT)
    return False


def remove_stale_sockets(ports: Sequence[int], since: float) -> list[str]:
    removed = []
    for path in weed_tmp_sockets(ports, since):
        if _stale(path):
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed


# -- one run ------------------------------------------------------------------------------

@dataclass
class Released:
    stopped: list[str] = field(default_factory=list)
    shm: list[int] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


@dataclass
class RunScope(ProcessGroups):
    run_dir: Path | None = None
    owner: int | None = None
    tmp_dir: Path | None = None
    kept: bool = False
    released: bool = False
    lock_fd: int | None = None

    @classmethod
    def create(cls, run_dir: Path, uid: int) -> RunScope:
        """Make ``run_dir`` (it must not exist), take its lock and record the owner."""
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o755)
        run_dir.chmod(0o755)  # the PostgreSQL user must be able to traverse it
        me = os.getpid()
        scope = cls(uid, start_time(me) or 0, run_dir=run_dir, owner=me)
        scope.lock_fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(scope.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(scope.lock_fd, f"{me} {scope.started}\n".encode())
        scope._append(f"owner {me} {scope.started}", f"uid {uid}")
        _OPEN.append(scope)
        return scope

    @classmethod
    def load(cls, run_dir: Path) -> RunScope:
        """A run's record as written (a run directory without one: an older pgdrill's)."""
        scope = cls(run_dir=run_dir)
        try:
            lines = (run_dir / RECORD).read_text().splitlines()
        except OSError:
            return scope
        for line in lines:
            kind, _, rest = line.partition(" ")
            args = rest.split()
            try:
                if kind == "owner":
                    scope.owner, scope.started = int(args[0]), int(args[1])
                elif kind == "uid":
                    scope.uid = int(args[0])
                elif kind == "tmp" and Path(rest).name.startswith(TMP_PREFIX) and Path(rest).is_absolute():
                    scope.tmp_dir = Path(rest)
                elif kind == "group":
                    scope.groups[int(args[0])] = Group(int(args[0]), int(args[1]), " ".join(args[3:]), int(args[2]))
                elif kind == "shm":
                    scope.shm[int(args[1])] = int(args[0])
                elif kind == "ports":
                    scope.ports.update(int(a) for a in args)
            except (IndexError, ValueError):
                continue  # a line cut by the kill
        return scope

    def _append(self, *lines: str) -> None:
        if self.run_dir is None or not self.run_dir.is_dir():
            return
        with (self.run_dir / RECORD).open("a") as handle:
            handle.write("".join(line + "\n" for line in lines))

    # -- what the run starts -------------------------------------------------------------

    def make_tmp(self, uid: int, gid: int) -> Path:
        """The run's short private temp dir (mode 0700, owned by the PostgreSQL user)."""
        for parent in dict.fromkeys(("/tmp", tempfile.gettempdir())):
            if len(parent) + len(TMP_PREFIX) + 10 + SOCKET_TAIL > SOCKET_PATH_MAX:
                continue
            try:
                path = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent))
            except OSError:
                continue
            self.tmp_dir = path
            self._append(f"tmp {path}")
            if os.geteuid() == 0:
                os.chown(path, uid, gid)
            path.chmod(0o700)
            return path
        from pgdrill.errors import UsageError

        raise UsageError(f"no temp dir short enough for AF_UNIX socket paths (limit {SOCKET_PATH_MAX} bytes): "
                         "/tmp is not writable and TMPDIR is too long")

    # -- what is the run's, and letting it go ----------------------------------------------

    def roots(self) -> list[Path]:
        return [d for d in (self.run_dir, self.tmp_dir) if d is not None]

    def started_at(self) -> float:
        """The owner's start as epoch seconds (0 when unknown)."""
        if not self.started:
            return 0.0
        boot = next(ln.split()[1] for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        return float(boot) + self.started / os.sysconf("SC_CLK_TCK")

    def remove_shm(self) -> tuple[list[int], list[str]]:
        """Remove each recorded segment still there, with its key, owned by the run's user and
        attached to no process; returns (removed, left)."""
        removed, left = [], []
        for shmid, key in sorted(self.shm.items()):
            info = shm_segments().get(shmid)
            if info is None or info[0] != key or (self.uid is not None and info[2] != self.uid):
                continue  # gone, or another segment now has that id
            if info[1] != 0:
                left.append(f"shared memory segment {shmid} ({info[1]} attached)")
                continue
            as_user: dict[str, Any] = {"user": info[2]} if os.geteuid() == 0 and info[2] != 0 else {}
            try:
                result = subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, text=True,
                                        stdin=subprocess.DEVNULL, timeout=30, **as_user)
                problem = result.stderr.strip() if result.returncode else ""
            except (OSError, subprocess.SubprocessError) as exc:
                problem = str(exc)
            (left.append(f"shared memory segment {shmid} ({problem})") if problem else removed.append(shmid))
        return removed, left

    def leftovers(self) -> list[str]:
        """What of the run still exists: processes (by record), directories, segments, sockets."""
        left = [f"process {pid} ({what})" for pid, (_, what) in sorted(self.processes().items())]
        left += [f"directory {d}" for d in self.roots() if d.exists()]
        segments = shm_segments()
        left += [f"shared memory segment {i}" for i, key in sorted(self.shm.items())
                 if segments.get(i, (None,))[0] == key]
        left += [f"socket {p}" for p in weed_tmp_sockets(sorted(self.ports), self.started_at())]
        return left

    def release(self, grace: float = 5.0) -> Released:
        """Stop every process of the run, remove its segments, sockets and directories; check."""
        done = Released()
        done.stopped = self.terminate(grace)
        done.shm, shm_left = self.remove_shm()
        done.sockets = remove_stale_sockets(sorted(self.ports), self.started_at())
        for directory in self.roots():
            shutil.rmtree(directory, ignore_errors=True)
        left = self.leftovers()
        done.left = left + [s for s in shm_left if s.split(" (")[0] not in left]
        self.released = True
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        return done


def release_open_runs() -> tuple[list[str], list[str]]:
    """For the CLI after an interrupt: release what this process's runs still hold, then check
    them by their records.  Returns (what is left, run directories kept on purpose)."""
    left: list[str] = []
    kept = [str(s.run_dir) for s in _OPEN if s.kept]
    for scope in _OPEN:
        if scope.kept:
            continue
        left += scope.release().left if not scope.released else scope.leftovers()
    return left, kept


# -- pgdrill clean ----------------------------------------------------------------------------

def _owner(run_dir: Path) -> tuple[int, int] | None:
    try:
        pid, started = (run_dir / LOCK).read_text().split()[:2]
        return int(pid), int(started)
    except (OSError, ValueError):
        return None


def _clean_one(run_dir: Path, dry_run: bool) -> str:
    fd = None
    if (run_dir / LOCK).exists():
        try:
            fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # type: ignore[arg-type]
            owner = _owner(run_dir)
            return f"left alone: {run_dir} is a live run (owner pid {owner[0] if owner else '?'} holds its lock)"
        except OSError as exc:
            return f"left alone: {run_dir}: cannot take its lock ({exc.strerror})"
        owner = _owner(run_dir)
        if owner is not None and start_time(owner[0]) == owner[1]:
            os.close(fd)
            return f"left alone: {run_dir}: its owner (pid {owner[0]}) is still running"
        if owner is None and time.time() - run_dir.stat().st_mtime < _YOUNG_SECONDS:
            os.close(fd)
            return f"left alone: {run_dir} has no owner recorded yet (a run may be starting)"
        who = f"dead run of pid {owner[0]}" if owner else "lock free, no owner recorded"
    elif time.time() - run_dir.stat().st_mtime < _YOUNG_SECONDS:
        return f"left alone: {run_dir} has no lock yet (a run may be starting)"
    else:
        who = "no lock: left by an older pgdrill"
    scope = RunScope.load(run_dir)
    scope.lock_fd = fd
    if dry_run:
        procs = sorted(scope.processes())
        if fd is not None:
            os.close(fd)
        return f"would remove {run_dir} ({who}; processes: {procs or 'none'}; shm: {sorted(scope.shm) or 'none'})"
    done = scope.release()
    kinds = Counter(s.split(" (", 1)[-1].rstrip(")") for s in done.stopped)
    text = (f"removed {run_dir} ({who}): stopped {len(done.stopped)} process(es)"
            + (f" ({', '.join(f'{n} x {k}' if n > 1 else k for k, n in kinds.items())})" if kinds else "")
            + f", removed {len(done.shm)} shared memory segment(s), {len(done.sockets)} socket(s)"
            + (f", and {scope.tmp_dir}" if scope.tmp_dir else ""))
    return text + (f"; still left: {'; '.join(done.left)}" if done.left else "")


def clean_leftovers(workdir: Path | None = None, dry_run: bool = False) -> Iterator[str]:
    """Release every dead run under ``workdir`` (default: the system temp dir); leave live ones."""
    parent = workdir or Path(tempfile.gettempdir())
    found = False
    for run_dir in sorted(p for p in parent.iterdir() if p.is_dir() and _RUN_DIR.match(p.name)):
        found = True
        yield _clean_one(run_dir, dry_run)
    if not found:
        yield f"nothing to clean under {parent}"
