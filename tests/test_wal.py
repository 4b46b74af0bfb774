import pytest

from pgdrill.postgres.wal import (
    Lsn,
    SegmentName,
    WalObjectName,
    parse_history,
    segments_per_log,
)

MB16 = 16 * 1024 * 1024


def test_lsn_round_trip_and_order():
    assert str(Lsn.parse("0/70000E8")) == "0/70000E8"
    assert Lsn.parse("1/0").value == 1 << 32
    assert Lsn.parse("0/5000000") < Lsn.parse("0/50000E8")
    with pytest.raises(ValueError, match="not an LSN"):
        Lsn.parse("0-70000E8")


def test_segment_of_lsn_for_default_and_small_segments():
    assert Lsn.parse("0/70000E8").segment(MB16) == 7
    assert Lsn.parse("0/70000E8").segment(1024 * 1024) == 0x70
    assert Lsn.parse("1/0").segment_name(1, MB16).name == "000000010000000100000000"


def test_segment_name_parse_and_format_across_log_boundary():
    seg = SegmentName.parse("0000000100000000000000FF")
    assert seg.number == 0xFF
    nxt = seg.shifted(1)
    assert nxt.name == "000000010000000100000000"
    assert nxt.directory == "0000000100000001"
    assert SegmentName.parse("000000020000000A00000003").timeline == 2


def test_segment_part_out_of_range_for_segment_size():
    # With 16 MB segments a log file holds 256 segments: seg part 0x100 cannot exist.
    with pytest.raises(ValueError, match="out of range"):
        SegmentName.parse("000000010000000000000100")
    assert segments_per_log(MB16) == 256
    with pytest.raises(ValueError):
        segments_per_log(3 * 1024 * 1024)


def test_segment_lsn_bounds():
    seg = SegmentName.parse("000000010000000000000009")
    assert str(seg.start_lsn) == "0/9000000"
    assert str(seg.end_lsn) == "0/A000000"


@pytest.mark.parametrize("name,kind,compression,timeline", [
    ("000000010000000000000009", "segment", None, 1),
    ("000000010000000000000009.gz", "segment", "gz", 1),
    ("000000010000000000000009.bz2", "segment", "bz2", 1),
    ("000000010000000000000009.partial", "partial", None, 1),
    ("000000020000000000000009.partial.gz", "partial", "gz", 2),
    ("000000010000000000000002.00000028.backup.gz", "backup_label", "gz", 1),
    ("00000002.history", "history", None, 2),
    ("00000003.history.gz", "history", "gz", 3),
])
def test_wal_object_names(name, kind, compression, timeline):
    parsed = WalObjectName.parse(name)
    assert parsed is not None
    assert (parsed.kind, parsed.compression, parsed.timeline) == (kind, compression, timeline)


@pytest.mark.parametrize("name", ["README", "00000001000000000000000", "000000010000000000000009.tmp"])
def test_non_wal_names_are_not_classified(name):
    assert WalObjectName.parse(name) is None


def test_parse_history():
    text = "1\t0/4000000\tno recovery target specified\n\n2\t0/9000100\tbefore 2026-01-01\n"
    switches = parse_history(text)
    assert [(s.parent_timeline, str(s.switchpoint)) for s in switches] == [(1, "0/4000000"), (2, "0/9000100")]
    with pytest.raises(ValueError):
        parse_history("garbage")
