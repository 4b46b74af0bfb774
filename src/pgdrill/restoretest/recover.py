"""One restore of a production backup, as CNPG's Barman Cloud plugin does it: ``barman-cloud-restore``
into a fresh data directory, then PostgreSQL with ``restore_command`` = ``barman-cloud-wal-restore``
and ``recovery_target_action = promote``, timed phase by phase.

The restored data directory brings the source's own configuration (a CNPG one points at
certificates and a ``/controller/manager`` archive command that do not exist here), so it is
set aside and replaced by a minimal one, as CNPG's instance manager writes its own: the
source's files are kept as ``*.source`` for inspection.  ``archive_mode = off``: a restore-test
never archives anywhere, least of all into the source.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdrill.backends.base import ClusterHandle, RecoveryOutcome
from pgdrill.backends.local.postgres import Instance, log_time
from pgdrill.backends.local.recovery import await_promotion, split_replay
from pgdrill.backends.local.serverlog import walfetch_stats
from pgdrill.postgres.wal import Lsn
from pgdrill.restoretest.plan import Candidate
from pgdrill.restoretest.workspace import RestoreWorkspace

CONSISTENT = "consistent recovery state reached"
TARGET_STOP = "recovery stopping"
TARGET_UNREACHED = "recovery ended before configured recovery target was reached"
_SOURCE_CONFIG = ("postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf",
                  "custom.conf", "override.conf")


@dataclass
class Attempt:
    """One restore of one backup: its phases, what it fetched, where it ended."""

    candidate: Candidate
    instance: Instance
    handle: ClusterHandle
    outcome: RecoveryOutcome
    restore_seconds: float
    pgdata_bytes: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def failed(self) -> str | None:
        if self.outcome.promoted:
            return None
        return f"{self.outcome.failed_step}: " + ("; ".join(self.outcome.fatal_lines[-2:]) or "no FATAL line")

    def wal_fetched(self, sizes: dict[str, int]) -> dict[str, Any]:
        names = [n for n in self.outcome.restored_segments if not n.endswith(".history")]
        replay = sum(self.outcome.phases.get(p, 0.0) for p in ("replay_to_consistency", "replay_to_end"))
        stored = sum(sizes.get(n, 0) for n in names)
        return {"segments": len(names), "stored_bytes": stored,
                "seconds_per_segment": round(replay / len(names), 4) if names else None,
                "first": names[0] if names else None, "last": names[-1] if names else None}

    def restore_figures(self) -> dict[str, Any]:
        stored = self.candidate.audit.stored_bytes
        seconds = self.restore_seconds
        return {"backup_id": self.candidate.backup.backup_id, "stored_bytes": stored,
                "pgdata_bytes": self.pgdata_bytes, "seconds": round(seconds, 3),
                "stored_mb_per_s": round(stored / 1e6 / seconds, 2) if seconds > 0 else None,
                "pgdata_mb_per_s": round(self.pgdata_bytes / 1e6 / seconds, 2) if seconds > 0 else None}


def restore_backup(ws: RestoreWorkspace, candidate: Candidate, server_name: str, name: str,
                   recovery: dict[str, str], timeout: float, restore_command: str) -> Attempt:
    """Restore ``candidate`` into instance ``name`` and run recovery with ``recovery`` settings
    (targets, ``recovery_target_action``); returns when it promoted, died or timed out."""
    instance = ws.new_instance(name)
    handle = ClusterHandle(name, "", False, {"pgdata": str(instance.pgdata), "port": instance.port,
                                             "log": str(instance.log_file), "backup_id": candidate.backup.backup_id})
    ws.user.own(instance.pgdata, 0o700)
    began = time.monotonic()
    backup_id = candidate.backup.backup_id
    restore = ws.user.run(ws.barman.restore(server_name, backup_id, str(instance.pgdata)), ws.environment,
                          instance.cwd, timeout=timeout)
    restored = time.monotonic()
    if restore.returncode != 0:
        lines = (restore.stderr or restore.stdout).strip().splitlines()
        outcome = RecoveryOutcome(handle, False, backup_id, failed_step="restore", fatal_lines=lines[-3:])
        return Attempt(candidate, instance, handle, outcome, restored - began)
    pgdata_bytes = _tree_bytes(instance.pgdata)
    _replace_configuration(instance, ws)
    settings: dict[str, str | int] = {
        **instance.base_settings(), "archive_mode": "off", "restore_command": restore_command,
        "recovery_target_timeline": "latest", **recovery}
    # A production server's settings that a standby must match or exceed (PostgreSQL refuses
    # to replay WAL from a primary with higher values): take them from the backup's control data.
    settings.update(_hot_standby_minimums(instance))
    instance.write_settings(settings)
    signal_file = instance.pgdata / "recovery.signal"
    signal_file.touch()
    if ws.user.switch:
        os.chown(signal_file, ws.user.uid, ws.user.gid)
    start_wall = time.time() - (time.monotonic() - restored)
    instance.start()
    outcome = await_promotion(instance, handle, backup_id, timeout, restored)
    split_replay(outcome, instance, start_wall)
    lines = instance.log_lines()
    _split_consistency(outcome, lines, start_wall)
    outcome.wal_fetch = walfetch_stats(lines)
    return Attempt(candidate, instance, handle, outcome, restored - began, pgdata_bytes, lines)


def target_settings(target_lsn: Lsn | None, target_time: str | None, target_name: str | None) -> dict[str, str]:
    if target_lsn is not None:
        return {"recovery_target_lsn": str(target_lsn)}
    if target_time is not None:
        return {"recovery_target_time": target_time}
    if target_name is not None:
        return {"recovery_target_name": target_name}
    return {}


def wait_stopped(instance: Instance, timeout: float) -> bool:
    """For a target check (``recovery_target_action = shutdown``): True once the server exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not instance.alive():
            return True
        time.sleep(0.1)
    return False


