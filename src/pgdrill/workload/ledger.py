"""The ledger: every write the workload sent, and what became of it, kept outside the database.

It is the drill's ground truth after the disaster (definitions: docs/measures.md).  Each write
goes through up to three events, each one JSON line, flushed and fsynced before the workload
goes on, so the file survives whatever happens to the cluster:

``sent``    the statement is about to leave the client (client sequence number, key, op, version);
``acked``   COMMIT returned: the write is *acknowledged* and the recovery owes it
            (transaction id, the WAL insert position inside the transaction);
``detail``  read on the same connection right after the acknowledgement: the server's own
            commit timestamp and the WAL insert position after the commit, so the commit
            record lies between the two positions, and the segment that holds it.

A ``sent`` without ``acked`` is *in doubt*: the client never learned whether it committed.
A ``failed`` event means the server rejected the statement, so nothing was committed.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pgdrill.postgres.wal import Lsn

Op = Literal["insert", "update", "delete"]
State = Literal["acked", "in_doubt", "failed"]


@dataclass(frozen=True)
class LedgerEntry:
    table: str
    row_id: int
    committed_at: str | None
    """The server's commit timestamp (``pg_xact_commit_timestamp``, ISO 8601, UTC); ``None`` when
    the acknowledgement arrived but the follow-up read did not (the disaster struck in between)."""
    lsn: str | None
    """WAL insert position read right after COMMIT returned: the commit record ends at or before it."""
    walfile: str | None
    """The segment that holds the commit record (``walfile_exact``) or the best bound for it."""
    phase: str
    """Workload phase: ``baseline`` (before the base backup), ``after_backup``, ``load``..."""
    op: str = "insert"
    """``insert``, ``update`` or ``delete`` of the row with key ``row_id``."""
    seq: int = 0
    """Client-side sequence number: the order in which writes were sent (and acknowledged)."""
    version: int = 0
    """The row version this write leaves behind (the fixture's version column); 0 when the
    fixture has none.  A recovered row with version v holds every write to it up to v."""
    state: str = "acked"
    sent_at: str | None = None
    """Client wall clock when the statement was sent (evidence only: never compared with server time)."""
    acked_at: str | None = None
    """Client wall clock when COMMIT returned."""
    xid: str | None = None
    lsn_lo: str | None = None
    """WAL insert position inside the transaction: the commit record starts at or after it."""
    walfile_exact: bool = False
    error: str | None = None

    @property
    def committed(self) -> datetime | None:
        return datetime.fromisoformat(self.committed_at) if self.committed_at else None

    @property
    def position(self) -> Lsn:
        """An LSN at or after the end of the commit record when known, else the lower bound."""
        text = self.lsn or self.lsn_lo
        return Lsn.parse(text) if text else Lsn(0)

    @property
    def key(self) -> tuple[str, int]:
        return (self.table, self.row_id)

    @property
    def acknowledged(self) -> bool:
        return self.state == "acked"


_FIELDS = set(LedgerEntry.__dataclass_fields__)


class Ledger:
    """Append-only, fsynced event log of writes; folded by ``seq`` on load.

    ``entries`` holds the acknowledged writes in sequence order (what a recovery owes);
    ``in_doubt`` the writes sent whose acknowledgement never arrived.
    """

    def __init__(self, path: Path):
        self.path = path
        self._by_seq: dict[int, LedgerEntry] = {}
        self._lock = threading.Lock()
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if line.strip():
                    self._fold(json.loads(line), number)

    # -- reading -----------------------------------------------------------------------

    def _fold(self, record: dict[str, Any], number: int) -> None:
        event = record.pop("event", None)
        if event is None:  # a ledger written before events existed: one line per acknowledged write
            seq = record.get("seq") or number
            entry = LedgerEntry(**{k: v for k, v in record.items() if k in _FIELDS} | {"seq": seq})
            self._by_seq[seq] = entry
            return
        seq = int(record.pop("seq"))
        if event == "sent":
            self._by_seq[seq] = LedgerEntry(committed_at=None, lsn=None, walfile=None, seq=seq, state="in_doubt",
                                            **{k: v for k, v in record.items() if k in _FIELDS})
            return
        current = self._by_seq.get(seq)
        if current is None:
            raise ValueError(f"{self.path}: line {number}: event {event!r} for unknown write {seq}")
        updates = {k: v for k, v in record.items() if k in _FIELDS}
        if event == "acked":
            updates["state"] = "acked"
        elif event == "failed":
            updates["state"] = "failed"
        elif event != "detail":
            raise ValueError(f"{self.path}: line {number}: unknown event {event!r}")
        self._by_seq[seq] = replace(current, **updates)

    def _snapshot(self) -> list[LedgerEntry]:
        # Readers may run while a load thread appends: copy under the lock.
        with self._lock:
            return [e for _, e in sorted(self._by_seq.items())]

    @property
    def entries(self) -> list[LedgerEntry]:
        return [e for e in self._snapshot() if e.state == "acked"]

    @property
    def in_doubt(self) -> list[LedgerEntry]:
        return [e for e in self._snapshot() if e.state == "in_doubt"]

    @property
    def all_writes(self) -> list[LedgerEntry]:
        """Acknowledged and in-doubt writes (not the failed ones), in sequence order."""
        return [e for e in self._snapshot() if e.state != "failed"]

    def acked_through(self) -> int:
        """The highest acknowledged sequence number (0 for none): the cut-off at a disaster."""
        return max((e.seq for e in self.entries), default=0)

    def next_seq(self) -> int:
        """Call with the lock held (``sent``) or from a single thread."""
        return max(self._by_seq, default=0) + 1

    def max_row_id(self) -> int:
        return max((e.row_id for e in self._snapshot()), default=0)

    def ids(self, table: str) -> set[int]:
        """Keys with an acknowledged insert."""
        return {e.row_id for e in self.entries if e.table == table and e.op == "insert"}

    def tables(self) -> list[str]:
        return sorted({e.table for e in self._snapshot()})

    def last(self) -> LedgerEntry | None:
        """The last acknowledged write."""
        entries = self.entries
        return entries[-1] if entries else None

    def after_backup(self) -> list[LedgerEntry]:
        return [e for e in self.entries if e.phase == "after_backup"]

    def __len__(self) -> int:
        """Acknowledged writes of every op."""
        return len(self.entries)

    # -- writing -----------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record) + "\n"
        with self.path.open("a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self._fold(dict(record), 0)

    def sent(self, table: str, row_id: int, op: str, phase: str, versioned: bool, sent_at: str) -> LedgerEntry:
        """Record a write about to be sent.  With ``versioned`` the write's version is its
        sequence number (what the fixture's version column will hold), else 0."""
        with self._lock:
            seq = self.next_seq()
            self._append({"event": "sent", "seq": seq, "table": table, "row_id": row_id, "op": op,
                          "phase": phase, "version": seq if versioned else 0, "sent_at": sent_at})
            return self._by_seq[seq]

    def acked(self, seq: int, xid: str | None, lsn_lo: str | None, acked_at: str) -> None:
        with self._lock:
            self._append({"event": "acked", "seq": seq, "xid": xid, "lsn_lo": lsn_lo, "acked_at": acked_at})

    def detail(self, seq: int, committed_at: str | None, lsn: str | None, walfile: str | None,
               walfile_exact: bool) -> None:
        with self._lock:
            self._append({"event": "detail", "seq": seq, "committed_at": committed_at, "lsn": lsn,
                          "walfile": walfile, "walfile_exact": walfile_exact})

    def failed(self, seq: int, error: str) -> None:
        with self._lock:
            self._append({"event": "failed", "seq": seq, "error": error})

    def get(self, seq: int) -> LedgerEntry:
        with self._lock:
            return self._by_seq[seq]


def entry_dict(entry: LedgerEntry) -> dict[str, Any]:
    return asdict(entry)


__all__ = ["Ledger", "LedgerEntry", "entry_dict"]
