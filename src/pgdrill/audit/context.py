"""The shared state of one audit analysis: what was read, the WAL index, the clock, the chains."""

from __future__ import annotations

from datetime import datetime

from pgdrill.archive.catalog import ArchiveCatalog, BaseBackup
from pgdrill.archive.continuity import ChainLink, Gap, recovery_chain
from pgdrill.audit.thresholds import AuditThresholds
from pgdrill.audit.walindex import WalIndex
from pgdrill.postgres.wal import SegmentName

DETECTOR = "audit"

#: What ``run_audit`` read: the catalog's one reading of the listing and the metadata objects.
ArchiveMetadata = ArchiveCatalog


class Context:
    """The shared state of one analysis (index, chains, grace rules)."""

    def __init__(self, meta: ArchiveMetadata, index: WalIndex, thresholds: AuditThresholds, now: datetime):
        self.meta = meta
        self.index = index
        self.thresholds = thresholds
        self.now = now
        self.uploading: list[Gap] = []
        self.checked_from: SegmentName | None = None
        self.newest: tuple[int, int] | None = max(
            ((t, n[-1]) for t, n in index.numbers.items() if n), default=None)

    def chain(self, start: SegmentName) -> list[ChainLink]:
        try:
            return recovery_chain(start, dict(self.meta.histories))
        except ValueError:
            # Cannot follow a switch without its history (reported separately): stay on
            # the start's timeline, which is what PostgreSQL would do too.
            return [ChainLink(start.timeline, start.number, None)]

    def completed(self) -> list[BaseBackup]:
        return sorted((b for b in self.meta.backups.values() if b.done and b.begin_wal is not None),
                      key=lambda b: (b.begin_wal.timeline, b.begin_wal.number))  # type: ignore[union-attr]
