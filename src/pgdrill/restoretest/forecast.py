"""The RTO forecast: the worst case of the archive as it is, just before the next base backup,
from the rates this restore measured and the WAL volume the listing shows per backup interval.

    forecast = preflight + B / r_restore + S * t_segment + promote + first_write

* ``B`` — stored bytes of the newest completed backup; ``r_restore`` — stored bytes per second
  ``barman-cloud-restore`` achieved here.
* ``S`` — WAL segments to replay: the newest backup's own (begin to end WAL) plus the most
  segments uploaded between the ends of two consecutive completed backups
  (``pgdrill.archive.growth``, the audit's definition); with a single backup, the segments along
  its chain.  ``t_segment`` — seconds per segment that fetch + replay took here (both replay
  phases over the segments fetched), at the ``wal.maxParallel`` this run used.  Segments, not
  stored bytes: replay works on whole segments, while how well they compress depends on the
  workload, so a bytes rate measured on one archive mispredicts another.
* promote and first_write as measured.

Assumptions, stated in the report: the same machine, network and ``wal.maxParallel`` as this run;
every segment costs what this run's segments cost to fetch and replay.
"""

from __future__ import annotations

from typing import Any


def rto_forecast(phases: dict[str, float], restored_stored_bytes: int, wal_segments_fetched: int,
                 newest_backup_stored_bytes: int, worst_interval_wal_segments: int | None,
                 wal_max_parallel: int) -> dict[str, Any]:
    """Pure: the forecast and how it was made; ``seconds`` None when a rate is unknown."""
    restore_s = phases.get("restore", 0.0)
    replay_s = phases.get("replay_to_consistency", 0.0) + phases.get("replay_to_end", 0.0)
    restore_rate = restored_stored_bytes / restore_s if restore_s > 0 and restored_stored_bytes > 0 else None
    per_segment = replay_s / wal_segments_fetched if replay_s > 0 and wal_segments_fetched > 0 else None
    assumptions = [
        f"same machine, network and wal.maxParallel ({wal_max_parallel}) as this run",
        "each WAL segment costs what the segments of this run cost to fetch and replay",
        "worst case: a disaster just before the next base backup, so the whole backup interval of WAL is replayed",
    ]
    basis: dict[str, Any] = {
        "restore_bytes_per_second": _round(restore_rate),
        "seconds_per_segment": None if per_segment is None else round(per_segment, 4),
        "newest_backup_stored_bytes": newest_backup_stored_bytes, "worst_interval_wal_segments": worst_interval_wal_segments,
        "wal_max_parallel": wal_max_parallel,
    }
    if restore_rate is None or per_segment is None or worst_interval_wal_segments is None:
        why = ("no restore rate measured" if restore_rate is None else
               "no WAL replay rate measured (no segment was fetched)" if per_segment is None else
               "no WAL volume per backup interval in the listing")
        return {"seconds": None, "why": why, "basis": basis, "assumptions": assumptions}
    parts = {
        "preflight": phases.get("preflight", 0.0),
        "restore": newest_backup_stored_bytes / restore_rate,
        "replay": worst_interval_wal_segments * per_segment,
        "promote": phases.get("promote", 0.0),
        "first_write": phases.get("first_write", 0.0),
    }
    return {"seconds": round(sum(parts.values()), 3), "phases_s": {k: round(v, 3) for k, v in parts.items()},
            "basis": basis, "assumptions": assumptions}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
