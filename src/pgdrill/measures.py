"""RPO and RTO from the ledger and the recovery's clock, compared with the targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .findings import RPO_EXCEEDED, RTO_EXCEEDED, Finding
from .ledger import LedgerEntry


@dataclass(frozen=True)
class Rpo:
    seconds: float
    """Last committed write before the disaster minus the last write present after recovery."""
    lost_writes: int
    last_committed: LedgerEntry | None
    last_recovered: LedgerEntry | None
    lost_out_of_order: list[int] = field(default_factory=list)
    """Lost rows committed *before* a recovered one: replay is a prefix, so this means damage."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "lost_writes": self.lost_writes,
            "last_committed": _entry(self.last_committed),
            "last_recovered": _entry(self.last_recovered),
            "lost_out_of_order": self.lost_out_of_order,
        }


def _entry(entry: LedgerEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"table": entry.table, "row_id": entry.row_id, "committed_at": entry.committed_at,
            "lsn": entry.lsn, "walfile": entry.walfile}


def compute_rpo(entries: list[LedgerEntry], recovered: dict[str, set[int]],
                disaster_at: datetime | None = None) -> Rpo:
    """``recovered`` maps table → row ids found in the recovered cluster."""
    committed = [e for e in entries if disaster_at is None or e.committed <= disaster_at]
    present = [e for e in committed if e.row_id in recovered.get(e.table, set())]
    lost = [e for e in committed if e.row_id not in recovered.get(e.table, set())]
    last_committed = max(committed, key=lambda e: e.committed, default=None)
    last_recovered = max(present, key=lambda e: e.committed, default=None)
    if not lost or last_committed is None:
        seconds = 0.0
    elif last_recovered is None:
        first = min(committed, key=lambda e: e.committed)
        seconds = (last_committed.committed - first.committed).total_seconds()
    else:
        seconds = (last_committed.committed - last_recovered.committed).total_seconds()
    out_of_order = sorted(e.row_id for e in lost if last_recovered and e.committed < last_recovered.committed)
    return Rpo(max(seconds, 0.0), len(lost), last_committed, last_recovered, out_of_order)


def rpo_findings(rpo: Rpo, target_seconds: float) -> list[Finding]:
    if rpo.seconds <= target_seconds:
        return []
    return [Finding(RPO_EXCEEDED, f"{rpo.lost_writes} writes lost over {rpo.seconds:.1f}s, "
                                  f"above the RPO target of {target_seconds:.0f}s",
                    "rpo", evidence=rpo.to_dict())]


def rto_findings(total_seconds: float | None, phases: dict[str, float], target_seconds: float) -> list[Finding]:
    if total_seconds is None or total_seconds <= target_seconds:
        return []
    return [Finding(RTO_EXCEEDED, f"recovery took {total_seconds:.1f}s, above the RTO target of "
                                  f"{target_seconds:.0f}s", "rto",
                    evidence={"total_s": round(total_seconds, 3), "phases_s": {k: round(v, 3) for k, v in phases.items()}})]
