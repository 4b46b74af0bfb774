"""Geometry of the WAL timeline picture: pure numbers and labels, drawn by the template.

The x axis is the WAL position (LSN) measured in segments, because that is what decides a
recovery: PostgreSQL replays segment after segment and stops at the first one it cannot
fetch.  Wall-clock time would put the three post-backup writes of a drill a few hundred
milliseconds apart and the base backup hours away in production; WAL position keeps every
segment readable.  Timestamps go into the labels instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgdrill.postgres.wal import DEFAULT_SEGMENT_SIZE, Lsn, SegmentName

# Layout constants (SVG user units).  The picture scales with the page through viewBox.
WIDTH = 960
LEFT = 150  # room for lane titles
RIGHT = 20
LABEL_ROW = 16
LANE_HEIGHT = 34
LANE_GAP = 14
MAX_CELL = 120
MIN_CELL = 14  # below this, cell captions are dropped (still in the tooltip and the table)

#: Segment states, in the order of the legend.  Each has a fill and a text label, so the
#: picture never relies on colour alone (printing in black and white, colour blindness).
STATES: dict[str, str] = {
    "replayed": "archived and replayed by the recovery",
    "archived": "archived, replay not recorded",
    "before_backup": "archived, older than the base backup (not needed)",
    "not_replayed": "archived but never replayed (past the point where replay stopped)",
    "missing": "missing from the archive",
    "corrupt": "damaged in the archive",
    "new_timeline": "written by the recovered cluster on its new timeline",
}


@dataclass
class Cell:
    x: float
    width: float
    state: str
    name: str
    caption: str
    rows: list[int] = field(default_factory=list)


@dataclass
class Lane:
    title: str
    subtitle: str
    y: float
    cells: list[Cell]


@dataclass
class Marker:
    kind: str  # css class: backup, fork, target, disaster
    x: float
    label: str
    detail: str
    label_y: float = 0.0
    anchor: str = "start"


@dataclass
class Tick:
    x: float
    row_id: int
    recovered: bool
    title: str


@dataclass
class Window:
    x: float
    width: float
    label: str


@dataclass
class Timeline:
    width: int
    height: int
    lanes: list[Lane]
    markers: list[Marker]
    ticks: list[Tick]
    rpo_window: Window | None
    top: float
    bottom: float
    segments: list[dict[str, Any]]
    """One row per segment shown (name, timeline, state, ledger rows): the table under the picture."""
    legend: list[tuple[str, str]]
    notes: list[str]


def _lsn(text: Any) -> Lsn | None:
    try:
        return Lsn.parse(str(text)) if text else None
    except ValueError:
        return None


def _segment(name: Any, size: int) -> SegmentName | None:
    try:
        return SegmentName.parse(str(name)[:24], size) if name else None
    except ValueError:
        return None


def _fault_segments(faults: list[dict[str, Any]], size: int) -> dict[str, str]:
    """Segment name → ``missing`` / ``corrupt``, from the faults' evidence.

    Fault kinds differ in how they word their evidence, so any evidence key that says
    deleted/removed or corrupt/damaged/truncated and lists segments (or dicts with a
    ``segment``) counts."""
    marked: dict[str, str] = {}
    for fault in faults:
        evidence = fault.get("evidence") or {}
        if not isinstance(evidence, dict):
            continue
        for key, value in evidence.items():
            lowered = key.lower()
            if any(w in lowered for w in ("delet", "remov", "missing")):
                state = "missing"
            elif any(w in lowered for w in ("corrupt", "damag", "truncat")):
                state = "corrupt"
            else:
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                name = item.get("segment") if isinstance(item, dict) else item
                if _segment(name, size):
                    marked[str(name)[:24]] = state
    return marked


def build_timeline(drill: dict[str, Any]) -> Timeline | None:
    """The picture of one drill, or None when the drill never got as far as an archive."""
    archive = drill.get("archive") or {}
    recovery = drill.get("recovery") or {}
    ledger = drill.get("ledger") or {}
    rpo = drill.get("rpo") or {}
    size = int((drill.get("source") or {}).get("segment_size") or DEFAULT_SEGMENT_SIZE)
    timelines: dict[int, set[int]] = {}
    for key, info in (archive.get("timelines") or {}).items():
        try:
            timelines[int(key)] = {int(n) for n in (info or {}).get("segments", [])}
        except (TypeError, ValueError):
            continue
    if not timelines and not recovery.get("restored_segments"):
        return None

    gaps: dict[str, str] = {}
    for gap in archive.get("gaps") or []:
        for name in gap.get("segments") or []:
            gaps[str(name)] = "missing"
    gaps.update(_fault_segments(drill.get("faults") or [], size))
    restored = {str(n)[:24] for n in recovery.get("restored_segments") or []}
    beyond = {str(n) for n in archive.get("segments_beyond_fork") or []}
    begin = _segment(archive.get("begin_wal"), size)
    fork = _lsn(recovery.get("fork_lsn"))
    new_tl = recovery.get("timeline") if isinstance(recovery.get("timeline"), int) else None

    # Ledger rows by segment, and which of them came back: the headline path's lost writes
    # (by write sequence), or the missing row ids of a result from before per-path measures.
    missing = ledger.get("missing") if isinstance(ledger.get("missing"), dict) else {}
    missing_ids = {(str(t), i) for t, ids in missing.items() if isinstance(ids, list) for i in ids
                   if isinstance(i, int)}
    lost_seqs = {w.get("seq") for w in _headline_lost(drill) if isinstance(w, dict) and w.get("seq") is not None}
    entries = [e for e in ledger.get("entries") or [] if isinstance(e, dict) and isinstance(e.get("row_id"), int)]

    for name in list(gaps) + list(restored) + list(beyond):
        seg = _segment(name, size)
        if seg:
            timelines.setdefault(seg.timeline, set())
    numbers: set[int] = set()
    for tli, segs in timelines.items():
        numbers |= segs
    for name in list(gaps) + list(restored):
        seg = _segment(name, size)
        if seg:
            numbers.add(seg.number)
    for entry in entries:
        lsn = _lsn(entry.get("lsn"))
        if lsn:
            numbers.add(lsn.segment(size))
    if begin:
        numbers.add(begin.number)
    if fork:
        numbers.add(fork.segment(size))
    if not numbers:
        return None
    lo, hi = min(numbers), max(numbers)
    columns = hi - lo + 1
    cell = max(MIN_CELL, min(MAX_CELL, (WIDTH - LEFT - RIGHT) / columns))

    def x_of(position: float) -> float:
        return round(LEFT + (position - lo) * cell, 1)

    def x_lsn(lsn: Lsn) -> float:
        return x_of(lsn.value / size)

    markers: list[Marker] = []
    backup_id = archive.get("backup_id") or (drill.get("backups") or [{}])[0].get("backup_id")
    if begin:
        markers.append(Marker("backup", x_of(begin.number), f"base backup {backup_id or ''}".strip(),
                              f"begin WAL {begin.name}"))
    last_committed = _lsn((rpo.get("last_committed") or {}).get("lsn"))
    if fork:
        markers.append(Marker("fork", x_lsn(fork), f"replay stopped at {fork}",
                              f"the recovered cluster forked onto timeline {new_tl} here"))
    if last_committed:
        target = ((drill.get("scenario") or {}).get("recovery") or {}).get("target", "latest")
        markers.append(Marker("target", x_lsn(last_committed),
                              f"recovery target: {target} (last write {last_committed})",
                              "the last committed write before the disaster"))
    disaster_at = drill.get("disaster_declared_at")
    if disaster_at:
        end = max((SegmentName(t, max(s), size).end_lsn for t, s in timelines.items() if s and t != new_tl),
                  default=last_committed)
        if end is not None:
            markers.append(Marker("disaster", x_lsn(end), f"disaster {str(disaster_at)[11:23]} UTC",
                                  f"source cluster lost at {disaster_at}"))
    label_rows = _place_labels(markers)
    lane_names = sorted(timelines)
    show_new = new_tl is not None and fork is not None and new_tl not in timelines
    n_lanes = len(lane_names) + (1 if show_new else 0)
    top = LABEL_ROW * max(label_rows, 1) + 10
    lanes: list[Lane] = []
    table: list[dict[str, Any]] = []
    rows_by_segment: dict[tuple[int, int], list[int]] = {}
    for entry in entries:
        seg = _segment(entry.get("walfile"), size)
        if seg:
            rows_by_segment.setdefault((seg.timeline, seg.number), []).append(int(entry.get("row_id", 0)))

    for index, tli in enumerate(lane_names):
        y = top + index * (LANE_HEIGHT + LANE_GAP)
        cells: list[Cell] = []
        for number in range(lo, hi + 1):
            seg = SegmentName(tli, number, size)
            name = seg.name
            if name in gaps:
                state = gaps[name]
            elif number not in timelines[tli]:
                continue  # never written on this timeline: leave the lane empty there
            elif name in restored:
                state = "replayed"
            elif name in beyond or (fork is not None and tli != new_tl and seg.start_lsn >= fork
                                    and recovery.get("promoted")):
                state = "not_replayed"
            elif begin is not None and tli == begin.timeline and number < begin.number:
                state = "before_backup"
            else:
                state = "archived"
            rows = sorted(rows_by_segment.get((tli, number), []))
            cells.append(Cell(x_of(number), round(cell, 1), state, name, name[-4:] if cell >= 34 else "", rows))
            table.append({"name": name, "timeline": tli, "state": state, "meaning": STATES[state],
                          "rows": _ranges(rows)})
        lanes.append(Lane(f"timeline {tli}", "source archive" if tli != new_tl else "recovered", y, cells))

    if show_new and fork is not None and new_tl is not None:
        y = top + len(lane_names) * (LANE_HEIGHT + LANE_GAP)
        start = fork.segment(size)
        first = SegmentName(new_tl, start, size)
        lanes.append(Lane(f"timeline {new_tl}", str(recovery.get("cluster") or "recovered cluster"), y,
                          [Cell(x_of(start), round(max(cell, (WIDTH - RIGHT) - x_of(start)), 1) if start == hi
                                else round(cell * (hi - start + 1), 1),
                                "new_timeline", first.name, f"TL{new_tl} from {fork}" if cell >= 34 else "")]))
        table.append({"name": first.name, "timeline": new_tl, "state": "new_timeline",
                      "meaning": STATES["new_timeline"] + f" (forked at {fork})", "rows": ""})

    bottom = top + n_lanes * (LANE_HEIGHT + LANE_GAP)

    ticks: list[Tick] = []
    for entry in entries:
        lsn = _lsn(entry.get("lsn"))
        if lsn is None:
            continue
        key = (str(entry.get("table")), int(entry.get("row_id", 0)))
        if entry.get("state", "acked") != "acked":
            continue  # in doubt: nothing was owed (listed with the path instead)
        recovered = key not in missing_ids and entry.get("seq") not in lost_seqs
        ticks.append(Tick(x_lsn(lsn), key[1], recovered,
                          f"{entry.get('op') or 'insert'} of row {key[1]} ({key[0]}) at {lsn}, "
                          f"{entry.get('committed_at') or 'commit time unknown'}: "
                          + ("recovered" if recovered else "LOST after recovery")))

    window = None
    last_recovered = _lsn((rpo.get("last_recovered") or {}).get("lsn"))
    if last_committed and rpo.get("lost_writes"):
        start_x = x_lsn(last_recovered) if last_recovered else x_of(lo)
        window = Window(start_x, max(round(x_lsn(last_committed) - start_x, 1), 2.0),
                        (f"RPO window {float(rpo['seconds']):.3f} s" if isinstance(rpo.get("seconds"), (int, float))
                         else "RPO window (length unknown)") + f", {rpo.get('lost_writes')} write(s) lost"
                        + (f" on {rpo['path']}" if rpo.get("path") and len(drill.get("measures") or []) > 1 else ""))

    notes: list[str] = []
    if cell == MIN_CELL:
        notes.append(f"{columns} segments: captions omitted in the picture; every segment is in the table below.")
    used = {c.state for lane in lanes for c in lane.cells}
    legend = [(state, text) for state, text in STATES.items() if state in used]
    return Timeline(WIDTH, int(bottom + 40), lanes, markers, ticks, window, top, bottom, table, legend, notes)


def _headline_lost(drill: dict[str, Any]) -> list[Any]:
    """The lost writes of the headline path (``rpo.lost``, or the matching measure's)."""
    rpo = drill.get("rpo") if isinstance(drill.get("rpo"), dict) else {}
    if isinstance(rpo.get("lost"), list):
        return list(rpo["lost"])
    for measure in drill.get("measures") or []:
        if isinstance(measure, dict) and measure.get("path") == rpo.get("path") \
                and isinstance(measure.get("lost"), list):
            return list(measure["lost"])
    return []


def _place_labels(markers: list[Marker]) -> int:
    """Stack marker labels in rows so that markers at the same WAL position stay readable."""
    rows_end: list[float] = []
    for marker in sorted(markers, key=lambda m: m.x):
        width = 6.2 * len(marker.label) + 12
        # Labels near the right edge grow leftwards instead of running off the picture.
        if marker.x + width > WIDTH - RIGHT:
            marker.anchor = "end"
            start = marker.x - width
        else:
            start = marker.x
        for row, end in enumerate(rows_end):
            if start > end:
                rows_end[row] = start + width
                break
        else:
            row = len(rows_end)
            rows_end.append(start + width)
        marker.label_y = LABEL_ROW * (row + 1)
    return len(rows_end)


def _ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7, 8]`` → ``"1-3, 7, 8"``: 24 baseline rows should not take 24 words."""
    if not ids:
        return ""
    runs: list[list[int]] = []
    for value in sorted(set(ids)):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    # Only runs of three or more become ranges: "26-27" reads like a single id.
    parts: list[str] = []
    for a, b in runs:
        parts.extend([str(a)] if a == b else [str(a), str(b)] if b == a + 1 else [f"{a}-{b}"])
    return ", ".join(parts)


id_ranges = _ranges
