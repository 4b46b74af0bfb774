"""Recovery on the local backend, as the CNPG barman-cloud plugin's restore hook does it
(plugin-barman-cloud ``internal/cnpgi/restore/restore.go``): empty-archive check on the new
serverName, pick the backup, check its begin WAL is in the archive, ``barman-cloud-restore``,
then start with ``restore_command`` and ``recovery_target_action = promote``.

Module functions over a ``LocalBackend`` (its public methods only), like ``replica.py``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from pgdrill.archive.catalog import BaseBackup
from pgdrill.backends.base import ClusterHandle, RecoveryOutcome, RecoveryTarget
from pgdrill.backends.local.postgres import Instance, log_time
from pgdrill.backends.local.serverlog import (
    REDO_DONE,
    events,
    fatal,
    restored_segments,
    walfetch_stats,
)
from pgdrill.errors import UsageError
from pgdrill.postgres.wal import parse_history

if TYPE_CHECKING:
    from pgdrill.backends.local.backend import LocalBackend


def choose_backup(backups: list[BaseBackup], target: RecoveryTarget | None) -> BaseBackup | None:
    """CNPG's choice: a named backup, else the newest completed one that ends before the target."""
    done = [b for b in backups if b.done]
    if target and target.backup_id:
        return next((b for b in done if b.backup_id == target.backup_id), None)
    if target and target.lsn:
        done = [b for b in done if b.end_lsn is None or b.end_lsn <= target.lsn]
    return max(done, key=lambda b: b.backup_id, default=None)


def recover(backend: LocalBackend, source: ClusterHandle, new_name: str, target: RecoveryTarget | None,
            archive: bool = True) -> RecoveryOutcome:
    if backend.has_cluster(new_name):
        raise UsageError(f"recovery cluster {new_name!r} already exists; pick the next -vN")
    if archive and new_name == source.server_name:
        raise UsageError("a recovered cluster must not archive into its source's serverName")
    started = time.monotonic()
    if archive:
        backend.check_empty_archive(new_name)
    src_archive, backups = backend.read_archive(source.server_name)
    backup = choose_backup(backups, target)
    if backup is None:
        return RecoveryOutcome(None, False, None, failed_step="preflight", fatal_lines=[
            f"no completed base backup for {source.server_name} in {backend.destination.url}"])
    if backup.begin_wal is None or backup.begin_wal.number not in src_archive.segments(backup.begin_wal.timeline):
        # What the plugin's restore hook checks before copying any data.
        return RecoveryOutcome(None, False, backup.backup_id, failed_step="preflight", fatal_lines=[
            "encountered an error while checking the presence of first needed WAL in the archive: "
            f"{backup.begin_wal} not found for {source.server_name}"])
    preflight_done = time.monotonic()
    instance = backend.new_instance(new_name)
    handle = ClusterHandle(new_name, new_name if archive else "", archive,
                           {"pgdata": str(instance.pgdata), "port": instance.port, "log": str(instance.log_file),
                            "recovered_from": source.server_name, "backup_id": backup.backup_id})
    backend.add_node(handle, instance)
    user = backend.user
    user.own(instance.pgdata, 0o700)
    restore = user.run(backend.barman.restore(source.server_name, backup.backup_id, str(instance.pgdata)),
                       backend.environment, instance.cwd, timeout=3600)
    restored_at = time.monotonic()
    if restore.returncode != 0:
        return RecoveryOutcome(handle, False, backup.backup_id,
                               phases={"preflight": preflight_done - started, "restore": restored_at - preflight_done},
                               failed_step="restore", fatal_lines=(restore.stderr or restore.stdout).strip().splitlines()[-5:])
    settings = {**instance.base_settings(), **backend.archive_settings(new_name if archive else None),
                "restore_command": backend.barman.restore_command(source.server_name),
                "recovery_target_action": "promote", "recovery_target_timeline": "latest"}
    if target and target.lsn:
        settings["recovery_target_lsn"] = str(target.lsn)
    elif target and target.time:
        settings["recovery_target_time"] = target.time
    elif target and target.name:
        settings["recovery_target_name"] = target.name
    instance.write_settings(settings)
    signal_file = instance.pgdata / "recovery.signal"
    signal_file.touch()
    if user.switch:
        os.chown(signal_file, user.uid, user.gid)
    # Replay is counted from the end of the restore: configuring and starting the server is
    # part of it, as it is for CNPG's instance manager.
    start_wall = time.time() - (time.monotonic() - restored_at)
    instance.start()
    outcome = await_promotion(instance, handle, backup.backup_id,
                               backend.config.local.startup_timeout_seconds, restored_at)
    outcome.phases = {"preflight": preflight_done - started, "restore": restored_at - preflight_done,
                      **outcome.phases}
    outcome.total = sum(outcome.phases.values()) if outcome.promoted else None
    split_replay(outcome, instance, start_wall)
    outcome.wal_fetch = walfetch_stats(instance.log_lines())
    return outcome


