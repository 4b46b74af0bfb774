"""RPO, lost writes and RTO of one recovery path, from the ledger and the recovered rows. Pure.

Every figure here follows a definition in docs/measures.md; the unit tests in
tests/test_measures.py check each definition both ways.

A *recovery path* is one way a drill got a writable cluster back after a disaster: a failover
promotion, a restore from the archive, one hop of a timeline chain, one point-in-time recovery.
Each path owes the acknowledged writes up to its *bound* (the last acknowledged write before the
disaster, or the write at a point-in-time target) and is measured on its own.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pgdrill.findings import RPO_EXCEEDED, RTO_EXCEEDED, Finding
from pgdrill.workload.ledger import LedgerEntry

#: What a recovered cluster holds for one key: absent (None) or present with its version
#: (0 when the fixture has no version column).
RowState = Mapping[str, Mapping[int, int | None]]
PathKind = Literal["archive", "failover", "crash"]


# -- which writes' effects are in the recovered cluster ---------------------------------------

def effects_present(writes: Sequence[LedgerEntry], state: RowState, versioned: bool = True) -> dict[int, bool | None]:
    """For every write (by ``seq``): is its effect in ``state``?  ``None``: cannot tell.

    Per key, the recovered row is the result of some prefix of that key's writes (replay applies
    WAL in order).  The prefix taken is the longest one whose result equals what was found:
    present with version v means every write to the key up to version v; absent means either
    nothing, or everything up to a delete.  Without a version column only inserts and deletes
    can be judged (an update's effect is ``None``).
    """
    by_key: dict[tuple[str, int], list[LedgerEntry]] = defaultdict(list)
    for write in sorted(writes, key=lambda w: w.seq):
        by_key[write.key].append(write)
    result: dict[int, bool | None] = {}
    for (table, row_id), history in by_key.items():
        rows = state.get(table, {})
        present = row_id in rows
        version = rows.get(row_id) if present else None
        if present and versioned and version is not None:
            producer = [w for w in history if w.version == version and w.op != "delete"]
            if not producer:
                # A version no write of the ledger set (damage, or a write outside the ledger):
                # nothing can be said about this key's writes.
                for w in history:
                    result[w.seq] = None
                continue
            # Everything up to the write that produced this version is applied, nothing after it.
            for w in history:
                result[w.seq] = w.seq <= producer[0].seq
            continue
        if present:  # no usable version: inserts are present, deletes not, updates unknown
            for w in history:
                result[w.seq] = True if w.op == "insert" else (False if w.op == "delete" else None)
            continue
        deletes = [w.seq for w in history if w.op == "delete"]
        last_delete = max(deletes, default=None)
        for w in history:
            result[w.seq] = last_delete is not None and w.seq <= last_delete
    return result


# -- commit time ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CommitClock:
    """Maps a write to its commit time on the *server's* clock.

    The server's own commit timestamp when the ledger has it.  A write acknowledged in the last
    moment before a disaster may lack it (the follow-up read never ran); its commit time is then
    estimated as its acknowledgement on the client clock plus the median (commit − acknowledgement)
    offset of the writes that have both, which cancels any skew between the two clocks.
    """

    offset: timedelta | None

    @classmethod
    def from_writes(cls, writes: Iterable[LedgerEntry]) -> CommitClock:
        offsets = [(w.committed - _parse(w.acked_at)).total_seconds() for w in writes
                   if w.committed is not None and w.acked_at]
        return cls(timedelta(seconds=statistics.median(offsets)) if offsets else None)

    def time(self, write: LedgerEntry) -> tuple[datetime | None, str]:
        if write.committed is not None:
            return write.committed, "commit_timestamp"
        if write.acked_at and self.offset is not None:
            return _parse(write.acked_at) + self.offset, "estimated_from_ack"
        return None, "unknown"


def _parse(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


# -- one recovery path ------------------------------------------------------------------------

@dataclass
class PathMeasure:
    """RPO, lost writes and RTO of one recovery path (docs/measures.md)."""

    path: str
    kind: PathKind
    cluster: str | None
    bound_seq: int
    """Last acknowledged write this path owes (by client sequence)."""
    target_seq: int | None = None
    """For point-in-time recovery: the write at the target (owed writes end there)."""
    expected: int = 0
    present: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)
    in_doubt: list[dict[str, Any]] = field(default_factory=list)
    unverifiable: list[dict[str, Any]] = field(default_factory=list)
    after_target_present: list[dict[str, Any]] = field(default_factory=list)
    prefix_end: dict[str, Any] | None = None
    first_lost: dict[str, Any] | None = None
    survivors_after_first_loss: list[dict[str, Any]] = field(default_factory=list)
    last_acknowledged: dict[str, Any] | None = None
    rpo_seconds: float | None = 0.0
    rpo_basis: str = "commit_timestamp"
    rpo_lower_bound: bool = False
    """True when no owed write survived: the real loss window starts before the first one."""
    rows_expected: int = 0
    rows_present: int = 0
    rto: dict[str, Any] | None = None
    disaster_at: str | None = None

    @property
    def lost_writes(self) -> int:
        return len(self.lost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "cluster": self.cluster, "disaster_at": self.disaster_at,
            "bound_seq": self.bound_seq, "target_seq": self.target_seq,
            "expected_writes": self.expected, "present_writes": self.present, "lost_writes": self.lost_writes,
            "rows_expected": self.rows_expected, "rows_present": self.rows_present,
            "rpo_seconds": None if self.rpo_seconds is None else round(self.rpo_seconds, 3),
            "rpo_basis": self.rpo_basis, "rpo_lower_bound": self.rpo_lower_bound,
            "last_acknowledged": self.last_acknowledged, "prefix_end": self.prefix_end,
            "first_lost": self.first_lost, "lost": self.lost,
            "survivors_after_first_loss": self.survivors_after_first_loss,
            "in_doubt": self.in_doubt, "unverifiable": self.unverifiable,
            "after_target_present": self.after_target_present, "rto": self.rto,
        }


def _brief(write: LedgerEntry, clock: CommitClock | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"seq": write.seq, "table": write.table, "row_id": write.row_id, "op": write.op,
                            "phase": write.phase, "committed_at": write.committed_at, "lsn": write.lsn,
                            "walfile": write.walfile}
    if clock is not None and write.committed_at is None:
        at, basis = clock.time(write)
        data["committed_at_estimated"] = at.isoformat() if at else None
        data["commit_time_basis"] = basis
    return data


def measure_path(path: str, kind: PathKind, cluster: str | None, writes: Sequence[LedgerEntry],
                 state: RowState, bound_seq: int, target_seq: int | None = None,
                 versioned: bool = True, disaster_at: str | None = None) -> PathMeasure:
    """Measure one recovery path.

    ``writes``: every write of the ledger, acknowledged and in doubt (``Ledger.all_writes``).
    ``state``: what the recovered cluster holds per ledger table.  ``bound_seq``: the last
    acknowledged write before the disaster.  ``target_seq``: for point-in-time recovery, the
    write at the target; writes after it, up to ``bound_seq``, must be absent.
    """
    ordered = sorted(writes, key=lambda w: w.seq)
    effects = effects_present(ordered, state, versioned)
    clock = CommitClock.from_writes(ordered)
    owed_until = target_seq if target_seq is not None else bound_seq
    owed = [w for w in ordered if w.acknowledged and w.seq <= owed_until]
    measure = PathMeasure(path, kind, cluster, bound_seq, target_seq, disaster_at=disaster_at)
    measure.expected = len(owed)
    if target_seq is not None:
        measure.after_target_present = [_brief(w) for w in ordered if w.acknowledged
                                        and target_seq < w.seq <= bound_seq and effects.get(w.seq)]
    measure.in_doubt = [_brief(w) | {"present": effects.get(w.seq)} for w in ordered
                        if not w.acknowledged and w.seq <= bound_seq + 1]
    measure.unverifiable = [_brief(w) for w in owed if effects.get(w.seq) is None]
    lost = [w for w in owed if effects.get(w.seq) is False]
    measure.lost = [_brief(w, clock) for w in lost]
    measure.present = sum(1 for w in owed if effects.get(w.seq))
    inserts = [w for w in owed if w.op == "insert"]
    measure.rows_expected = len(inserts)
    measure.rows_present = sum(1 for w in inserts if effects.get(w.seq))
    if not owed:
        measure.rpo_seconds = 0.0
        return measure
    last = owed[-1]
    measure.last_acknowledged = _brief(last, clock)
    first_lost = lost[0] if lost else None
    prefix = [w for w in owed if first_lost is None or w.seq < first_lost.seq]
    prefix_end = prefix[-1] if prefix else None
    measure.prefix_end = _brief(prefix_end, clock) if prefix_end else None
    if first_lost is None:
        measure.rpo_seconds = 0.0
        return measure
    measure.first_lost = _brief(first_lost, clock)
    measure.survivors_after_first_loss = [_brief(w) for w in owed if w.seq > first_lost.seq and effects.get(w.seq)]
    end, end_basis = clock.time(last)
    start_write = prefix_end if prefix_end is not None else first_lost
    start, start_basis = clock.time(start_write)
    measure.rpo_lower_bound = not any(effects.get(w.seq) for w in owed)
    bases = {end_basis, start_basis}
    measure.rpo_basis = "unknown" if "unknown" in bases else (
        "estimated_from_ack" if "estimated_from_ack" in bases else "commit_timestamp")
    measure.rpo_seconds = None if end is None or start is None else max((end - start).total_seconds(), 0.0)
    return measure


def worst_path(measures: Sequence[PathMeasure]) -> PathMeasure | None:
    """The drill's headline: the path with the largest RPO, then the most lost writes."""
    if not measures:
        return None
    return max(measures, key=lambda m: (m.rpo_seconds if m.rpo_seconds is not None else float("inf"),
                                        m.lost_writes))


# -- RTO ---------------------------------------------------------------------------------------

@dataclass
class RtoClock:
    """Contiguous RTO phases from the moment the disaster is declared (docs/measures.md, "RTO").

    ``mark(name)`` closes the phase running since the previous mark; ``exclude(name)`` closes it
    as a harness wait (reaping a killed process, a thread join, a verification in between) that a
    real outage would not contain.  ``total`` is the sum of the phases; ``wall`` = total +
    excluded, the time from the disaster to the end of the last phase.
    """

    kind: PathKind
    declared_mono: float
    declared_at: str
    phases: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, float] = field(default_factory=dict)
    _last: float = 0.0

    def __post_init__(self) -> None:
        self._last = self.declared_mono

    def _close(self, into: dict[str, float], name: str, now: float) -> None:
        into[name] = into.get(name, 0.0) + max(now - self._last, 0.0)
        self._last = max(now, self._last)

    def mark(self, name: str, now: float) -> None:
        self._close(self.phases, name, now)

    def exclude(self, name: str, now: float) -> None:
        self._close(self.excluded, name, now)

    def add_phases(self, phases: Mapping[str, float], started: float, excluded: Iterable[str] = ()) -> None:
        """Fold a backend's own contiguous phases (seconds, in order) that began at ``started``:
        the time before ``started`` is excluded as harness, the rest becomes phases."""
        self.exclude("harness", started)
        skip = set(excluded)
        for name, seconds in phases.items():
            target = self.excluded if name in skip else self.phases
            target[name] = target.get(name, 0.0) + seconds
            self._last += seconds

    @property
    def total(self) -> float:
        return sum(self.phases.values())

    @property
    def wall(self) -> float:
        return self.total + sum(self.excluded.values())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "declared_at": self.declared_at, "total_s": round(self.total, 3),
                "wall_s": round(self.wall, 3), "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
                "excluded_s": {k: round(v, 3) for k, v in self.excluded.items() if v > 0.0005}}


# -- findings ------------------------------------------------------------------------------------

def rpo_findings(measure: PathMeasure, target_seconds: float) -> list[Finding]:
    if measure.rpo_seconds is None or measure.rpo_seconds <= target_seconds:
        return []
    return [Finding(RPO_EXCEEDED, f"{measure.path}: {measure.lost_writes} acknowledged write(s) lost over "
                                  f"{measure.rpo_seconds:.1f}s, above the RPO target of {target_seconds:.0f}s",
                    "rpo", evidence={"path": measure.path, "rpo_s": measure.rpo_seconds,
                                     "lost": measure.lost[:50], "prefix_end": measure.prefix_end})]


def rto_findings(path: str, rto: Mapping[str, Any] | None, bound_seconds: float) -> list[Finding]:
    total = (rto or {}).get("total_s")
    if total is None or total <= bound_seconds:
        return []
    return [Finding(RTO_EXCEEDED, f"{path}: recovery took {total:.1f}s, above the bound of {bound_seconds:.0f}s",
                    "rto", evidence={"path": path, **dict(rto or {})})]