def _replace_configuration(instance: Instance, ws: RestoreWorkspace) -> None:
    for name in _SOURCE_CONFIG:
        path = instance.pgdata / name
        if path.exists():
            path.rename(path.with_name(name + ".source"))
    # Only local connections, trusted: the restored cluster listens on 127.0.0.1 and its
    # socket directory is private to the run.
    files = {"postgresql.conf": "include_if_exists = 'pgdrill.conf'\n",
             "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
             "pg_ident.conf": ""}
    for name, text in files.items():
        path = instance.pgdata / name
        path.write_text(text)
        if ws.user.switch:
            os.chown(path, ws.user.uid, ws.user.gid)
    for name in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (instance.pgdata / name).unlink(missing_ok=True)


_MINIMUMS = {"max_connections setting": "max_connections", "max_worker_processes setting": "max_worker_processes",
             "max_wal_senders setting": "max_wal_senders", "max_prepared_xacts setting": "max_prepared_transactions",
             "max_locks_per_xact setting": "max_locks_per_transaction"}


def _hot_standby_minimums(instance: Instance) -> dict[str, int]:
    """``pg_controldata`` of the restored directory: the source's values of the settings a
    recovering server must not set lower."""
    result = instance.user.run([instance._pg("pg_controldata"), str(instance.pgdata)], instance.env,
                               instance.cwd, timeout=60)
    values: dict[str, int] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        setting = _MINIMUMS.get(key.strip())
        if setting and value.strip().isdigit():
            values[setting] = max(int(value.strip()), 10 if setting == "max_connections" else 0)
    return values


def _split_consistency(outcome: RecoveryOutcome, lines: list[str], start_wall: float) -> None:
    """Split ``replay`` at the log's "consistent recovery state reached" line into
    ``replay_to_consistency`` and ``replay_to_end`` (phases stay contiguous)."""
    if "replay" not in outcome.phases:
        return
    replay = outcome.phases["replay"]
    to_consistency = replay
    for line in lines:
        if CONSISTENT in line:
            stamp = log_time(line)
            if stamp is not None:
                to_consistency = min(max(stamp.timestamp() - start_wall, 0.0), replay)
            break
    phases = {}
    for key, value in outcome.phases.items():
        if key == "replay":
            phases["replay_to_consistency"] = to_consistency
            phases["replay_to_end"] = replay - to_consistency
        else:
            phases[key] = value
    outcome.phases = phases


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
