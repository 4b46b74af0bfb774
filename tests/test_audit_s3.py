"""``pgdrill audit`` against real S3 servers (SeaweedFS and moto) and real barman-cloud objects.

Every audit here runs with the server's read-only identity (List + Read; writes denied),
so each passing test is also evidence that the audit never writes.  Synthetic archives are
uploaded for the planted-problem matrix (LastModified is the real upload time, so ages are
shifted through the audit's ``now``); one test builds the archive with PostgreSQL and
barman-cloud themselves, plants the ADR's gap and checks the audit against a real recovery.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgdrill.archive.store import ObjectStore, S3Credentials, S3Location
from pgdrill.audit import AuditThresholds, audit_main, exit_code, run_audit
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.backends.local.moto_s3 import MotoServer
from pgdrill.backends.local.seaweed import SeaweedServer, free_port
from pgdrill.errors import S3Error
from pgdrill.postgres.wal import Lsn, SegmentName, parse_history

pytestmark = pytest.mark.integration

STEP = timedelta(minutes=5)


@pytest.fixture(scope="session", params=["seaweedfs", "moto"])
def s3_server(request):
    """Each test once per S3 implementation: the audit must not lean on one server's quirks
    (SeaweedFS keeps emptied "folders" as common prefixes, moto does not).  Both enforce keys and
    give a real read-only identity (moto through IAM policies), so every test runs on both."""
    directory = Path(tempfile.mkdtemp(prefix="pgdrill-audit-s3-"))
    server = SeaweedServer(directory) if request.param == "seaweedfs" else MotoServer()
    try:
        server.start()
    except Exception as exc:  # the S3 server is the point of these tests: say why they cannot run
        pytest.skip(f"{request.param} not available: {exc}")
    yield server
    getattr(server, "close", server.stop)()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server_name(request) -> str:
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}"


def healthy_archive(server_name: str, now: datetime, skip: frozenset[int] = frozenset()) -> SyntheticArchive:
    """Three daily backups, the newest one an hour ago, and WAL up to now."""
    synth = SyntheticArchive(root=f"postgres/{server_name}/")
    first = 0x10
    start = now - timedelta(days=2, hours=1)
    last = first + int((now - start) / STEP) - 1
    synth.add_wal_range(1, first, last, start + STEP, STEP, skip)
    for day in range(3):
        when = start + timedelta(days=day)
        n = first + int((when - start) / STEP)
        synth.add_backup(when.strftime("%Y%m%dT%H%M%S"), begin=n, end=n, begin_time=when, data_bytes=10_000)
    return synth


def audit(s3_server: SeaweedServer | MotoServer, server_name: str, now: datetime | None = None,
          thresholds: AuditThresholds | None = None, store: ObjectStore | None = None):
    return run_audit(S3Location("backups", f"postgres/{server_name}"), store or s3_server.store(s3_server.reader),
                     thresholds or AuditThresholds(), now or datetime.now(timezone.utc))


def newest_number(synth: SyntheticArchive) -> int:
    return max(SegmentName.parse(k.rsplit("/", 1)[-1]).number for k in synth.objects if "/wals/" in k)


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings)


# -- healthy and read-only ----------------------------------------------------------------

def test_reader_identity_cannot_write(s3_server):
    with pytest.raises(S3Error, match="access denied"):
        s3_server.store(s3_server.reader).put("postgres/should-not-exist", b"x")


def test_healthy_archive_exit_0_through_the_cli_with_read_only_credentials(s3_server, server_name, monkeypatch,
                                                                          tmp_path, capsys):
    synth = healthy_archive(server_name, datetime.now(timezone.utc))
    synth.upload(s3_server.store())
    for key, value in s3_server.reader.credentials.as_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    prom = tmp_path / "textfile" / "pgdrill.prom"
    argv = [f"s3://backups/postgres/{server_name}", "--endpoint-url", s3_server.endpoint_url,
            "--json", "--prometheus", str(prom)]
    assert audit_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "healthy" and doc["findings"] == []
    assert doc["base_backups"]["count"] == 3
    assert {b["grade"] for b in doc["base_backups"]["items"]} == {"pitr_capable"}
    assert doc["objects_listed"] == len(synth.objects)
    metrics = prom.read_text()
    assert f'pgdrill_audit_success{{server_name="{server_name}"}} 1' in metrics
    assert f'pgdrill_wal_gap_segments{{server_name="{server_name}"}} 0' in metrics
    # the table, too, and no secret anywhere in what the audit prints
    assert audit_main(argv[:3]) == 0
    out = capsys.readouterr().out
    assert "HEALTHY" in out
    for secret in s3_server.reader.credentials.secrets() + s3_server.admin.credentials.secrets():
        assert secret not in out and secret not in metrics


# -- planted problems, both directions ----------------------------------------------------

def test_gap_is_found_exactly_and_disappears_when_the_segment_comes_back(s3_server, server_name):
    now = datetime.now(timezone.utc)
    synth = healthy_archive(server_name, now)
    hole = 0x10 + 300  # between the first and second backup, far from the head
    synth.upload(s3_server.store())
    s3_server.store().delete(synth.wal_key(1, hole))
    report = audit(s3_server, server_name)
    assert codes(report) == ["WAL_GAP"] and exit_code(report) == 1
    (gap,) = report.wal.gaps
    assert (gap.first.name, gap.count) == (SegmentName(1, hole).name, 1)
    assert report.backups[0].grade == "consistent" and report.backups[0].first_missing == gap.first.name
    synth.upload(s3_server.store(), keys=[synth.wal_key(1, hole)])
    assert exit_code(audit(s3_server, server_name)) == 0


def test_hole_next_to_the_head_is_pending_then_a_gap(s3_server, server_name):
    now = datetime.now(timezone.utc)
    synth = healthy_archive(server_name, now)
    head = newest_number(synth)
    del synth.objects[synth.wal_key(1, head - 1)]
    synth.upload(s3_server.store())
    # The next segment landed a second ago: an upload may be in flight, but never "healthy".
    fresh = audit(s3_server, server_name)
    assert fresh.wal.uploading_segments == 1 and fresh.wal.gaps == ()
    assert codes(fresh) == ["WAL_GAP_PENDING"] and exit_code(fresh) == 1
    # Three minutes later it is past the grace period: the CRITICAL WAL_GAP.
    minutes = audit(s3_server, server_name, now=datetime.now(timezone.utc) + timedelta(minutes=3))
    assert codes(minutes) == ["WAL_GAP"] and exit_code(minutes) == 1
    later = audit(s3_server, server_name, now=datetime.now(timezone.utc) + timedelta(minutes=11))
    assert codes(later) == ["WAL_GAP", "WAL_STALE"] and exit_code(later) == 1


def test_stale_backup_alerts_and_a_new_backup_clears_it(s3_server, server_name):
    now = datetime.now(timezone.utc)
    synth = SyntheticArchive(root=f"postgres/{server_name}/")
    start = now - timedelta(hours=30)
    synth.add_wal_range(1, 1, 1 + int((now - start) / STEP) - 1, start + STEP, STEP)
    synth.add_backup("old", begin=1, end=1, begin_time=start, data_bytes=10_000)
    synth.upload(s3_server.store())
    stale = audit(s3_server, server_name)
    assert codes(stale) == ["BACKUP_STALE"] and exit_code(stale) == 1
    n = int((now - timedelta(hours=1) - start) / STEP)
    synth.add_backup("new", begin=n, end=n, begin_time=now - timedelta(hours=1), data_bytes=10_000)
    synth.upload(s3_server.store(), keys=[k for k in synth.objects if "/base/new/" in k])
    assert exit_code(audit(s3_server, server_name)) == 0


def test_stale_wal_alerts_after_10_minutes_not_before(s3_server, server_name):
    synth = healthy_archive(server_name, datetime.now(timezone.utc))
    synth.upload(s3_server.store())
    uploaded = datetime.now(timezone.utc)
    stale = audit(s3_server, server_name, now=uploaded + timedelta(minutes=11))
    assert codes(stale) == ["WAL_STALE"] and exit_code(stale) == 1
    assert exit_code(audit(s3_server, server_name, now=uploaded + timedelta(minutes=9))) == 0


def test_two_failed_backups_alert_and_a_success_clears_it(s3_server, server_name):
    now = datetime.now(timezone.utc)
    synth = healthy_archive(server_name, now)
    for i, hours in enumerate((0.5, 0.25)):
        synth.add_backup(f"failed{i}", status="FAILED", begin=0x10, end=0x10, begin_time=now - timedelta(hours=hours),
                         error="failure uploading data (connection reset)", data_bytes=0)
    synth.upload(s3_server.store())
    report = audit(s3_server, server_name)
    assert codes(report) == ["BACKUP_CONSECUTIVE_FAILURES", "BACKUP_FAILED", "BACKUP_FAILED"]
    assert exit_code(report) == 1 and report.consecutive_failures == 2
    n = newest_number(synth)
    synth.add_backup("newok", begin=n, end=n, begin_time=now - timedelta(minutes=1), duration=timedelta(seconds=30),
                     data_bytes=10_000)
    synth.upload(s3_server.store(), keys=[k for k in synth.objects if "/base/newok/" in k])
    healed = audit(s3_server, server_name)
    assert healed.consecutive_failures == 0 and exit_code(healed) == 0


def test_size_drop_alerts(s3_server, server_name):
    now = datetime.now(timezone.utc)
    synth = healthy_archive(server_name, now)
    newest = sorted(k for k in synth.objects if k.endswith("/data.tar"))[-1]
    synth.objects[newest].size = 3_000
    synth.upload(s3_server.store())
    report = audit(s3_server, server_name)
    assert codes(report) == ["BACKUP_SIZE_DROP"] and report.backups[-1].size_ratio == pytest.approx(0.3)


def test_a_deleted_backup_is_gone_whether_or_not_the_server_keeps_its_folder(s3_server, server_name):
    """SeaweedFS keeps an emptied folder as a common prefix, moto does not: backups are counted by
    their backup.info, so the audit says the same on both."""
    now = datetime.now(timezone.utc)
    synth = healthy_archive(server_name, now)
    synth.upload(s3_server.store())
    newest = sorted(k for k in synth.objects if k.endswith("/backup.info"))[-1].rsplit("/", 2)[-2]
    for key in [k for k in synth.objects if f"/base/{newest}/" in k]:
        s3_server.store().delete(key)
    report = audit(s3_server, server_name)
    assert newest not in {b.backup_id for b in report.backups} and len(report.backups) == 2


# -- S3 problems: could not verify ---------------------------------------------------------

def _assert_could_not_verify(report, *words: str) -> None:
    assert codes(report) == ["S3_ACCESS_ERROR"] and exit_code(report) == 2 and not report.verified
    message = report.findings[0].message
    for word in words:
        assert word in message, message


def test_wrong_credentials(s3_server, server_name):
    store = ObjectStore(s3_server.endpoint_url, S3Credentials("PGDWRONGKEY", "wrong-secret-value"), "backups")
    report = audit(s3_server, server_name, store=store)
    _assert_could_not_verify(report, "rejected the credentials")
    assert "wrong-secret-value" not in json.dumps(report.to_dict())


def test_missing_bucket(s3_server, server_name):
    store = ObjectStore(s3_server.endpoint_url, s3_server.reader.credentials, "no-such-bucket")
    report = run_audit(S3Location("no-such-bucket", f"postgres/{server_name}"), store, AuditThresholds(),
                       datetime.now(timezone.utc))
    _assert_could_not_verify(report, "does not exist")


def test_endpoint_down(server_name):
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = ObjectStore(endpoint, S3Credentials("PGDKEY", "secret"), "backups")
    started = time.monotonic()
    report = run_audit(S3Location("backups", f"postgres/{server_name}"), store, AuditThresholds(),
                       datetime.now(timezone.utc))
    _assert_could_not_verify(report, "unreachable")
    assert time.monotonic() - started < 30


def test_cli_endpoint_down_is_exit_2_without_traceback(server_name, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "PGDKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "some-secret")
    monkeypatch.chdir(tmp_path)
    rc = audit_main([f"s3://backups/postgres/{server_name}", "--endpoint-url", f"http://127.0.0.1:{free_port()}"])
    out = capsys.readouterr()
    assert rc == 2 and "S3_ACCESS_ERROR" in out.out and "Traceback" not in out.out + out.err
    assert "some-secret" not in out.out + out.err


# -- real PostgreSQL + barman-cloud ----------------------------------------------------------

VENV_BIN = Path(os.sys.executable).parent


class RealCluster:
    """Just enough of a PostgreSQL primary archiving with barman-cloud (no pgdrill backend code)."""

    def __init__(self, s3_server: SeaweedServer | MotoServer, server_name: str, work: Path, port: int):
        from pgdrill.backends.local.postgres import pg_bin_dir
        from pgdrill.backends.local.runas import OsUser

        self.s3_server, self.server_name, self.work, self.port = s3_server, server_name, work, port
        self.bin = pg_bin_dir()
        self.user = OsUser.for_postgres("pgdrill")
        self.sock = self.user.own(work / "sock", 0o755)
        self.logs = self.user.own(work / "logs", 0o755)
        self.env = {**s3_server.admin.credentials.as_environment(),
                    "PATH": f"{self.bin}:{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
        self.barman = ["--endpoint-url", s3_server.endpoint_url, "s3://backups/postgres", server_name]

    def run(self, *argv: str, timeout: float = 120) -> str:
        result = self.user.run(list(argv), self.env, self.work, timeout=timeout)
        assert result.returncode == 0, f"{argv[0]}: {result.stderr[-2000:]}"
        return result.stdout

    def psql(self, sql: str, port: int | None = None) -> str:
        return self.run(str(self.bin / "psql"), "-h", str(self.sock), "-p", str(port or self.port), "-U", "postgres",
                        "-d", "postgres", "-tAXc", sql).strip()

    def start(self, data: Path, settings: dict[str, str], log: Path) -> None:
        with open(data / "postgresql.auto.conf", "a") as conf:
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")
        self.run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start")

    def stop(self, data: Path) -> None:
        self.user.run([str(self.bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], self.env,
                      self.work, timeout=60)


@pytest.fixture
def real_cluster(s3_server, server_name):
    from pgdrill.backends.local.postgres import pg_bin_dir

    try:
        pg_bin_dir()
    except Exception as exc:
        pytest.skip(f"embedded PostgreSQL not available: {exc}")
    if not (VENV_BIN / "barman-cloud-backup").exists():
        pytest.skip("barman-cloud not installed (pip install 'pgdrill[local]')")
    work = Path(tempfile.mkdtemp(prefix="pgdrill-audit-pg-"))
    work.chmod(0o755)  # the unprivileged PostgreSQL user must reach its directories
    cluster = RealCluster(s3_server, server_name, work, free_port())
    started: list[Path] = []
    cluster.started = started  # type: ignore[attr-defined]
    yield cluster
    for data in started:
        cluster.stop(data)
    shutil.rmtree(work, ignore_errors=True)


def test_real_barman_cloud_archive_gap_matches_what_a_real_recovery_reaches(s3_server, server_name, real_cluster):
    pg = real_cluster
    primary = pg.user.own(pg.work / "primary") / "data"
    pg.run(str(pg.bin / "initdb"), "-D", str(primary), "-U", "postgres", "--auth=trust", "-E", "UTF8",
           "--locale=C.UTF-8")
    archive = " ".join([str(VENV_BIN / "barman-cloud-wal-archive"), *pg.barman, "%p"])
    pg.start(primary, {"port": str(pg.port), "listen_addresses": "", "unix_socket_directories": str(pg.sock),
                       "archive_mode": "on", "wal_level": "replica", "archive_command": archive}, pg.logs / "primary.log")
    pg.started.append(primary)
    pg.psql("create table ledger (id int primary key); insert into ledger select generate_series(1, 24)")
    pg.run(str(VENV_BIN / "barman-cloud-backup"), "--endpoint-url", s3_server.endpoint_url, "-h", str(pg.sock),
           "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "--immediate-checkpoint",
           "s3://backups/postgres", server_name)
    segments = []
    for row in (25, 26, 27):  # the ADR experiment: one row per segment
        pg.psql(f"insert into ledger values ({row})")
        segments.append(pg.psql("select pg_walfile_name(pg_current_wal_lsn())"))
        pg.psql("select pg_switch_wal()")
    deadline = time.monotonic() + 60
    while pg.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver") < segments[-1]:
        assert time.monotonic() < deadline, "WAL was not archived within 60 s"
        time.sleep(0.2)

    # Nothing is uploading here, so no grace for holes next to the head: the ADR's gap is lost WAL.
    strict = AuditThresholds(wal_grace_segments=0)
    healthy = audit(s3_server, server_name, thresholds=strict)
    assert codes(healthy) == [], healthy.findings
    (backup,) = healthy.backups
    assert backup.status == "DONE" and backup.grade == "pitr_capable" and backup.stored_bytes > 1_000_000
    assert healthy.wal.newest_segment >= segments[-1]

    middle = segments[1]
    store = s3_server.store()
    (key,) = [o.key for o in store.list(f"postgres/{server_name}/wals/") if o.key.rsplit("/", 1)[-1] == middle]
    store.delete(key)
    gapped = audit(s3_server, server_name, thresholds=strict)
    assert "WAL_GAP" in codes(gapped) and exit_code(gapped) == 1
    (gap,) = gapped.wal.gaps
    assert (gap.first.name, gap.last.name) == (middle, middle)
    (backup,) = gapped.backups
    assert backup.grade == "consistent" and backup.first_missing == middle

    # A real recovery from that backup: where does PostgreSQL fork the new timeline?
    pg.stop(primary)
    pg.started.remove(primary)
    restored = pg.user.own(pg.work / "restored") / "data"
    pg.run(str(VENV_BIN / "barman-cloud-restore"), *pg.barman, backup.backup_id, str(restored))
    restore = " ".join([str(VENV_BIN / "barman-cloud-wal-restore"), *pg.barman, "%f", "%p"])
    (restored / "recovery.signal").touch()
    os.chown(restored / "recovery.signal", pg.user.uid, pg.user.gid)
    port = free_port()
    pg.start(restored, {"port": str(port), "archive_mode": "off", "restore_command": restore,
                        "recovery_target_timeline": "latest"}, pg.logs / "restored.log")
    pg.started.append(restored)
    deadline = time.monotonic() + 90
    while pg.psql("select pg_is_in_recovery()", port=port) != "f":
        assert time.monotonic() < deadline, (pg.logs / "restored.log").read_text()[-3000:]
        time.sleep(0.3)
    assert pg.psql("select count(*) from ledger", port=port) == "25"  # rows 26, 27 silently lost
    history = (restored / "pg_wal" / "00000002.history").read_text()
    (switch,) = parse_history(history)
    # The audit said replay stops after `reaches`; PostgreSQL forked exactly at its end.
    assert switch.switchpoint == SegmentName.parse(backup.reaches).end_lsn
    assert str(switch.switchpoint) == gapped.recoverability.latest_lsn
    assert Lsn.parse(gapped.recoverability.latest_lsn).segment() == SegmentName.parse(middle).number
