"""Pure-logic tests of the integrity detectors: digests, bisection, page format, tool output parsing."""

from __future__ import annotations

import struct

import pytest

from pgdrill.detectors.digest import DigestSet, Leaf, TableDigest, Unverifiable
from pgdrill.detectors.digest_merkle import (
    MerkleTree,
    copy_key,
    cut_leaves,
    decode_copy_field,
    diff_ranges,
    leaf_size,
    locate_mismatches,
    merkle_root,
    runs,
)
from pgdrill.detectors.physical import parse_pg_amcheck, parse_pg_checksums
from pgdrill.postgres import pages


def rows(ids: range, suffix: str = "") -> list[bytes]:
    return [f"{i}\tname {i}{suffix}\t\\N\n".encode() for i in ids]


def table(lines: list[bytes], leaf_rows: int = 4) -> TableDigest:
    leaves = cut_leaves(lines, leaf_rows, [0])
    return TableDigest("public", "t", ["id"], ["bigint"], [0], leaf_rows, sum(leaf.rows for leaf in leaves),
                       leaves, merkle_root(leaves))


# -- digests -----------------------------------------------------------------------------

def test_leaves_cut_every_n_rows_with_first_and_last_keys() -> None:
    leaves = cut_leaves(rows(range(1, 11)), 4, [0])
    assert [leaf.rows for leaf in leaves] == [4, 4, 2]
    assert [(leaf.first_key, leaf.last_key) for leaf in leaves] == [(["1"], ["4"]), (["5"], ["8"]), (["9"], ["10"])]


def test_digest_is_deterministic_and_sensitive_to_content_order_and_rows() -> None:
    base = rows(range(1, 101))
    root = merkle_root(cut_leaves(base, 8, [0]))
    assert merkle_root(cut_leaves(list(base), 8, [0])) == root
    changed = list(base)
    changed[57] = b"58\tname 58\tX\n"
    assert merkle_root(cut_leaves(changed, 8, [0])) != root
    swapped = list(base)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert merkle_root(cut_leaves(swapped, 8, [0])) != root
    assert merkle_root(cut_leaves(base[:-1], 8, [0])) != root
    # Row boundaries count: the same bytes split differently are different content.
    assert merkle_root(cut_leaves([b"1\ta\n2\tb\n"], 8)) != merkle_root(cut_leaves([b"1\ta\n", b"2\tb\n"], 8))


def test_empty_table_and_single_leaf_tables() -> None:
    empty = cut_leaves([], 8, [0])
    assert len(empty) == 1 and empty[0].rows == 0 and empty[0].first_key is None
    whole = cut_leaves(rows(range(1, 50)), 0)
    assert len(whole) == 1 and whole[0].rows == 49 and whole[0].first_key is None


def test_copy_text_fields_are_decoded() -> None:
    assert decode_copy_field(b"\\N") is None
    assert decode_copy_field(b"plain") == "plain"
    assert decode_copy_field(b"a\\tb\\nc\\\\d") == "a\tb\nc\\d"
    assert decode_copy_field(b"\\101\\x42") == "AB"
    assert decode_copy_field("é".encode()) == "é"
    assert copy_key(b"7\tx\ty\\tz\n", [2, 0]) == ["y\tz", "7"]


def test_leaf_size_bounds_the_number_of_leaves() -> None:
    assert leaf_size(-1) == 8 and leaf_size(27) == 8
    assert leaf_size(1_500_000) * 1024 >= 1_500_000
    assert 1_500_000 / leaf_size(1_500_000) <= 1024


# -- bisection -----------------------------------------------------------------------------

def test_bisection_finds_exactly_the_differing_leaves_with_few_probes() -> None:
    expected = [f"leaf-{i}" for i in range(1024)]
    actual = list(expected)
    for i in (3, 700, 701):
        actual[i] = "changed"
    other = MerkleTree(actual)
    calls = []

    def probe(lo: int, hi: int) -> str:
        calls.append((lo, hi))
        return other.node(lo, hi)

    assert locate_mismatches(expected, probe) == [3, 700, 701]
    assert len(calls) < 3 * 2 * 11 + 1  # O(k log n), not n
    assert locate_mismatches(expected, MerkleTree(expected).node) == []


def test_bisection_on_odd_sizes_and_single_leaf() -> None:
    for n in (1, 2, 3, 5, 17):
        expected = [str(i) for i in range(n)]
        for bad in range(n):
            actual = list(expected)
            actual[bad] = "x"
            assert locate_mismatches(expected, MerkleTree(actual).node) == [bad]


def test_runs_merge_adjacent_indexes() -> None:
    assert runs([5, 1, 2, 3, 9, 10]) == [(1, 3), (5, 5), (9, 10)]
    assert runs([]) == []


