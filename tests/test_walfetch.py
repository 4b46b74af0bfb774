"""The plugin's parallel WAL fetch (``wal.maxParallel``): next-name computation, the spool's
atomicity and exact-name rule, the restore_command wiring, and a real recovery with N = 4
against real PostgreSQL, barman-cloud and SeaweedFS (same end as N = 1, a gap still stops it)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pgdrill.backends.kubernetes import plan_manifests
from pgdrill.backends.kubernetes.schema import errors
from pgdrill.backends.local import walfetch
from pgdrill.backends.local.barman import BarmanCloud
from pgdrill.backends.local.serverlog import restored_segments, walfetch_stats
from pgdrill.backends.local.walfetch import Spool, names_to_fetch
from pgdrill.config import ArchiveConfig, Config, load_config
from pgdrill.errors import ConfigError
from pgdrill.postgres.wal import SegmentName

MIB = 1024 * 1024
SMALL = MIB  # PostgreSQL's smallest segment size keeps the fake archive cheap


# -- next segment names ---------------------------------------------------------------------------


def test_next_names_wrap_at_the_log_boundary_for_16_mib():
    assert names_to_fetch("0000000100000000000000FE", 4, 16 * MIB) == [
        "0000000100000000000000FE", "0000000100000000000000FF",
        "000000010000000100000000", "000000010000000100000001"]


@pytest.mark.parametrize("size_mb, last_in_log", [(1, 0xFFF), (64, 0x3F), (1024, 0x3)])
def test_next_names_follow_the_configured_segment_size(size_mb, last_in_log):
    first = f"00000002000000AB{last_in_log:08X}"
    assert names_to_fetch(first, 3, size_mb * MIB) == [first, "00000002000000AC00000000", "00000002000000AC00000001"]
    # The plugin's 16 MiB assumption would have asked for ...00000100 after ...000000FF: with
    # 1 MiB segments that is the next segment, not the next log.
    assert names_to_fetch("0000000100000000000000FF", 2, MIB)[1] == "000000010000000000000100"


@pytest.mark.parametrize("name", ["00000002.history", "000000010000000000000007.partial",
                                  "000000010000000000000004.00000028.backup", "RECOVERYHISTORY"])
def test_non_segment_requests_are_fetched_alone(name):
    assert names_to_fetch(name, 8, 16 * MIB) == [name]


def test_a_segment_part_out_of_range_for_the_size_is_fetched_alone():
    assert names_to_fetch("000000010000000000000040", 4, 64 * MIB) == ["000000010000000000000040"]
    assert names_to_fetch("000000010000000000000005", 1, 16 * MIB) == ["000000010000000000000005"]


# -- the spool --------------------------------------------------------------------------------------


def test_a_temp_file_is_never_served_even_when_whole(tmp_path):
    spool = Spool(tmp_path / "spool", SMALL)
    spool.ensure()
    name = "000000010000000000000005"
    spool.temp(name).write_bytes(b"\0" * SMALL)
    assert not spool.holds(name) and not spool.take(name, tmp_path / "RECOVERYXLOG")
    assert not (tmp_path / "RECOVERYXLOG").exists() and spool.temp(name).exists()
    assert spool.commit(name) and spool.take(name, tmp_path / "RECOVERYXLOG")
    assert (tmp_path / "RECOVERYXLOG").stat().st_size == SMALL and list(spool.directory.iterdir()) == []


def test_a_short_file_is_neither_committed_nor_served(tmp_path):
    spool = Spool(tmp_path / "spool", SMALL)
    spool.ensure()
    spool.temp("000000010000000000000005").write_bytes(b"\0" * 100)
    assert not spool.commit("000000010000000000000005")
    spool.path("000000010000000000000006").write_bytes(b"\0" * 100)  # planted: not ours
    assert not spool.take("000000010000000000000006", tmp_path / "RECOVERYXLOG")
    assert list(spool.directory.iterdir()) == []


def test_prune_drops_earlier_segments_of_every_timeline_only(tmp_path):
    spool = Spool(tmp_path / "spool", SMALL)
    spool.ensure()
    for name in ("000000010000000000000003", "000000020000000000000004.tmp", "000000010000000000000009",
                 "00000002.history"):
        (spool.directory / name).write_bytes(b"x")
    assert spool.prune_before("000000020000000000000005") == 2
    assert sorted(p.name for p in spool.directory.iterdir()) == ["000000010000000000000009", "00000002.history"]


# -- restore() with a stand-in barman-cloud-wal-restore (real one below) ----------------------------


def fake_barman(tmp_path: Path, archive: set[str], slow: dict[str, float] | None = None) -> list[str]:
    """A program with barman-cloud-wal-restore's contract: ``<name> <dest>``, exit 1 if missing.
    It writes in two halves with a pause between, so a reader could see a half-written file."""
    (tmp_path / "archive.txt").write_text("\n".join(sorted(archive)))
    script = tmp_path / "fake-wal-restore"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        name, dest = sys.argv[-2], sys.argv[-1]
        calls = open({str(tmp_path / 'calls.txt')!r}, 'a'); calls.write(name + '\\n'); calls.close()
        if name not in open({str(tmp_path / 'archive.txt')!r}).read().split():
            print(f"ERROR: WAL file {{name}} for server x does not exist", file=sys.stderr)
            sys.exit(1)
        with open(dest, 'wb') as out:
            out.write(bytes({SMALL // 2}))
            out.flush()
            time.sleep({(slow or {})!r}.get(name, 0))
            out.write(bytes({SMALL // 2}))
        """))
    script.chmod(0o755)
    return [str(script), "--cloud-provider", "aws-s3", "s3://bucket/prefix", "server"]


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def seg(number: int, timeline: int = 1) -> str:
    return SegmentName(timeline, number, SMALL).name


