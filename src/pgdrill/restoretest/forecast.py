"""The RTO forecast: the worst case of the archive as it is, just before the next base backup,
from the rates this restore measured and the WAL volume the listing shows per backup interval.

    forecast = preflight + B / r_restore + W / r_replay + promote + first_write

* ``B`` — stored bytes of the newest completed backup; ``r_restore`` — stored bytes per second
  ``barman-cloud-restore`` achieved here.
* ``W`` — the newest backup's own WAL (begin to end WAL) plus the most WAL (stored bytes)
  uploaded between the ends of two consecutive completed backups (``pgdrill.archive.growth``,
  the audit's definition); with a single backup, the WAL uploaded since it.  ``r_replay`` — stored WAL bytes per second that
  fetch + replay achieved here (both replay phases over the stored bytes of the segments fetched),
  at the ``wal.maxParallel`` this run used.
* promote and first_write as measured.

Assumptions, stated in the report: the same machine, network and ``wal.maxParallel`` as this run;
WAL that compresses like the WAL this run fetched; replay cost proportional to WAL bytes.
"""

from __future__ import annotations

from typing import Any


def rto_forecast(phases: dict[str, float], restored_stored_bytes: int, wal_stored_bytes_fetched: int,
                 newest_backup_stored_bytes: int, worst_interval_wal_bytes: int | None,
                 wal_max_parallel: int) -> dict[str, Any]:
    """Pure: the forecast and how it was made; ``seconds`` None when a rate is unknown."""
    restore_s = phases.get("restore", 0.0)
    replay_s = phases.get("replay_to_consistency", 0.0) + phases.get("replay_to_end", 0.0)
    restore_rate = restored_stored_bytes / restore_s if restore_s > 0 and restored_stored_bytes > 0 else None
    replay_rate = wal_stored_bytes_fetched / replay_s if replay_s > 0 and wal_stored_bytes_fetched > 0 else None
    assumptions = [
        f"same machine, network and wal.maxParallel ({wal_max_parallel}) as this run",
        "WAL compresses and replays like the WAL this run fetched (cost proportional to stored bytes)",
        "worst case: a disaster just before the next base backup, so the whole backup interval of WAL is replayed",
    ]
    basis: dict[str, Any] = {
        "restore_bytes_per_second": _round(restore_rate), "replay_stored_bytes_per_second": _round(replay_rate),
        "newest_backup_stored_bytes": newest_backup_stored_bytes, "worst_interval_wal_stored_bytes": worst_interval_wal_bytes,
        "wal_max_parallel": wal_max_parallel,
    }
    if restore_rate is None or replay_rate is None or worst_interval_wal_bytes is None:
        why = ("no restore rate measured" if restore_rate is None else
               "no WAL replay rate measured (no segment was fetched)" if replay_rate is None else
               "no WAL volume per backup interval in the listing")
        return {"seconds": None, "why": why, "basis": basis, "assumptions": assumptions}
    parts = {
        "preflight": phases.get("preflight", 0.0),
        "restore": newest_backup_stored_bytes / restore_rate,
        "replay": worst_interval_wal_bytes / replay_rate,
        "promote": phases.get("promote", 0.0),
        "first_write": phases.get("first_write", 0.0),
    }
    return {"seconds": round(sum(parts.values()), 3), "phases_s": {k: round(v, 3) for k, v in parts.items()},
            "basis": basis, "assumptions": assumptions}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
