"""Content digests, the pure logic: COPY text cut into hashed leaves, the Merkle tree over
the leaves, and the bisection that names the leaves (key ranges) that differ.

No database here: :mod:`pgdrill.detectors.digest_sql` and :mod:`pgdrill.detectors.digest_compare`
feed it the rows they stream.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pgdrill.detectors.digest import EMPTY_LEAF, Leaf, TableDigest, new_hasher

LEAF_MIN_ROWS = 8
"""Small tables still get several leaves, so a mismatch names a few keys, not the whole table."""
MAX_LEAVES = 1024
"""Bounds ``digests.json`` (~100 bytes a leaf) and the width_bucket array of the located pass."""


_ESCAPES = {ord("b"): "\b", ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t", ord("v"): "\v",
            ord("\\"): "\\"}


def decode_copy_field(raw: bytes) -> str | None:
    r"""One field of COPY text format to its value text (``\N`` is NULL)."""
    if raw == b"\\N":
        return None
    if b"\\" not in raw:
        return raw.decode()
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != 0x5C or i + 1 == len(raw):
            out.append(byte)
            i += 1
            continue
        nxt = raw[i + 1]
        if nxt in _ESCAPES:
            out += _ESCAPES[nxt].encode()
            i += 2
        elif 0x30 <= nxt <= 0x37:  # \ooo, one to three octal digits
            j = i + 1
            while j < len(raw) and j < i + 4 and 0x30 <= raw[j] <= 0x37:
                j += 1
            out.append(int(raw[i + 1:j], 8) & 0xFF)
            i = j
        elif nxt == 0x78 and i + 2 < len(raw) and chr(raw[i + 2]) in "0123456789abcdefABCDEF":  # \xh[h]
            j = i + 2
            while j < len(raw) and j < i + 4 and chr(raw[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(raw[i + 2:j], 16))
            i = j
        else:  # any other escaped character stands for itself
            out.append(nxt)
            i += 2
    return out.decode()


def copy_key(line: bytes, positions: Sequence[int]) -> list[str | None]:
    fields = line.rstrip(b"\n").split(b"\t")
    return [decode_copy_field(fields[p]) for p in positions]


def cut_leaves(lines: Iterable[bytes], leaf_rows: int, key_positions: Sequence[int] = ()) -> list[Leaf]:
    """Hash COPY lines (each ending in ``\\n``) into leaves of ``leaf_rows`` rows (0: one leaf).

    The hot loop of every digest: per row one hash update and a counter, and key parsing only
    at leaf edges, so it keeps up with COPY itself.
    """
    leaves: list[Leaf] = []
    hasher = new_hasher()
    in_leaf = 0
    first: list[str | None] | None = None
    prev = b""
    want_keys = bool(key_positions)
    for line in lines:
        if in_leaf == 0 and want_keys:
            first = copy_key(bytes(line), key_positions)
        hasher.update(line)
        in_leaf += 1
        prev = line
        if in_leaf == leaf_rows:
            leaves.append(Leaf(in_leaf, hasher.hexdigest(), first,
                               copy_key(bytes(prev), key_positions) if want_keys else None))
            hasher, in_leaf = new_hasher(), 0
    if in_leaf or not leaves:
        leaves.append(Leaf(in_leaf, hasher.hexdigest(), first if in_leaf else None,
                           copy_key(bytes(prev), key_positions) if want_keys and in_leaf else None))
    return leaves


def leaf_size(estimated_rows: float) -> int:
    return max(LEAF_MIN_ROWS, math.ceil(max(estimated_rows, 0) / MAX_LEAVES))


class MerkleTree:
    """Digests of leaf ranges: ``node(lo, hi)`` hashes ``node(lo, mid)`` and ``node(mid, hi)``."""

    def __init__(self, leaves: Sequence[str]):
        self.leaves = list(leaves)
        self._memo: dict[tuple[int, int], str] = {}

    def node(self, lo: int, hi: int) -> str:
        if hi - lo <= 0:
            return EMPTY_LEAF
        if hi - lo == 1:
            return self.leaves[lo]
        key = (lo, hi)
        if key not in self._memo:
            mid = (lo + hi) // 2
            hasher = new_hasher()
            hasher.update(b"node:" + self.node(lo, mid).encode() + b":" + self.node(mid, hi).encode())
            self._memo[key] = hasher.hexdigest()
        return self._memo[key]

    @property
    def root(self) -> str:
        return self.node(0, len(self.leaves))


def merkle_root(leaves: Sequence[Leaf]) -> str:
    return MerkleTree([f"{leaf.rows}:{leaf.digest}" for leaf in leaves]).root


def locate_mismatches(expected: Sequence[str], probe: Callable[[int, int], str]) -> list[int]:
    """Bisection: indexes of the leaves whose digest differs, descending only into differing halves.

    ``probe(lo, hi)`` is the other side's Merkle node over the same leaf index range; for k
    differing leaves out of n it is called O(k log n) times, not n.
    """
    tree = MerkleTree(expected)
    found: list[int] = []

    def walk(lo: int, hi: int) -> None:
        if hi <= lo or tree.node(lo, hi) == probe(lo, hi):
            return
        if hi - lo == 1:
            found.append(lo)
            return
        mid = (lo + hi) // 2
        walk(lo, mid)
        walk(mid, hi)

    walk(0, len(tree.leaves))
    return found


def runs(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indexes → inclusive (first, last) runs of consecutive values."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


@dataclass(frozen=True)
class RangeDiff:
    first_leaf: int
    last_leaf: int
    first_key: list[str | None] | None
    last_key: list[str | None] | None
    expected_rows: int
    found_rows: int
    unreadable: str | None = None
    """The server's error when this range could not be read at all."""

    def describe(self, key: Sequence[str]) -> str:
        if not key or self.first_key is None:
            where = "whole table"
        elif len(key) == 1:
            where = f"{key[0]} {self.first_key[0]}..{self.last_key[0] if self.last_key else '?'}"
        else:
            where = f"({', '.join(key)}) ({', '.join(map(str, self.first_key))})..(" + \
                    (", ".join(map(str, self.last_key)) if self.last_key else "?") + ")"
        rows = f"{self.expected_rows} rows expected, {self.found_rows} found"
        return f"{where} [{rows}" + (f"; unreadable: {self.unreadable}" if self.unreadable else "") + "]"


def diff_ranges(expected: TableDigest, found: Sequence[Leaf], unreadable: dict[int, str] | None = None
                ) -> list[RangeDiff]:
    """Compare key-aligned leaves (``found[i]`` holds the rows in the key range of ``expected.leaves[i]``)."""
    if len(found) != len(expected.leaves):
        raise ValueError(f"{len(found)} found leaves for {len(expected.leaves)} expected ones")
    unreadable = unreadable or {}
    found_nodes = MerkleTree([f"{leaf.rows}:{leaf.digest}" for leaf in found])
    bad = set(locate_mismatches([f"{leaf.rows}:{leaf.digest}" for leaf in expected.leaves], found_nodes.node))
    bad |= set(unreadable)
    diffs = []
    for first, last in runs(bad):
        errors = sorted({unreadable[i] for i in range(first, last + 1) if i in unreadable})
        diffs.append(RangeDiff(first, last, expected.leaves[first].first_key, expected.leaves[last].last_key,
                               sum(leaf.rows for leaf in expected.leaves[first:last + 1]),
                               sum(found[i].rows for i in range(first, last + 1) if i not in unreadable),
                               "; ".join(errors) if errors else None))
    return diffs