def test_one_batch_then_served_from_the_spool_then_the_next_batch(tmp_path):
    argv = fake_barman(tmp_path, {seg(n) for n in range(3, 12)})
    spool = Spool(tmp_path / "spool", SMALL)
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    results = []
    for number in range(3, 10):
        rc, line = walfetch.restore(seg(number), str(pg_wal / "RECOVERYXLOG"), argv, 4, SMALL, spool)
        assert rc == 0 and (pg_wal / "RECOVERYXLOG").stat().st_size == SMALL
        (pg_wal / "RECOVERYXLOG").unlink()  # PostgreSQL renames it into place
        results.append(line)
    served = [line.split("served=")[1].split()[0] for line in results]
    assert served == ["fetched", "spool", "spool", "spool", "fetched", "spool", "spool"]
    assert sorted(calls(tmp_path)) == sorted(seg(n) for n in range(3, 11))  # each segment once
    stats = walfetch_stats(results)
    assert stats == {"max_parallel": 4, "requests": 7, "from_spool": 5, "fetched": 2, "not_found": 0,
                     "failed": 0, "prefetched": 6, "prefetch_tried": 6}


def test_the_outcome_is_the_requested_file_only_and_a_gap_is_not_invented(tmp_path):
    # 5 is missing, 6 and 7 exist: asking for 4 spools 6 and 7, but 5 still answers "not found".
    argv = fake_barman(tmp_path, {seg(4), seg(6), seg(7)})
    spool = Spool(tmp_path / "spool", SMALL)
    rc, line = walfetch.restore(seg(4), str(tmp_path / "RECOVERYXLOG"), argv, 4, SMALL, spool)
    assert rc == 0 and "prefetched=2/3 prefetch_exit=1" in line
    rc, line = walfetch.restore(seg(5), str(tmp_path / "RECOVERYXLOG2"), argv, 4, SMALL, spool)
    assert rc == 1 and "served=not-found" in line and not (tmp_path / "RECOVERYXLOG2").exists()
    assert not spool.holds(seg(5)) and not spool.temp(seg(5)).exists()


def test_a_stale_segment_of_another_timeline_is_not_served_for_the_requested_name(tmp_path):
    argv = fake_barman(tmp_path, {seg(5, timeline=2)})
    spool = Spool(tmp_path / "spool", SMALL)
    spool.ensure()
    spool.path(seg(5, timeline=1)).write_bytes(b"\1" * SMALL)  # prefetched before the switch
    rc, line = walfetch.restore(seg(5, timeline=2), str(tmp_path / "RECOVERYXLOG"), argv, 2, SMALL, spool)
    assert rc == 0 and "served=fetched" in line and seg(5, timeline=2) in calls(tmp_path)
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == bytes(SMALL)  # the archive's, not the stale one


