"""Node-level faults on the local backend: a streaming replica, SIGKILL, promotion, crash restart.

What CNPG does, reduced to the PostgreSQL mechanics a drill can measure:

* a replica instance is a ``pg_basebackup`` of the primary with ``standby.signal`` and
  ``primary_conninfo``, a physical replication slot (CNPG's HA slots are on by default) and the
  *same* ``archive_command`` / serverName as the primary.  With ``archive_mode = on`` a standby
  archives nothing (its walreceiver marks streamed segments ``.done``); once promoted it archives
  the ``.history`` file, the old timeline's ``.partial`` segment and the new timeline, all under
  the cluster's serverName — exactly what CNPG's new primary does, and what broke in
  plugin-barman-cloud#842;
* failover = ``pg_ctl promote`` on the replica, then poll until ``pg_is_in_recovery()`` is false;
* a crashed primary restarts on its own data directory and runs crash recovery.

Every wait polls the server; no tool's exit code is taken as proof it is up (``pg_ctl -w``
returns 0 for a server that dies a second later).  These are module functions over a
``LocalBackend`` (its public methods only) so backend.py only carries thin delegating
methods; the log filters are ``serverlog``'s, shared with recovery.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import psycopg

from pgdrill.backends.base import ClusterHandle, RecoveryOutcome
from pgdrill.backends.local.postgres import Instance, _running, pg_bin_dir
from pgdrill.backends.local.serverlog import events, fatal
from pgdrill.errors import CouldNotVerify, UsageError
from pgdrill.postgres.wal import Lsn, parse_history

if TYPE_CHECKING:
    from pgdrill.backends.local.backend import LocalBackend

# Left behind by a SIGKILLed postmaster whose children have not exited yet: retry the start.
_TRANSIENT_START = ("pre-existing shared memory block", "lock file", "could not bind", "Address already in use")


def _up(instance: Instance) -> bool:
    """Postmaster running; a SIGKILLed one leaves its pid file and may linger as an unreaped zombie."""
    pid = instance.postmaster_pid()
    return pid is not None and _running(pid)


def _slot_name(name: str) -> str:
    """CNPG names HA slots ``_cnpg_<instance>``; slot names allow [a-z0-9_] only."""
    return "_cnpg_" + "".join(c if c.isalnum() else "_" for c in name.lower())


def create_replica(backend: LocalBackend, primary: ClusterHandle, name: str,
                   timeout: float = 120.0) -> ClusterHandle:
    if backend.has_cluster(name):
        raise UsageError(f"cluster {name!r} already exists in this run")
    source = backend.node(primary)
    if not _up(source):
        raise UsageError(f"cannot clone {primary.name}: its postmaster is not running")
    instance = backend.new_instance(name)
    slot = _slot_name(name)
    # -X stream: the clone carries the WAL written during the copy; -C -S: the slot exists
    # before streaming starts, so the primary keeps every segment the replica still needs.
    # Runs as the PostgreSQL OS user: the files must be that user's, mode 0700.
    result = backend.user.run(
        [str(pg_bin_dir() / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(source.port), "-U", "postgres",
         "-D", str(instance.pgdata), "-X", "stream", "-c", "fast", "-C", "-S", slot, "--no-password"],
        backend.environment, instance.cwd, timeout=max(timeout, 600.0))
    if result.returncode != 0:
        raise CouldNotVerify(f"pg_basebackup of {primary.name} into {name} failed: "
                             f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    # The copied pgdrill.conf is the primary's (its port, socket dir): rewrite it for this node.
    # Same archive settings and serverName as the primary, as every CNPG instance has.
    conninfo = f"host=127.0.0.1 port={source.port} user=postgres application_name={name}"
    instance.write_settings({**instance.base_settings(), **backend.archive_settings(primary.server_name),
                             "primary_conninfo": conninfo, "primary_slot_name": slot})
    signal_file = instance.pgdata / "standby.signal"
    signal_file.touch()
    if backend.user.switch:
        os.chown(signal_file, backend.user.uid, backend.user.gid)
    instance.start()
    instance.wait_ready(timeout)
    handle = ClusterHandle(name, primary.server_name, True, {
        "pgdata": str(instance.pgdata), "port": instance.port, "log": str(instance.log_file),
        "role": "replica", "primary": primary.name, "slot": slot, "synchronous": False})
    backend.add_node(handle, instance)
    _wait_streaming(instance, name, timeout)
    return handle


def _wait_streaming(instance: Instance, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        try:
            with instance.connect(timeout=2) as conn:
                row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
                status = row[0] if row else None
                if status == "streaming":
                    return
        except psycopg.OperationalError:
            pass
        if not _up(instance):
            raise CouldNotVerify(f"replica {name} stopped: {' | '.join(instance.log_tail(5))}")
        time.sleep(0.1)
    raise CouldNotVerify(f"replica {name} not streaming after {timeout:.0f}s (wal receiver status {status!r})")


def kill_primary(backend: LocalBackend, cluster: ClusterHandle) -> None:
    instance = backend.node(cluster)
    pid = instance.postmaster_pid()
    if pid is None:
        raise UsageError(f"{cluster.name} is not running; nothing to kill")
    instance.kill()
    # A killed postmaster may stay a zombie (nobody reaps it here): _running treats that as gone.
    if _running(pid):
        raise CouldNotVerify(f"{cluster.name}: postmaster {pid} still running after SIGKILL")


def promote(backend: LocalBackend, cluster: ClusterHandle, timeout: float) -> RecoveryOutcome:
    instance = backend.node(cluster)
    requested = time.monotonic()
    # -W: do not wait; we poll pg_is_in_recovery() ourselves below.
    result = backend.user.run([str(pg_bin_dir() / "pg_ctl"), "-D", str(instance.pgdata), "-W", "promote"],
                              backend.environment, instance.cwd, timeout=60)
    if result.returncode != 0:
        return RecoveryOutcome(cluster, False, None, fatal_lines=[
            f"pg_ctl promote failed: {(result.stderr or result.stdout).strip()}"])
    deadline = requested + timeout
    while time.monotonic() < deadline:
        if not _up(instance):
            lines = instance.log_lines()
            return RecoveryOutcome(cluster, False, None, fatal_lines=fatal(lines), log_excerpt=events(lines)[-30:])
        try:
            with instance.connect(timeout=2) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    promoted = time.monotonic()
                    timeline, fork = _timeline(conn)
                    lines = instance.log_lines()
                    cluster.details["role"] = "primary"
                    return RecoveryOutcome(cluster, True, None, phases={"promote": promoted - requested},
                                           total=promoted - requested, fork_lsn=fork, timeline=timeline,
                                           fatal_lines=fatal(lines), log_excerpt=events(lines)[-30:])
        except psycopg.OperationalError:
            pass
        time.sleep(0.05)
    lines = instance.log_lines()
    return RecoveryOutcome(cluster, False, None, log_excerpt=events(lines)[-30:],
                           fatal_lines=[f"{cluster.name} still in recovery {timeout:.0f}s after pg_ctl promote"])


def _timeline(conn: psycopg.Connection) -> tuple[int, Lsn | None]:
    # pg_control_checkpoint() lags until the end-of-recovery checkpoint; the insert position's
    # segment name carries the timeline the server writes on now.
    tli_hex = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0][:8]  # type: ignore[index]
    timeline = int(tli_hex, 16)
    if timeline == 1:
        return timeline, None
    text = conn.execute("SELECT pg_read_file(%s)", (f"pg_wal/{tli_hex}.history",)).fetchone()[0]  # type: ignore[index]
    switches = parse_history(text)
    return timeline, (switches[-1].switchpoint if switches else None)


def restart_after_crash(backend: LocalBackend, cluster: ClusterHandle, timeout: float) -> RecoveryOutcome:
    instance = backend.node(cluster)
    if _up(instance):
        raise UsageError(f"{cluster.name} is still running; kill it first")
    begun = time.monotonic()
    # The killed postmaster may linger as an unreaped zombie (it was orphaned when pg_ctl exited;
    # whoever adopted it reaps it when it gets to it).  PostgreSQL's lock-file check sees that
    # pid as alive and refuses to start.  A restarted pod never sees this, so the wait is its own
    # phase ("reap"), not crash-recovery time.  postmaster.pid is never deleted: it carries the
    # shared-memory key PostgreSQL uses to refuse starting while orphaned backends are attached.
    old_pid = _pid_in_lock_file(instance)
    while old_pid is not None and _exists(old_pid) and time.monotonic() - begun < 30:
        time.sleep(0.05)
    reaped = time.monotonic()
    log_offset = len(instance.log_lines())
    attempts = 0
    retries: list[str] = []
    while True:
        attempts += 1
        attempt_begun = time.monotonic()
        instance.start()
        started = time.monotonic()
        outcome, died = _await_open(instance, cluster, started, timeout, log_offset)
        new_lines = instance.log_lines()[log_offset:]
        # A SIGKILLed postmaster's backends exit only when they notice; until then the shared
        # memory block or the port may still be taken.  That is not a crash-recovery failure.
        if (not outcome.promoted and attempts < 5 and died
                and any(t in ln for ln in new_lines for t in _TRANSIENT_START)):
            retries += [ln for ln in new_lines if any(t in ln for t in _TRANSIENT_START)][:2]
            time.sleep(0.5)
            log_offset = len(instance.log_lines())
            continue
        # Failed attempts (orphans of the killed postmaster still holding the port or shared
        # memory) are their own phase, so callers can leave them out of the RTO.
        outcome.phases = {"reap": reaped - begun, "start_retries": attempt_begun - reaped,
                          "start": started - attempt_begun, **outcome.phases}
        outcome.total = (time.monotonic() - begun) if outcome.promoted else None
        cluster.details["start_attempts"] = attempts
        cluster.details["start_retry_reasons"] = retries
        return outcome


def _pid_in_lock_file(instance: Instance) -> int | None:
    try:
        return int((instance.pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError, PermissionError):
        return None


def _exists(pid: int) -> bool:
    """True while the kernel still has ``pid``, zombie included (what PostgreSQL's check sees)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _await_open(instance: Instance, cluster: ClusterHandle, started: float, timeout: float,
                log_offset: int) -> tuple[RecoveryOutcome, bool]:
    """The outcome, and whether the postmaster exited (rather than timing out)."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if not _up(instance) and time.monotonic() - started > 0.3:
            lines = instance.log_lines()[log_offset:]
            return RecoveryOutcome(cluster, False, None, fatal_lines=fatal(lines), log_excerpt=lines[-30:]), True
        try:
            with instance.connect(timeout=2) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                    opened = time.monotonic()
                    timeline, fork = _timeline(conn)
                    lines = instance.log_lines()[log_offset:]
                    return RecoveryOutcome(cluster, True, None, phases={"crash_recovery": opened - started},
                                           timeline=timeline, fork_lsn=fork, fatal_lines=fatal(lines),
                                           log_excerpt=events(lines)[-30:]), False
        except psycopg.OperationalError:
            pass
        time.sleep(0.05)
    lines = instance.log_lines()[log_offset:]
    instance.stop("immediate")
    return RecoveryOutcome(cluster, False, None, log_excerpt=lines[-30:],
                           fatal_lines=[f"{cluster.name} did not open within {timeout:.0f}s after a crash restart"]), False