def await_promotion(instance: Instance, handle: ClusterHandle, backup_id: str,
                     timeout: float, begun: float) -> RecoveryOutcome:
    """Poll until the server leaves recovery and takes a write (phases ``replay`` from
    ``begun``, then ``first_write``), or until it dies or ``timeout`` passes."""
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not instance.alive() and time.monotonic() - begun > 0.5:
            lines = instance.log_lines()
            return RecoveryOutcome(handle, False, backup_id, phases={}, failed_step="replay",
                                   fatal_lines=fatal(lines),
                                   log_excerpt=lines[-30:], restored_segments=restored_segments(lines))
        try:
            with instance.connect(timeout=2) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
                if not in_recovery:
                    promoted = time.monotonic()
                    conn.execute("CREATE TABLE IF NOT EXISTS pgdrill_write_probe (at timestamptz)")
                    conn.execute("INSERT INTO pgdrill_write_probe VALUES (clock_timestamp())")
                    written = time.monotonic()
                    tli_hex = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0][:8]  # type: ignore[index]
                    timeline = int(tli_hex, 16)
                    fork = None
                    if timeline > 1:
                        text = conn.execute("SELECT pg_read_file(%s)", (f"pg_wal/{tli_hex}.history",)).fetchone()[0]  # type: ignore[index]
                        switches = parse_history(text)
                        fork = switches[-1].switchpoint if switches else None
                    lines = instance.log_lines()
                    return RecoveryOutcome(
                        handle, True, backup_id,
                        phases={"replay": promoted - begun, "first_write": written - promoted},
                        fork_lsn=fork, timeline=timeline,
                        fatal_lines=fatal(lines),
                        log_excerpt=events(lines)[-30:],
                        restored_segments=restored_segments(lines))
        except psycopg.OperationalError:
            pass
        time.sleep(0.1)
    # pgdrill's own deadline, not PostgreSQL's verdict: "timeout" (could not verify), not a failed replay.
    settle = time.monotonic() + 5  # pg_ctl -W returns before postmaster.pid exists: let it appear to stop it
    while not instance.alive() and time.monotonic() < settle and time.monotonic() - begun < 5:
        time.sleep(0.1)
    lines = instance.log_lines()
    instance.stop("immediate")
    return RecoveryOutcome(handle, False, backup_id, failed_step="timeout",
                           fatal_lines=[*fatal(lines)[-3:], (f"pgdrill stopped waiting: the recovery did not "
                                        f"promote within {timeout:g}s (local.startup_timeout_seconds)")],
                           log_excerpt=lines[-30:], restored_segments=restored_segments(lines))


def split_replay(outcome: RecoveryOutcome, instance: Instance, start_wall: float) -> None:
    """Split "restore end → out of recovery" at the server log's "redo done" line: ``replay``
    (start, fetch and apply WAL) then ``promote`` (end-of-recovery checkpoint, new timeline).
    ``start_wall`` is the wall-clock time of the end of the restore (same host clock as the log)."""
    if not outcome.promoted or "replay" not in outcome.phases:
        return
    total = outcome.phases["replay"]
    replay = total
    for line in instance.log_lines():
        if REDO_DONE in line:
            stamp = log_time(line)
            if stamp is not None:
                replay = min(max(stamp.timestamp() - start_wall, 0.0), total)
            break
    first_write = outcome.phases.pop("first_write", 0.0)
    outcome.phases["replay"] = replay
    outcome.phases["promote"] = total - replay
    outcome.phases["first_write"] = first_write