def test_a_prefetch_in_flight_is_never_served_half_written(tmp_path):
    argv = fake_barman(tmp_path, {seg(3), seg(4)}, slow={seg(4): 3.0})
    spool = Spool(tmp_path / "spool", SMALL)
    worker = threading.Thread(target=walfetch.restore, args=(seg(3), str(tmp_path / "A"), argv, 2, SMALL, spool))
    worker.start()
    deadline = time.monotonic() + 20  # a loaded CI machine starts Python slowly
    def written() -> int:  # the fake barman creates the temp file, then writes it slowly
        try:
            return spool.temp(seg(4)).stat().st_size
        except FileNotFoundError:
            return 0

    while not written():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert 0 < written() < SMALL  # half written right now...
    assert not spool.take(seg(4), tmp_path / "B")  # ...and not served
    worker.join()
    assert spool.take(seg(4), tmp_path / "B") and (tmp_path / "B").stat().st_size == SMALL


def test_history_files_are_fetched_alone_without_a_spool_entry(tmp_path):
    argv = fake_barman(tmp_path, set())
    spool = Spool(tmp_path / "spool", SMALL)
    rc, line = walfetch.restore("00000002.history", str(tmp_path / "RECOVERYHISTORY"), argv, 8, SMALL, spool)
    assert rc == 1 and calls(tmp_path) == ["00000002.history"] and "prefetched=0/0" in line


def test_the_program_passes_the_requested_exit_code_through(tmp_path):
    argv = fake_barman(tmp_path, {seg(3)})
    pg_wal = tmp_path / "pgdata" / "pg_wal"
    pg_wal.mkdir(parents=True)
    command = [sys.executable, "-P", "-m", "pgdrill.backends.local.walfetch", "--max-parallel", "3",
               "--segment-size", str(SMALL), "--spool", "../wal-restore-spool"]
    found = subprocess.run([*command, seg(3), "pg_wal/RECOVERYXLOG", "--", *argv], cwd=tmp_path / "pgdata",
                           capture_output=True, text=True, timeout=60, check=False)
    assert found.returncode == 0 and "served=fetched max_parallel=3 prefetched=0/2" in found.stderr
    missing = subprocess.run([*command, seg(4), "pg_wal/RECOVERYXLOG", "--", *argv], cwd=tmp_path / "pgdata",
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr  # the requested file's own line
    assert missing.stderr.count("does not exist") == 1  # the extras' misses stay out of the server log
    assert (tmp_path / "wal-restore-spool").is_dir()  # next to PGDATA, not in it
    # A broken restore_command must make PostgreSQL stop (exit > 125), never promote early (1..125).
    assert walfetch.main(["--max-parallel", "x", seg(3), "p", "--", *argv]) == 126
    assert walfetch.main([seg(3), "p"]) == 126


def test_a_server_shutdown_leaves_no_download_behind(tmp_path):
    argv = fake_barman(tmp_path, {seg(3), seg(4)}, slow={seg(3): 30, seg(4): 30})
    process = subprocess.Popen([sys.executable, "-P", "-m", "pgdrill.backends.local.walfetch", "--max-parallel", "2",
                                "--segment-size", str(SMALL), "--spool", str(tmp_path / "spool"), seg(3),
                                str(tmp_path / "RECOVERYXLOG"), "--", *argv], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "spool" / (seg(4) + ".tmp")).exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, 15)  # what the postmaster sends the startup process's group
    assert process.wait(timeout=20) == -15  # a signal death, which PostgreSQL reads as shutdown
    assert list((tmp_path / "spool").iterdir()) == []


# -- wiring: config, restore_command, kind ---------------------------------------------------------


def test_config_key_defaults_to_1_and_is_range_checked(tmp_path):
    assert Config().archive.wal_max_parallel == 1
    path = tmp_path / "pgdrill.toml"
    path.write_text("[archive]\nwal_max_parallel = 8\n")
    assert load_config(path).archive.wal_max_parallel == 8
    for bad in (0, -1, 65):
        path.write_text(f"[archive]\nwal_max_parallel = {bad}\n")
        with pytest.raises(ConfigError, match="archive.wal_max_parallel must be between 1 and 64"):
            load_config(path)