def test_diff_ranges_names_key_ranges_and_row_counts() -> None:
    source = table(rows(range(1, 25)), 8)
    recovered = rows(range(1, 25))
    recovered[9] = b"10\tname 10 revised\t\\N\n"  # leaf 1 (ids 9..16)
    recovered[20] = b"21\tname 21 revised\t\\N\n"  # leaf 2 (ids 17..24)
    found = cut_leaves(recovered, 8, [0])
    diffs = diff_ranges(source, found)
    assert [(d.first_key, d.last_key, d.expected_rows, d.found_rows) for d in diffs] == [(["9"], ["24"], 16, 16)]
    assert diffs[0].describe(["id"]) == "id 9..24 [16 rows expected, 16 found]"
    assert diff_ranges(source, cut_leaves(rows(range(1, 25)), 8, [0])) == []


def test_diff_ranges_with_missing_rows_and_unreadable_ranges() -> None:
    source = table(rows(range(1, 33)), 8)
    found = [source.leaves[0], Leaf(7, "x"), source.leaves[2], Leaf(0, "y")]
    diffs = diff_ranges(source, found, {3: 'invalid page in block 2 of relation "base/1/2"'})
    assert [(d.first_key[0], d.last_key[0], d.found_rows, d.unreadable is not None) for d in diffs] == [
        ("9", "16", 7, False), ("25", "32", 0, True)]
    with pytest.raises(ValueError):
        diff_ranges(source, found[:2])


def test_digest_set_round_trips_through_json(tmp_path) -> None:
    digests = DigestSet("src", "ozone", "2026-11-25T00:00:00+00:00", "0/3000000", [table(rows(range(1, 20)))],
                      [Unverifiable("public.j", "no primary key and its columns cannot be ordered: json")])
    digests.save(tmp_path)
    loaded = DigestSet.load(tmp_path)
    assert loaded == digests
    assert DigestSet.load(tmp_path / "nothing") is None


# -- page format ---------------------------------------------------------------------------

def _page(block: int) -> bytes:
    page = bytearray(pages.BLCKSZ)
    struct.pack_into("<IIHHHHHHI", page, 0, 0, 0x3000028, 0, 0, 28, 8000, pages.BLCKSZ, 0x2004, 0)
    struct.pack_into("<I", page, 24, 8000 | (pages.LP_NORMAL << 15) | (60 << 17))
    page[8000:8060] = bytes(range(60))
    return pages.with_checksum(bytes(page), block)


def test_page_checksum_matches_the_stored_one_and_detects_flips() -> None:
    page = _page(7)
    assert pages.header(page).checksum == pages.checksum(page, 7)
    assert pages.checksum(page, 8) != pages.checksum(page, 7)  # block number is mixed in
    damaged = pages.flip(page, 8010)
    assert pages.checksum(damaged, 7) != pages.header(damaged).checksum
    assert pages.header(pages.with_checksum(damaged, 7)).checksum == pages.checksum(damaged, 7)
    assert [(lp.number, lp.offset, lp.length, lp.flags) for lp in pages.line_pointers(page)] == [(1, 8000, 60, 1)]
    with pytest.raises(ValueError):
        pages.flip(page, 4)


# -- tool output ---------------------------------------------------------------------------

def test_pg_checksums_output_is_parsed_into_relation_blocks() -> None:
    stdout = "Checksum operation completed\nFiles scanned:   963\nBlocks scanned:  31520\nBad checksums:  2\n"
    stderr = (
        'pg_checksums: error: checksum verification failed in file "/d/pgdata/base/5/16399", block 100: '
        "calculated checksum A0AE but block contains E567\n"
        'pg_checksums: error: checksum verification failed in file "/d/pgdata/base/5/16407.1", block 3: '
        "calculated checksum BB36 but block contains 2BC7\n")
    report = parse_pg_checksums(stdout, stderr)
    assert report.counters == {"Files scanned": 963, "Blocks scanned": 31520, "Bad checksums": 2}
    assert [(p.relfile, p.file, p.fork, p.block) for p in report.problems] == [
        ("base/5/16399", "base/5/16399", "main", 100), ("base/5/16407", "base/5/16407.1", "main", 131075)]
    assert not report.disabled and not report.errors
    off = parse_pg_checksums("", "pg_checksums: error: data checksums are not enabled in cluster\n")
    assert off.disabled and not off.problems


def test_pg_amcheck_output_is_parsed_per_relation_and_block() -> None:
    stdout = (
        'heap table "ozone.public.moderation_label", block 20, offset 3:\n'
        "    line pointer to page offset 9000 is not maximally aligned\n"
        'heap table "postgres.public.pgbench_accounts":\n'
        '    ERROR:  invalid page in block 100 of relation "base/5/16399"\n'
        'btree index "ozone.public.moderation_label_pkey":\n'
        '    ERROR:  item order invariant violated for index "moderation_label_pkey"\n'
        "    DETAIL:  Lower index tid=(7,12) (points to heap tid=(20,3)) higher index tid=(7,13)\n")
    problems = parse_pg_amcheck(stdout)
    assert [(p.kind, p.database, p.relation, p.block, p.offset, p.is_index) for p in problems] == [
        ("heap table", "ozone", "public.moderation_label", 20, 3, False),
        ("heap table", "postgres", "public.pgbench_accounts", 100, None, False),
        ("btree index", "ozone", "public.moderation_label_pkey", 7, None, True)]
    assert len(problems[2].messages) == 2
    assert parse_pg_amcheck("") == []
