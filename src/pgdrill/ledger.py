"""The ledger: every write the workload committed, kept outside the database under test.

It is the drill's ground truth after the disaster: which rows must come back, when each
was committed, at which LSN and in which WAL segment.  One JSON object per line, flushed
and fsynced at every append, so it survives whatever happens to the cluster.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from .wal import Lsn


@dataclass(frozen=True)
class LedgerEntry:
    table: str
    row_id: int
    committed_at: str
    """Server clock right after COMMIT returned (ISO 8601, UTC)."""
    lsn: str
    """WAL insert position right after COMMIT returned: at or past the commit record's end."""
    walfile: str
    """``pg_walfile_name`` of that position: the segment that holds the commit."""
    phase: str
    """``baseline`` (before the base backup) or ``after_backup``."""
    op: str = "insert"
    """``insert`` (a new row: what row counts check) or ``update`` (an existing row changed: only
    content digests can tell whether it came back). Defaults keep older ledgers readable."""

    @property
    def committed(self) -> datetime:
        return datetime.fromisoformat(self.committed_at)

    @property
    def position(self) -> Lsn:
        return Lsn.parse(self.lsn)


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.entries: list[LedgerEntry] = []
        if path.exists():
            self.entries = [LedgerEntry(**json.loads(line)) for line in path.read_text().splitlines() if line]

    def append(self, entry: LedgerEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.entries.append(entry)

    def ids(self, table: str) -> set[int]:
        return {e.row_id for e in self.entries if e.table == table}

    def tables(self) -> list[str]:
        return sorted({e.table for e in self.entries})

    def last(self) -> LedgerEntry | None:
        return max(self.entries, key=lambda e: e.position, default=None)

    def after_backup(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.phase == "after_backup"]

    def __len__(self) -> int:
        """Committed rows: updates change rows that are already counted."""
        return sum(1 for e in self.entries if e.op == "insert")
