import lzma
from datetime import datetime, timezone

import pytest

from pgdrill.archive.catalog import (
    BaseBackup,
    ServerArchive,
    parse_backup_info,
    read_catalog,
    read_server_archive,
)
from pgdrill.archive.continuity import find_gaps, recovery_chain, segments_beyond
from pgdrill.archive.store import ObjectInfo
from pgdrill.postgres.wal import Lsn, SegmentName, parse_history

ROOT = "pgdrill/run/postgres-cluster/"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def listing(*names, extra=()):
    # barman-cloud files history files directly under wals/ (no 16-hex sub-folder).
    objs = [ObjectInfo(f"{ROOT}wals/{n}" if ".history" in n else f"{ROOT}wals/{n[:16]}/{n}", 100, T0)
            for n in names]
    objs += [ObjectInfo(f"{ROOT}{k}", 1, T0) for k in extra]
    return ServerArchive.from_listing("postgres-cluster", ROOT, objs)


def seg(tli, n):
    return SegmentName(tli, n).name


def test_listing_classifies_wal_backups_and_others():
    archive = listing(seg(1, 2) + ".gz", seg(1, 3), "00000002.history.gz",
                      extra=["base/20261101T000000/backup.info", "base/20261101T000000/data.tar", "README"])
    assert sorted(archive.segments(1)) == [2, 3]
    assert archive.backup_ids == ["20261101T000000"]
    assert archive.backup_info_keys == {"20261101T000000": ROOT + "base/20261101T000000/backup.info"}
    assert archive.history_keys() == {2: ROOT + "wals/00000002.history.gz"}
    assert [o.key for o in archive.other] == [ROOT + "README"]


def test_adr_gap_middle_segment_missing():
    # ADR 007: segments 8, 9, A after the backup; 9 deleted.
    archive = listing(*(seg(1, n) + ".gz" for n in (7, 8, 0xA)))
    chain = recovery_chain(SegmentName(1, 7), {})
    gaps = find_gaps(archive, chain)
    assert [g.names for g in gaps] == [[seg(1, 9)]]
    assert gaps[0].count == 1


def test_no_gap_when_contiguous_and_end_of_archive_is_not_a_gap():
    archive = listing(*(seg(1, n) for n in range(2, 7)))
    assert find_gaps(archive, recovery_chain(SegmentName(1, 2), {})) == []


def test_several_gaps_and_partial_does_not_fill_a_hole():
    archive = listing(seg(1, 2), seg(1, 3) + ".partial", seg(1, 5), seg(1, 8))
    gaps = find_gaps(archive, recovery_chain(SegmentName(1, 2), {}))
    assert [(g.first.number, g.last.number) for g in gaps] == [(3, 4), (6, 7)]
    assert [p.name.kind for p in archive.partials()] == ["partial"]


def test_missing_begin_segment_before_later_wal_is_a_gap():
    archive = listing(seg(1, 3), seg(1, 4))
    gaps = find_gaps(archive, recovery_chain(SegmentName(1, 2), {}))
    assert [g.names for g in gaps] == [[seg(1, 2)]]


def test_timeline_switch_is_followed():
    # Timeline 2 forked from 1 at 0/5000000: segment 5 onwards is read from timeline 2.
    histories = {2: parse_history("1\t0/5000000\tno recovery target specified\n")}
    archive = listing(seg(1, 2), seg(1, 3), seg(1, 4), seg(1, 5) + ".partial", seg(2, 5), seg(2, 6), seg(2, 8))
    chain = recovery_chain(SegmentName(1, 2), histories)
    assert [(c.timeline, c.first, c.last) for c in chain] == [(1, 2, 4), (2, 5, None)]
    gaps = find_gaps(archive, chain)
    assert [(g.timeline, g.names) for g in gaps] == [(2, [seg(2, 7)])]


def test_gap_on_parent_timeline_before_switch():
    histories = {2: parse_history("1\t0/6000000\treason\n")}
    archive = listing(seg(1, 2), seg(1, 4), seg(1, 5), seg(2, 6))
    gaps = find_gaps(archive, recovery_chain(SegmentName(1, 2), histories))
    assert [(g.timeline, g.names) for g in gaps] == [(1, [seg(1, 3)])]


def test_chain_to_explicit_timeline_without_history_raises():
    with pytest.raises(ValueError, match="no history"):
        recovery_chain(SegmentName(1, 2), {}, target_timeline=3)


def test_segments_beyond_fork_point():
    archive = listing(seg(1, 3), seg(1, 5), seg(1, 6))
    assert [s.number for s in segments_beyond(archive, 1, Lsn.parse("0/4000000"))] == [5, 6]
    # A fork mid-segment: the segment holding the fork was partly replayed, not "beyond".
    assert [s.number for s in segments_beyond(archive, 1, Lsn.parse("0/50000E8"))] == [6]
    assert segments_beyond(archive, 1, Lsn.parse("0/7000000")) == []


