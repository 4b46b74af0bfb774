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
