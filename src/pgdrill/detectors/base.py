"""What every detector shares: the outcome of a check that could not run, id ranges for messages."""

from __future__ import annotations

import time
from typing import Any

from pgdrill.findings import COULD_NOT_VERIFY, Finding
from pgdrill.results import DetectorOutcome, DetectorStatus


def could_not(name: str, why: str, started: float | None = None, **evidence: Any) -> DetectorOutcome:
    """The detector ``name`` could not run: never clean, always with a COULD_NOT_VERIFY finding.
    ``started``: when it began (``time.monotonic()``), or None when it never began."""
    return DetectorOutcome(name, DetectorStatus.COULD_NOT_VERIFY, why,
                           [Finding(COULD_NOT_VERIFY, f"{name}: {why}", name, evidence=evidence)],
                           time.monotonic() - started if started else 0.0)


def id_ranges(ids: list[int]) -> str:
    parts, start, prev = [], None, None
    for i in sorted(ids):
        if start is None:
            start = prev = i
        elif i == prev + 1:  # type: ignore[operator]
            prev = i
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)
