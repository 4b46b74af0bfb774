"""Nothing of a local run outlives it (issue "Reliability"): real ``pgdrill run`` processes,
interrupted (SIGINT, SIGTERM) during the base backup and during the recovery, killed with
SIGKILL and reaped by ``pgdrill clean``, cleaned beside while they run, and run from a work dir
and TMPDIR too long for AF_UNIX socket paths.

What a run owns is taken from the run itself while it runs (its ``run.record``: process groups
with their leaders' start times, ports, shared-memory segments, temp dir; plus every process
working in or pointing into its directories, and its PostgreSQL ports from ``pgdrill.conf``),
never by process name; other runs on the machine are never counted.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
PGDRILL = str(Path(sys.executable).parent / "pgdrill")
SCENARIO = "scenarios/clean-recovery.yaml"
RELEASED = "interrupted: every process and directory of the running drill was released"


@pytest.fixture
def work(tmp_path):
    """A work dir the PostgreSQL OS user can traverse (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="pgdt-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _stat(pid: int) -> tuple[str, int, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, started: int) -> bool:
    """The same process (start time), still running; a zombie is dead."""
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in ("Z", "X")


def _processes():
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[0] not in ("Z", "X"):
            yield int(entry.name), stat[1], stat[2]


def _points_into(pid: int, roots: list[Path]) -> bool:
    texts = []
    try:
        texts.append(os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)") + "/")
        texts.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        pass
    return any(str(root) + "/" in text for root in roots for text in texts)


def _listeners(ports: set[int]) -> list[tuple[int, int]]:
    """(port, pid) of each process listening on one of ``ports``."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if cols[3] == "0A" and port in ports:
                inodes[f"socket:[{cols[9]}]"] = port
    found = []
    for pid, _, _ in _processes() if inodes else ():
        try:
            links = {os.readlink(f.path) for f in os.scandir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        found += [(port, pid) for inode, port in inodes.items() if inode in links]
    return found


def _boot_time() -> float:
    return float(next(ln.split()[1] for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime")))


def _shm_ctime(shmid: int) -> float:
    for row in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
        cols = row.split()
        if int(cols[1]) == shmid:
            return float(cols[13])
    return 0.0


def _shm() -> dict[int, tuple[int, int]]:
    """shmid -> (creator pid, owner uid)."""
    rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(c[1]): (int(c[4]), int(c[7])) for c in (r.split() for r in rows)}


class Drill:
    """One ``pgdrill run`` of the clean-recovery control, watched from outside."""

    def __init__(self, tmp: Path, workdir: Path, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.workdir = workdir
        config = tmp / "pgdrill.toml"
        config.write_text(f'[local]\nworkdir = "{self.workdir}"\n')
        self.stdout = tmp / "stdout.txt"
        self.lines: list[str] = []
        self.pids: dict[int, int] = {}
        self.groups: dict[int, tuple[int, str]] = {}
        self.ports: set[int] = set()
        self.shm: set[int] = set()
        self.run_dirs: set[Path] = set()
        self.tmp_dirs: set[Path] = set()
        self.evidence: set[str] = set()
        self.shm_before = set(_shm())
        self.tmp_before = set(Path("/tmp").glob("seaweedfs-*.sock")) | set(Path("/tmp").glob("weed*"))
        with self.stdout.open("w") as out:
            self.proc = subprocess.Popen([PGDRILL, "run", SCENARIO, "--config", str(config),
                                          "--reports-dir", str(tmp / "reports")], cwd=REPO, stdout=out,
                                         stderr=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, f"pgdrill exited before {text!r}:\n{self.stderr[-3000:]}"
            assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f}s:\n{self.stderr[-3000:]}"
            self.snapshot()
            time.sleep(0.1)

    def snapshot(self) -> None:
        """Add everything the run holds right now."""
        for run_dir in self.workdir.glob("pgdrill-*"):
            self.run_dirs.add(run_dir)
            try:
                record = (run_dir / "run.record").read_text().splitlines()
            except OSError:
                record = []
            for line in record:
                kind, *args = line.split()
                if kind == "tmp":
                    self.tmp_dirs.add(Path(args[0]))
                elif kind == "group" and len(args) >= 3:
                    self.groups[int(args[0])] = (int(args[1]), " ".join(args[3:]))
                elif kind == "ports":
                    self.ports.update(int(a) for a in args)
                elif kind == "shm" and len(args) == 2:
                    self.shm.add(int(args[1]))
            for conf in run_dir.glob("*/pgdata/pgdrill.conf"):
                for line in conf.read_text().splitlines():
                    if line.startswith("port = "):
                        self.ports.add(int(line.split("=")[1]))
            if any((run_dir / "s3" / "log").glob("weed.*")):
                self.evidence.add("weed logs in the run dir")
        if any((d / "s3.sock").exists() for d in self.tmp_dirs):
            self.evidence.add("S3 socket in the run's temp dir")
        roots = sorted(self.run_dirs | self.tmp_dirs)
        for pid, pgrp, started in _processes():
            if pid in (os.getpid(), self.proc.pid):
                continue
            group = self.groups.get(pgrp)
            if (group and started >= group[0]) or (roots and _points_into(pid, roots)):
                self.pids[pid] = started

    def send(self, signum: int) -> None:
        self.snapshot()
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 180.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(10)
        return rc

    def _ours(self, pid: int) -> bool:
        """Seen as the run's while it ran (same start time), or pointing into its directories."""
        stat = _stat(pid)
        if stat is None:
            return False
        return self.pids.get(pid) == stat[2] or _points_into(pid, sorted(self.run_dirs | self.tmp_dirs))

    def leftovers(self) -> list[str]:
        """What of this run still exists, by what it recorded and held while it ran.  A pid, a
        port or a group id another run reused since is not counted (start times, owners)."""
        left = [f"process {pid}" for pid, started in self.pids.items() if _alive(pid, started)]
        left += [f"process {pid} in recorded group {pgrp}" for pid, pgrp, started in _processes()
                 if pgrp in self.groups and pid not in self.pids
                 and (_alive(pgrp, self.groups[pgrp][0]) or self._ours(pid))]
        left += [f"listening port {port} ({pid})" for port, pid in _listeners(self.ports) if self._ours(pid)]
        left += [f"socket {p}" for port in self.ports for p in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")
                 if p not in self.tmp_before]
        weeds = {pgid for pgid, (_, what) in self.groups.items() if what == "weed mini"}
        left += [f"weed log {p}" for p in Path("/tmp").glob("weed*") if p.name.rsplit(".", 1)[-1] in map(str, weeds)]
        left += [f"shm {i} (creator {cpid})" for i, (cpid, _) in _shm().items() if i in self.shm or self._created(i, cpid)]
        left += [f"directory {d}" for d in sorted(self.run_dirs | self.tmp_dirs) if d.exists()]
        return left

    def _created(self, shmid: int, cpid: int) -> bool:
        """A segment one of the run's postmasters created (not one a later process with its pid did)."""
        group = self.groups.get(cpid)
        return (shmid not in self.shm_before and group is not None and group[1].startswith("postmaster")
                and _shm_ctime(shmid) >= _boot_time() + group[0] / os.sysconf("SC_CLK_TCK") - 1)


def _wait_until(predicate, timeout: float, drill: Drill) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        drill.snapshot()
        time.sleep(0.05)


def _busy(drill: Drill, what: str, members: int) -> bool:
    """A recorded group named ``what`` with at least ``members`` live processes."""
    counts: dict[int, int] = {}
    for _, pgrp, started in _processes():
        if pgrp in drill.groups and drill.groups[pgrp][1] == what and started >= drill.groups[pgrp][0]:
            counts[pgrp] = counts.get(pgrp, 0) + 1
    return any(n >= members for n in counts.values())


def _pgdrill_shm(drill: Drill) -> set[int]:
    try:
        uid = pwd.getpwnam("pgdrill").pw_uid if os.geteuid() == 0 else os.geteuid()
    except KeyError:
        uid = os.geteuid()
    return {i for i, (_, owner) in _shm().items() if owner == uid}


@pytest.mark.parametrize(("step", "signum"), [
    ("backup", signal.SIGINT), ("backup", signal.SIGTERM), ("backup", signal.SIGHUP),
    ("recovery", signal.SIGINT), ("recovery", signal.SIGTERM),
], ids=lambda v: v.name if isinstance(v, signal.Signals) else v)
def test_an_interrupted_drill_leaves_nothing(tmp_path, work, step, signum):
    drill = Drill(tmp_path, work)
    if step == "backup":
        drill.wait_for("base backup (barman-cloud-backup) ...")
        # barman-cloud-backup with its upload workers: what used to survive with ppid 1
        _wait_until(lambda: _busy(drill, "barman-cloud-backup", 2), 10, drill)
    else:
        drill.wait_for("recover into ")
        _wait_until(lambda: any(w.startswith("postmaster postgres-cluster-v") for _, w in drill.groups.values()),
                    10, drill)
        time.sleep(0.3)  # replay under way: restore_command, the recovering postmaster
    assert drill.pids, "nothing of the run was seen running"
    shm_before = _pgdrill_shm(drill)
    drill.send(signum)
    rc = drill.finish()
    assert rc == 130, drill.stderr[-3000:]
    assert RELEASED in drill.stderr, drill.stderr[-3000:]
    left = drill.leftovers()
    assert not left, left
    new_shm = {i for i in _pgdrill_shm(drill) - shm_before if drill._created(i, _shm()[i][0])}
    assert new_shm == set()
    assert {"weed logs in the run dir", "S3 socket in the run's temp dir"} <= drill.evidence
    assert any(w.startswith("barman-cloud-backup") for _, w in drill.groups.values())


def test_clean_beside_a_running_drill_leaves_it_alone(tmp_path, work):
    drill = Drill(tmp_path, work)
    drill.wait_for("base backup (barman-cloud-backup) ...")
    clean = subprocess.run([PGDRILL, "clean", "--workdir", str(drill.workdir)], capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stderr
    [run_dir] = drill.run_dirs
    assert f"left alone: {run_dir} is a live run" in clean.stdout, clean.stdout
    rc = drill.finish()
    assert rc == 0, drill.stdout.read_text() + drill.stderr[-3000:]
    assert "clean-recovery: PASSED" in drill.stdout.read_text()
    left = drill.leftovers()
    assert not left, left


def test_clean_reaps_a_drill_killed_with_sigkill(tmp_path, work):
    drill = Drill(tmp_path, work)
    drill.wait_for("recover into ")
    # The source was SIGKILLed by the disaster: its shared-memory segment is left behind.
    _wait_until(lambda: any(w == "postmaster postgres-cluster-v2" for _, w in drill.groups.values()), 10, drill)
    drill.send(signal.SIGKILL)
    assert drill.finish() == -signal.SIGKILL
    drill.snapshot()
    assert drill.leftovers(), "a SIGKILLed run left nothing to clean: the test proves nothing"
    assert drill.shm & set(_shm()), "the source's segment should outlive the SIGKILL"
    dry = subprocess.run([PGDRILL, "clean", "--workdir", str(drill.workdir), "--dry-run"], capture_output=True,
                         text=True, timeout=60)
    assert "would remove" in dry.stdout and all(d.exists() for d in drill.run_dirs), dry.stdout
    clean = subprocess.run([PGDRILL, "clean", "--workdir", str(drill.workdir)], capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    [run_dir] = drill.run_dirs
    assert f"removed {run_dir} (dead run of pid {drill.proc.pid})" in clean.stdout, clean.stdout
    assert re.search(r"removed [1-9]\d* shared memory segment", clean.stdout), clean.stdout
    left = drill.leftovers()
    assert not left, left
    again = subprocess.run([PGDRILL, "clean", "--workdir", str(drill.workdir)], capture_output=True, text=True)
    assert "nothing to clean" in again.stdout


def test_a_drill_passes_from_a_100_character_work_dir_and_tmpdir(tmp_path, work):
    long_dir = work / ("w" * (100 - len(str(work)) - 1))
    assert len(str(long_dir)) == 100
    tmpdir = long_dir / ("t" * 30)
    tmpdir.mkdir(parents=True)
    long_dir.chmod(0o755)
    drill = Drill(tmp_path, long_dir, env={**os.environ, "TMPDIR": str(tmpdir)})
    drill.wait_for("verify: ledger vs recovered writes ...")  # watched: backup, recovery
    rc = drill.finish()
    assert rc == 0, drill.stdout.read_text() + drill.stderr[-3000:]
    assert "clean-recovery: PASSED" in drill.stdout.read_text()
    left = drill.leftovers()
    assert not left, left
    assert [p.name for p in long_dir.iterdir()] == [tmpdir.name]
