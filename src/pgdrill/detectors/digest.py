"""Content digests: what every table held on the source, compared with the recovered cluster.

Row counts catch missing rows, not wrong ones.  Here every table is read in primary-key order
as ``COPY ... TO STDOUT`` text (the server's own canonical rendering of each value, so source
and recovery hash identical bytes for identical rows), and hashed per *leaf*: a run of
``leaf_rows`` consecutive rows.  The leaf digests, the first/last key of each leaf and a
Merkle root over them are kept in the drill's state directory (``digests.json``), outside the
database under test, like the ledger.

After recovery the table is streamed again and cut the same way: equal root and row count
means equal content (the fast path: one ordered pass, no key parsing).  Otherwise the rows are
re-assigned to the *source's* key ranges by the server (``width_bucket`` over the recorded leaf
boundaries, so a missing or extra row cannot shift every later leaf), and a Merkle bisection
names the leaves that differ; adjacent ones are merged into key ranges for the finding.

Hash: BLAKE2b-128 (stdlib, ~1 GB/s).  The threat is accidental damage, not an adversary, so
128 bits is plenty and keeps ``digests.json`` small.

This module holds the saved form (:class:`DigestSet`); the hashing and the Merkle bisection are
in :mod:`pgdrill.detectors.digest_merkle`, reading the source in
:mod:`pgdrill.detectors.digest_sql` (:func:`record`) and re-reading a recovered cluster in
:mod:`pgdrill.detectors.digest_compare` (:func:`compare`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DIGEST_FILE = "digests.json"


def new_hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


EMPTY_LEAF = new_hasher().hexdigest()


# -- data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    rows: int
    digest: str
    first_key: list[str | None] | None = None
    """Decoded key values of the leaf's first row (None for tables without a key)."""
    last_key: list[str | None] | None = None


@dataclass
class TableDigest:
    schema: str
    name: str
    key: list[str]
    """Primary-key columns in index order; empty: no primary key, ordered by all columns."""
    key_types: list[str]
    key_positions: list[int]
    """0-based positions of the key columns in ``SELECT *`` (= COPY fields)."""
    leaf_rows: int
    """Rows per leaf; 0 means one leaf for the whole table (no key to cut on)."""
    rows: int = 0
    leaves: list[Leaf] = field(default_factory=list)
    root: str = ""
    seconds: float = 0.0

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ordered_by(self) -> str:
        return "primary key (" + ", ".join(self.key) + ")" if self.key else "all columns"


@dataclass(frozen=True)
class Unverifiable:
    table: str
    reason: str


@dataclass
class DigestSet:
    """Digests of every table of one database at one point (here: the end of the workload)."""

    cluster: str
    database: str
    recorded_at: str = ""
    lsn: str | None = None
    """WAL insert position when the snapshot was taken (the recovery point these digests describe)."""
    tables: list[TableDigest] = field(default_factory=list)
    unverifiable: list[Unverifiable] = field(default_factory=list)
    skipped: list[Unverifiable] = field(default_factory=list)
    """Tables not expected to survive recovery (unlogged): listed, not compared."""
    error: str | None = None
    """Set when the source could not be read at all: nothing can be compared later."""
    seconds: float = 0.0

    def table(self, qualified: str) -> TableDigest | None:
        return next((t for t in self.tables if t.qualified == qualified), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DigestSet:
        tables = [TableDigest(**{**t, "leaves": [Leaf(**leaf) for leaf in t["leaves"]]}) for t in data["tables"]]
        return cls(**{**data, "tables": tables,
                      "unverifiable": [Unverifiable(**u) for u in data.get("unverifiable", [])],
                      "skipped": [Unverifiable(**u) for u in data.get("skipped", [])]})

    def save(self, state_dir: Path) -> Path:
        path = state_dir / DIGEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, state_dir: Path) -> DigestSet | None:
        path = state_dir / DIGEST_FILE
        return cls.from_dict(json.loads(path.read_text())) if path.is_file() else None
