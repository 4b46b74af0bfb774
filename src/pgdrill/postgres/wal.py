"""WAL positions and segment names, as PostgreSQL and barman-cloud spell them.

A segment name is 24 hex digits: timeline (8), then the segment number split
into a "log" part (8) and a "seg" part (8), where one log file holds
``2**32 // segment_size`` segments.  barman-cloud stores a segment under
``wals/<first 16 hex digits>/<name>[.gz|.bz2|...]``.

>>> Lsn.parse("0/70000E8").segment(16 * 1024 * 1024)
7
>>> SegmentName.parse("000000010000000000000009").number
9
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")
_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_HISTORY = re.compile(r"^([0-9A-F]{8})\.history$")
# The compression suffixes barman-cloud-wal-archive can produce.
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".snappy", ".lz4", ".zst")


def segments_per_log(segment_size: int) -> int:
    if segment_size <= 0 or segment_size & (segment_size - 1):
        raise ValueError(f"WAL segment size must be a power of two, got {segment_size}")
    return 0x1_0000_0000 // segment_size


@dataclass(frozen=True, order=True)
class Lsn:
    """A WAL location (byte position in the WAL stream)."""

    value: int

    @classmethod
    def parse(cls, text: str) -> Lsn:
        match = _LSN.match(text.strip())
        if not match:
            raise ValueError(f"not an LSN: {text!r} (expected e.g. 0/70000E8)")
        return cls((int(match.group(1), 16) << 32) | int(match.group(2), 16))

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def segment(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
        """Number of the segment that holds the byte at this LSN."""
        return self.value // segment_size

    def segment_name(self, timeline: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> SegmentName:
        return SegmentName(timeline, self.segment(segment_size), segment_size)


@dataclass(frozen=True, order=True)
class SegmentName:
    """One WAL segment file, e.g. ``000000010000000000000009``."""

    timeline: int
    number: int
    segment_size: int = DEFAULT_SEGMENT_SIZE

    @classmethod
    def parse(cls, name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> SegmentName:
        match = _SEGMENT.match(name)
        if not match:
            raise ValueError(f"not a WAL segment name: {name!r}")
        timeline, log, seg = (int(part, 16) for part in match.groups())
        per_log = segments_per_log(segment_size)
        if seg >= per_log:
            raise ValueError(
                f"{name}: segment part {seg:#x} is out of range for {segment_size}-byte segments"
            )
        return cls(timeline, log * per_log + seg, segment_size)

    @property
    def name(self) -> str:
        per_log = segments_per_log(self.segment_size)
        log, seg = divmod(self.number, per_log)
        return f"{self.timeline:08X}{log:08X}{seg:08X}"

    @property
    def directory(self) -> str:
        """The ``wals/`` sub-folder barman-cloud files this segment under."""
        return self.name[:16]

    @property
    def start_lsn(self) -> Lsn:
        return Lsn(self.number * self.segment_size)

    @property
    def end_lsn(self) -> Lsn:
        return Lsn((self.number + 1) * self.segment_size)

    def shifted(self, delta: int) -> SegmentName:
        return SegmentName(self.timeline, self.number + delta, self.segment_size)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class WalObjectName:
    """What an object under ``wals/`` is, from its base name alone."""

    kind: str  # "segment", "partial", "backup_label", "history"
    timeline: int
    segment: SegmentName | None
    compression: str | None

    @classmethod
    def parse(cls, basename: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> WalObjectName | None:
        """Classify an archived file name; ``None`` for names that are not WAL at all."""
        compression = None
        for suffix in COMPRESSION_SUFFIXES:
            if basename.endswith(suffix):
                compression = suffix[1:]
                basename = basename[: -len(suffix)]
                break
        history = _HISTORY.match(basename)
        if history:
            return cls("history", int(history.group(1), 16), None, compression)
        head, _, rest = basename.partition(".")
        try:
            segment = SegmentName.parse(head, segment_size)
        except ValueError:
            return None
        if rest == "":
            kind = "segment"
        elif rest == "partial":
            kind = "partial"
        elif re.fullmatch(r"[0-9A-F]{8}\.backup", rest):
            kind = "backup_label"
        else:
            return None
        return cls(kind, segment.timeline, segment, compression)


@dataclass(frozen=True)
class TimelineSwitch:
    """One line of a ``.history`` file: the parent timeline ended at ``switchpoint``."""

    parent_timeline: int
    switchpoint: Lsn
    reason: str


def parse_history(text: str) -> list[TimelineSwitch]:
    """Parse a timeline history file (``00000002.history``)."""
    switches = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 2:
            raise ValueError(f"malformed timeline history line: {raw!r}")
        switches.append(
            TimelineSwitch(int(parts[0]), Lsn.parse(parts[1]), parts[2] if len(parts) > 2 else "")
        )
    return switches