BACKUP_INFO = """backup_label='START WAL LOCATION: 0/2000028'
begin_time=2026-11-25 04:34:28.277788+00:00
begin_wal=000000010000000000000002
begin_xlog=0/2000028
end_time=2026-11-25 04:34:29.044676+00:00
end_wal=000000010000000000000002
end_xlog=0/2000120
error=None
size=None
status=DONE
timeline=1
"""


def test_backup_info_from_real_barman_fields():
    assert parse_backup_info("a=b=c\nnoequals\n") == {"a": "b=c"}
    backup = BaseBackup.from_info("20261125T043428", "k", BACKUP_INFO)
    assert backup.done and backup.timeline == 1
    assert backup.begin_wal == SegmentName(1, 2)
    assert str(backup.end_lsn) == "0/2000120"
    assert backup.size is None
    failed = BaseBackup.from_info("x", "k", "status=FAILED\nbegin_wal=None\n")
    assert not failed.done and failed.begin_wal is None


class DictStore:
    """The two calls the catalog makes, over a dict; records them."""

    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects
        self.calls: list[tuple[str, str]] = []

    def list(self, prefix):
        self.calls.append(("list", prefix))
        return iter([ObjectInfo(k, len(v), T0) for k, v in sorted(self.objects.items()) if k.startswith(prefix)])

    def get(self, key):
        self.calls.append(("get", key))
        return self.objects[key]


HISTORY = b"1\t0/30000E8\tno recovery target specified\n"


def _store(**extra: bytes) -> DictStore:
    objects = {
        ROOT + "base/20261125T043428/backup.info": BACKUP_INFO.encode(),
        ROOT + "base/20261125T043428/data.tar": b"x" * 10,
        ROOT + f"wals/0000000100000000/{seg(1, 2)}": b"",
        ROOT + f"wals/0000000100000000/{seg(1, 3)}.gz": b"",
        ROOT + "wals/00000002.history": HISTORY,
    }
    objects.update({ROOT + k: v for k, v in extra.items()})
    return DictStore(objects)


def test_catalog_lists_once_and_gets_only_metadata():
    store = _store(**{"wals/00000003.history.xz": lzma.compress(b"1\t0/30000E8\tx\n2\t0/40000E8\ty\n")})
    catalog = read_catalog(store, ROOT, "postgres-cluster")
    assert store.calls == [("list", ROOT), ("get", ROOT + "base/20261125T043428/backup.info"),
                           ("get", ROOT + "wals/00000002.history"), ("get", ROOT + "wals/00000003.history.xz")]
    assert catalog.problems == () and catalog.objects_listed == 6
    assert list(catalog.backups) == ["20261125T043428"] and catalog.backups["20261125T043428"].done
    assert sorted(catalog.histories) == [2, 3] and catalog.histories[2] == parse_history(HISTORY.decode())
    assert catalog.stored_bytes == {"20261125T043428": 10}
    assert sorted(catalog.archive.segments(1)) == [2, 3]


@pytest.mark.parametrize("body", [BACKUP_INFO.encode()[:70], BACKUP_INFO.split("status=")[0].encode(),
                                  b"", b"\xff\xfe", b"status=DONE\nbegin_wal=garbage\n"])
def test_unreadable_backup_info_is_a_problem_unless_strict(body):
    key = ROOT + "base/20261126T000000/backup.info"
    store = _store(**{"base/20261126T000000/backup.info": body, "wals/00000003.history.gz": b"damaged"})
    catalog = read_catalog(store, ROOT, "postgres-cluster")
    assert list(catalog.backups) == ["20261125T043428"]
    assert [(p.key, p.backup_id, p.timeline) for p in catalog.problems] == [
        (key, "20261126T000000", None), (ROOT + "wals/00000003.history.gz", None, 3)]
    assert set(catalog.unreadable_backups) == {"20261126T000000"} and catalog.unreadable_histories == {3}
    assert sorted(catalog.histories) == [2]
    # the drills' reader returns what it always did, minus what it cannot read, and does not raise
    archive, backups, histories = read_server_archive(store, ROOT, "postgres-cluster")
    assert [b.backup_id for b in backups] == ["20261125T043428"] and sorted(histories) == [2]
    assert archive.backup_ids == ["20261125T043428", "20261126T000000"]
    with pytest.raises(ValueError):
        read_catalog(store, ROOT, "postgres-cluster", strict=True)


def test_catalog_takes_the_segment_size_from_backup_info():
    info = BACKUP_INFO.replace("begin_wal=000000010000000000000002", "begin_wal=000000010000000000000042")
    store = DictStore({ROOT + "base/b/backup.info": (info + "xlog_segment_size=1048576\n").encode(),
                       ROOT + "wals/0000000100000000/000000010000000000000042": b""})
    catalog = read_catalog(store, ROOT, "postgres-cluster")
    assert catalog.archive.segment_size == 1048576 and catalog.problems == ()
    assert catalog.backups["b"].begin_wal == SegmentName(1, 0x42, 1048576)
    # a caller that names the size gets that size
    assert read_catalog(store, ROOT, "postgres-cluster", 16 * 1024 * 1024).archive.segment_size == 16 * 1024 * 1024
