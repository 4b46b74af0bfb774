"""PostgreSQL's on-disk page format, just enough to damage one page on purpose.

Used by the integrity faults (``faults_integrity``): they flip bytes inside one block of a
relation file in a base backup and, on request, recompute the page checksum so that only
amcheck (not ``pg_checksums``) can notice.  Pure functions on ``bytes``; no I/O.

Layout facts (``src/include/storage/bufpage.h``, ``itemid.h``, ``access/nbtree.h``):
page header = pd_lsn(8) pd_checksum(2) pd_flags(2) pd_lower(2) pd_upper(2) pd_special(2)
pd_pagesize_version(2) pd_prune_xid(4) = 24 bytes, then 4-byte line pointers
(lp_off:15, lp_flags:2, lp_len:15).  A B-tree page ends with BTPageOpaqueData
(btpo_prev, btpo_next, btpo_level: uint32; btpo_flags, btpo_cycleid: uint16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BLCKSZ = 8192
RELSEG_BLOCKS = 131072
"""Blocks per 1 GB segment file (``RELSEG_SIZE`` with 8 kB blocks): block N lives in ``<file>.<N // this>``."""
PAGE_HEADER_SIZE = 24
LP_NORMAL = 1
BTP_LEAF = 1 << 0
BTP_ROOT = 1 << 1
BTP_DELETED = 1 << 2
BTP_META = 1 << 3
BTP_HALF_DEAD = 1 << 4

# From checksum_impl.h (PostgreSQL's FNV-1a-derived page checksum, 32 parallel sums).
_N_SUMS = 32
_FNV_PRIME = 16777619
_BASE_OFFSETS = (
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
)
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class PageHeader:
    lsn: int
    checksum: int
    flags: int
    lower: int
    upper: int
    special: int

    @property
    def is_new(self) -> bool:
        """An all-zero (never initialised) page: PostgreSQL neither checksums nor checks it."""
        return self.upper == 0


@dataclass(frozen=True)
class LinePointer:
    number: int
    """Offset number (1-based), as amcheck and ctid report it."""
    offset: int
    flags: int
    length: int


def header(page: bytes) -> PageHeader:
    hi, lo, checksum, flags, lower, upper, special = struct.unpack_from("<IIHHHHH", page, 0)
    return PageHeader((hi << 32) | lo, checksum, flags, lower, upper, special)


def line_pointers(page: bytes) -> list[LinePointer]:
    head = header(page)
    if head.is_new or head.lower < PAGE_HEADER_SIZE:
        return []
    items = []
    for index in range((head.lower - PAGE_HEADER_SIZE) // 4):
        (word,) = struct.unpack_from("<I", page, PAGE_HEADER_SIZE + 4 * index)
        items.append(LinePointer(index + 1, word & 0x7FFF, (word >> 15) & 0x3, word >> 17))
    return items


def btree_flags(page: bytes) -> int | None:
    """``btpo_flags`` of a B-tree page, or None when the special space does not fit one."""
    head = header(page)
    if head.is_new or head.special + 16 != BLCKSZ:
        return None
    (flags,) = struct.unpack_from("<H", page, head.special + 12)
    return int(flags)


def checksum(page: bytes, block: int) -> int:
    """``pg_checksum_page``: the 16-bit checksum of ``page`` as block number ``block`` of its relation.

    ``block`` is the block number within the relation (not within the 1 GB segment file).
    """
    if len(page) != BLCKSZ:
        raise ValueError(f"a page is {BLCKSZ} bytes, got {len(page)}")
    words = list(struct.unpack(f"<{BLCKSZ // 4}I", page))
    words[2] &= 0xFFFF0000  # pd_checksum (bytes 8-9, little-endian low half of word 2) counts as zero
    sums = list(_BASE_OFFSETS)
    for row in range(0, len(words), _N_SUMS):
        for j in range(_N_SUMS):
            tmp = sums[j] ^ words[row + j]
            sums[j] = ((tmp * _FNV_PRIME) & _MASK) ^ (tmp >> 17)
    for _ in range(2):
        for j in range(_N_SUMS):
            tmp = sums[j]
            sums[j] = ((tmp * _FNV_PRIME) & _MASK) ^ (tmp >> 17)
    result = 0
    for value in sums:
        result ^= value
    result ^= block & _MASK
    return (result % 65535) + 1


def with_checksum(page: bytes, block: int) -> bytes:
    """``page`` with pd_checksum set to its correct value for ``block``."""
    fixed = bytearray(page)
    struct.pack_into("<H", fixed, 8, checksum(page, block))
    return bytes(fixed)


def flip(page: bytes, offset: int, length: int = 4) -> bytes:
    """Invert ``length`` bytes at ``offset`` (XOR 0xFF): a deterministic, always-effective change."""
    if offset < PAGE_HEADER_SIZE or offset + length > BLCKSZ:
        raise ValueError(f"refusing to flip bytes {offset}..{offset + length} outside the page body")
    damaged = bytearray(page)
    for i in range(offset, offset + length):
        damaged[i] ^= 0xFF
    return bytes(damaged)