def test_restore_command_is_the_plain_barman_command_at_1_and_walfetch_above():
    plain = BarmanCloud("s3://b/p", "http://127.0.0.1:8333", bin_dir=Path("/venv/bin"))
    assert plain.restore_command("src") == ("/venv/bin/barman-cloud-wal-restore --cloud-provider aws-s3 "
                                            "--endpoint-url http://127.0.0.1:8333 s3://b/p src %f %p")
    parallel = dataclasses.replace(plain, wal_max_parallel=8, segment_size=64 * MIB,
                                   walfetch_script=Path("/run/bin/walfetch.py"))
    assert parallel.restore_command("src") == (
        "/venv/bin/python3 -P /run/bin/walfetch.py --max-parallel 8 --segment-size 67108864 "
        "--spool ../wal-restore-spool %f %p -- /venv/bin/barman-cloud-wal-restore --cloud-provider aws-s3 "
        "--endpoint-url http://127.0.0.1:8333 s3://b/p src")
    # Never "python -m pgdrill...": the postgres OS user may not be able to import pgdrill.
    with pytest.raises(ValueError, match="walfetch_script"):
        dataclasses.replace(plain, wal_max_parallel=8).restore_command("src")


def test_kind_object_store_carries_the_same_max_parallel():
    def object_store(config: Config) -> dict:
        (store,) = [o for o in plan_manifests(config, None) if o["kind"] == "ObjectStore"]
        assert errors(store) == []
        return store["spec"]["configuration"]["wal"]

    assert "maxParallel" not in object_store(Config())  # the plugin's default, as before
    assert object_store(Config(archive=ArchiveConfig(wal_max_parallel=8)))["maxParallel"] == 8


def test_serverlog_parsing_of_restored_segments_is_unchanged():
    lines = ['2026-01-01 00:00:00.000 UTC [1] LOG:  restored log file "000000010000000000000004" from archive',
             "pgdrill-walfetch: 000000010000000000000005 served=spool max_parallel=4",
             '2026-01-01 00:00:00.100 UTC [1] LOG:  restored log file "000000010000000000000005" from archive',
             ("pgdrill-walfetch: 000000010000000000000006 served=failed-exit-2 max_parallel=4 prefetched=0/3 "
              "prefetch_exit=2 seconds=0.5")]
    assert restored_segments(lines) == ["000000010000000000000004", "000000010000000000000005"]
    assert walfetch_stats(lines) == {"max_parallel": 4, "requests": 2, "from_spool": 1, "fetched": 0,
                                     "not_found": 0, "failed": 1, "prefetched": 0, "prefetch_tried": 3}
    assert walfetch_stats(lines[:1]) is None


# -- real PostgreSQL + barman-cloud + SeaweedFS ---------------------------------------------------


