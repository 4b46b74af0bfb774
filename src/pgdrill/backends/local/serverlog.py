"""Reading the local PostgreSQL server log: the one set of filters recovery, promotion and
crash restart all use for ``fatal_lines``, ``log_excerpt`` and ``restored_segments``.
"""

from __future__ import annotations

import re

# Our own readiness polls produce these while the server starts; they are not evidence.
POLL_NOISE = ("the database system is starting up", "the database system is not yet accepting connections",
              "the database system is shutting down", "the database system is in recovery mode")
# Lines of an archive recovery, a crash restart or a promotion worth carrying into a report.
EVENT_KEYS = ("restored log file", "redo", "recovery", "selected new timeline", "last completed transaction",
              "consistent recovery state", "was interrupted", "not properly shut down", "invalid record length",
              "received promote request", "ready to accept", "checkpoint complete", "FATAL", "PANIC")
REDO_DONE = "redo done at"
_RESTORED = re.compile(r'restored log file "([0-9A-F]{24}(?:\.partial)?)" from archive')


def is_noise(line: str) -> bool:
    return any(n in line for n in POLL_NOISE)


def fatal(lines: list[str]) -> list[str]:
    """FATAL and PANIC lines, without those our own connection polls cause."""
    return [ln for ln in lines if ("FATAL" in ln or "PANIC" in ln) and not is_noise(ln)]


def events(lines: list[str]) -> list[str]:
    """The recovery/promotion/crash-restart lines (see ``EVENT_KEYS``), poll noise left out."""
    return [ln for ln in lines if any(k in ln for k in EVENT_KEYS) and not is_noise(ln)]


def restored_segments(lines: list[str]) -> list[str]:
    """Segment names ``restore_command`` fetched from the archive, in order."""
    return [m.group(1) for ln in lines if (m := _RESTORED.search(ln))]


# walfetch's line per restore_command call (``walfetch.LOG_TAG``), only when wal_max_parallel > 1.
_WALFETCH = re.compile(r"pgdrill-walfetch: (\S+) served=(\S+) max_parallel=(\d+)(?: prefetched=(\d+)/(\d+))?")


def walfetch_stats(lines: list[str]) -> dict[str, int] | None:
    """What the parallel WAL fetch did, from its lines in the server log; ``None`` without any
    (``wal_max_parallel`` 1: the plain barman-cloud-wal-restore).

    ``from_spool``: requests answered from the spool; ``fetched``: requests downloaded on demand;
    ``not_found``/``failed``: requests that returned non-zero; ``prefetched``/``prefetch_tried``:
    extra segments downloaded into the spool / attempted.
    """
    stats = {"max_parallel": 0, "requests": 0, "from_spool": 0, "fetched": 0, "not_found": 0, "failed": 0,
             "prefetched": 0, "prefetch_tried": 0}
    for line in lines:
        match = _WALFETCH.search(line)
        if not match:
            continue
        served = match.group(2)
        stats["requests"] += 1
        stats["max_parallel"] = max(stats["max_parallel"], int(match.group(3)))
        key = {"spool": "from_spool", "fetched": "fetched", "not-found": "not_found"}.get(served, "failed")
        stats[key] += 1
        if match.group(4) is not None:
            stats["prefetched"] += int(match.group(4))
            stats["prefetch_tried"] += int(match.group(5))
    return stats if stats["requests"] else None