@pytest.fixture(scope="module")
def archived():
    """A source with a base backup and 10 segments of WAL after it, one ledger row in each."""
    try:
        from pgdrill.backends.local.backend import LocalBackend
        from pgdrill.backends.local.postgres import pg_bin_dir

        pg_bin_dir()
    except Exception as exc:  # noqa: BLE001 - the local extra is optional
        pytest.skip(f"local backend not available: {exc}")
    backend = LocalBackend(Config(), f"walfetch-{secrets.token_hex(4)}")
    try:
        source = backend.create_source("postgres-cluster")
        backend.sql(source, "CREATE TABLE ledger (id int PRIMARY KEY)")
        backend.sql(source, "INSERT INTO ledger SELECT generate_series(1, 10)")
        backend.take_backup(source)
        segments = []
        for row in range(11, 21):
            backend.sql(source, "INSERT INTO ledger VALUES (%s)", (row,))
            segments.append(backend.sql(source, "SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
            backend.sql(source, "SELECT pg_switch_wal()")
        backend.wait_archived(source, segments[-1])
        yield backend, source, segments
    finally:
        backend.close()


def recover(backend, source, name: str, max_parallel: int):
    # As LocalBackend does for archive.wal_max_parallel > 1: the copy the postgres OS user can run.
    from pgdrill.backends.local.walfetch import install

    script = install(backend.run_dir / "bin", backend.user.uid, backend.user.gid) if max_parallel > 1 else None
    backend.barman = dataclasses.replace(backend.barman, wal_max_parallel=max_parallel, walfetch_script=script)
    outcome = backend.recover(source, name, None, archive=False)
    lines = backend.node(outcome.cluster).log_lines()
    rows = backend.sql(outcome.cluster, "SELECT count(*), max(id) FROM ledger")[0]
    return outcome, rows, walfetch_stats(lines)


@pytest.mark.integration
def test_real_recovery_with_4_reaches_the_same_end_as_with_1(archived):
    backend, source, segments = archived
    one, rows_one, stats_one = recover(backend, source, "postgres-cluster-v2", 1)
    four, rows_four, stats_four = recover(backend, source, "postgres-cluster-v3", 4)
    assert one.promoted and four.promoted
    assert rows_one == rows_four == (20, 20)
    assert (one.fork_lsn, one.timeline) == (four.fork_lsn, four.timeline)
    assert one.restored_segments == four.restored_segments and segments[-1] in four.restored_segments
    assert stats_one is None  # N = 1: the plain barman-cloud-wal-restore, no walfetch line
    assert stats_four["max_parallel"] == 4 and stats_four["from_spool"] >= 6, stats_four
    assert stats_four["from_spool"] + stats_four["fetched"] >= len(segments)
    spool = backend.run_dir / "postgres-cluster-v3" / "wal-restore-spool"
    assert spool.is_dir() and spool.stat().st_uid == backend.user.uid
    assert not any(p.name.endswith(".tmp") for p in spool.iterdir())


@pytest.mark.integration
def test_real_recovery_with_4_still_stops_at_a_gap(archived):
    backend, source, segments = archived
    gap = segments[4]  # row 15's segment; rows 16..20 lie beyond it, still in the archive
    (key,) = [o.key for o in backend.store.list(backend.destination.key("postgres-cluster", "wals") + "/")
              if o.key.rsplit("/", 1)[-1].startswith(gap)]
    backend.store.delete(key)
    outcome, rows, stats = recover(backend, source, "postgres-cluster-v4", 4)
    assert outcome.promoted  # PostgreSQL promotes at the gap, as it does with N = 1...
    assert rows == (14, 14)  # ...without the rows from the gap on, although 16..20 were archived
    assert outcome.fork_lsn == SegmentName.parse(gap).start_lsn
    assert gap not in outcome.restored_segments and all(s < gap for s in outcome.restored_segments
                                                        if s.startswith("00000001"))
    assert stats["not_found"] >= 1, stats
    spool = backend.run_dir / "postgres-cluster-v4" / "wal-restore-spool"
    assert not (spool / gap).exists()
    assert os.stat(spool).st_mode & 0o077 == 0  # private to the postgres OS user


def test_the_installed_copy_runs_without_pgdrill_on_the_path(tmp_path):
    """PostgreSQL's OS user may not be able to read pgdrill's source tree (an editable install in a
    private checkout): the restore_command runs a copy that needs nothing but the standard library."""
    import shutil
    import subprocess
    import sys

    from pgdrill.backends.local.walfetch import install

    script = install(tmp_path / "bin")
    assert oct(script.stat().st_mode & 0o777) == "0o644"
    # -I -S: no site-packages, no user site, no PYTHONPATH, so pgdrill cannot be imported
    # A real request, with /bin/false standing in for barman-cloud-wal-restore: "not found" is exit 1,
    # after computing the prefetch names and using the spool (an ImportError would be a traceback).
    false = shutil.which("false")
    done = subprocess.run([sys.executable, "-I", "-S", str(script), "--max-parallel", "3", "--segment-size",
                           str(16 << 20), "--spool", str(tmp_path / "spool"), "0000000100000000000000FF",
                           str(tmp_path / "out"), "--", false], capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    blocked = subprocess.run([sys.executable, "-I", "-S", "-c", "import pgdrill"], capture_output=True, text=True)
    assert blocked.returncode != 0  # the check above really ran without pgdrill


def test_restore_command_runs_the_installed_copy(tmp_path):
    from pgdrill.backends.local.barman import BarmanCloud

    script = tmp_path / "bin" / "walfetch.py"
    command = BarmanCloud("s3://b/p", None, bin_dir=tmp_path, wal_max_parallel=4,
                          walfetch_script=script).restore_command("prod")
    assert f"-P {script} --max-parallel 4" in command and "-m pgdrill" not in command
