"""``pgdrill restore-test`` on real archives: a real PostgreSQL cluster archiving with real
barman-cloud into the real local S3 server, then restored by the restore-test under the S3
server's read-only identity.  Each planted problem gives its finding and exit code; the clean
archive passes; the bucket listing (keys, sizes, ETags) is identical before and after."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pgdrill.archive.store import S3Location
from pgdrill.backends.local.backend import LocalBackend
from pgdrill.config import Config
from pgdrill.restoretest.cli import restore_test_main
from pgdrill.restoretest.run import run_restore_test
from pgdrill.restoretest.spec import OwnerCheck, RestoreTestSpec, UserCheck
from pgdrill.results import Verdict

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

READER_KEY, READER_SECRET = "PGDRILL_TEST_RO_KEY", "PGDRILL_TEST_RO_SECRET"


class Source:
    """A source cluster archiving into the backend's prefix; ``location`` is its serverName folder."""

    def __init__(self, backend: LocalBackend, name: str = "prod"):
        self.backend = backend
        self.cluster = backend.create_source(name)
        self.location = backend.destination.child(name).url

    def sql(self, query: str) -> list:
        return self.backend.sql(self.cluster, query)

    def switch(self) -> str:
        segment = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
        self.sql("SELECT pg_switch_wal()")
        self.backend.wait_archived(self.cluster, segment)
        return segment

    def write(self, rows: int) -> None:
        self.sql(f"INSERT INTO app.events (payload, at) SELECT md5(g::text), now() FROM generate_series(1, {rows}) g")

    def wal_key(self, segment: str) -> str:
        prefix = S3Location.parse(self.location).prefix
        return f"{prefix}/wals/{segment[:16]}/{segment}.gz"


@pytest.fixture
def backend(tmp_path, monkeypatch):
    config = Config()
    local = LocalBackend(config, f"rt-{tmp_path.name[-12:]}")
    reader = local.s3_server.reader.credentials
    monkeypatch.setenv(READER_KEY, reader.access_key_id)
    monkeypatch.setenv(READER_SECRET, reader.secret_access_key)
    yield local
    local.close()


@pytest.fixture
def source(backend):
    src = Source(backend)
    src.sql("CREATE ROLE app_owner")
    src.sql("CREATE SCHEMA app")
    src.sql("CREATE TABLE app.events (id bigserial PRIMARY KEY, payload text, at timestamptz)")
    src.sql("ALTER TABLE app.events OWNER TO app_owner")
    src.write(500)
    backend.take_backup(src.cluster)
    for _ in range(3):
        src.write(200)
        src.switch()
    return src


def spec_for(source: Source, **kw) -> RestoreTestSpec:
    return RestoreTestSpec(location=source.location, endpoint_url=source.backend.endpoint_url,
                           access_key_id_env=READER_KEY, secret_access_key_env=READER_SECRET,
                           owners=(OwnerCheck("app.events", "app_owner"),),
                           checks=(UserCheck("events", "SELECT count(*) FROM app.events", min_rows=1100),
                                   UserCheck("fresh", "SELECT max(at) FROM app.events", max_age_seconds=600)),
                           **kw)


def listing(backend: LocalBackend) -> list[tuple[str, int, str]]:
    client = backend.store._client  # admin view of the whole bucket
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=backend.store.bucket):
        out += [(o["Key"], o["Size"], o["ETag"]) for o in page.get("Contents", [])]
    return sorted(out)


def run(source: Source, tmp_path: Path, **kw):
    config = Config()
    return run_restore_test(spec_for(source, **kw), config, f"rt-{len(list(tmp_path.iterdir()))}-{tmp_path.name[-8:]}",
                            progress=lambda m: None)


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


@pytest.mark.parametrize("parallel", [1, 4], ids=["maxParallel-1", "maxParallel-4"])
def test_clean_archive_restores_to_its_end_read_only_and_the_bucket_is_unchanged(backend, source, tmp_path,
                                                                                 parallel):
    before = listing(backend)
    result = run(source, tmp_path, wal_max_parallel=parallel)
    assert result.recovery["wal_max_parallel"] == parallel
    fetch = result.recovery["wal_fetch"]
    assert fetch["max_parallel"] == parallel
    if parallel > 1:  # the spool served some requests, and every request is accounted for
        assert fetch["from_spool"] > 0 and fetch["requests"] == fetch["from_spool"] + fetch["fetched"] + \
            fetch["not_found"] + fetch["failed"]
    assert result.verdict == Verdict.PASSED, result.verdict_reasons
    statuses = {d.name: d.status.value for d in result.detectors}
    assert statuses["end_of_archive"] == "clean" and statuses["target"] == "clean"
    assert statuses["physical"] == "clean" and statuses["ownership"] == "clean"
    assert statuses["user_checks"] == "clean"
    phases = result.rto.phases
    assert list(phases) == ["preflight", "restore", "replay_to_consistency", "replay_to_end", "promote",
                            "first_write"]
    assert abs(sum(phases.values()) - result.rto.total) < 1e-6
    wal = result.recovery["wal_fetched"]
    # The backup's own WAL plus the three switched segments, at least; each one fetched once.
    assert wal["segments"] >= 4 and wal["stored_bytes"] > 0
    assert result.recovery["rto_forecast"]["seconds"] is not None
    # user check evidence holds a hash and counts, never the rows
    rows = result.recovery["user_checks"]
    assert all("sha256" in r for r in rows) and "payload" not in json.dumps(rows)
    assert listing(backend) == before


def test_a_wal_gap_after_the_backup_is_named_although_recovery_exits_0(backend, source, tmp_path):
    segments = sorted(k for k, *_ in listing(backend) if "/wals/" in k and k.endswith(".gz"))
    victim = segments[-2]  # the newest but one: later WAL exists, so it is a hole, not the end
    backend.store._client.delete_object(Bucket=backend.store.bucket, Key=victim)
    result = run(source, tmp_path)
    assert result.verdict == Verdict.FAILED
    assert {"REPLAY_STOPPED_EARLY", "WAL_GAP", "RECOVERY_TARGET_UNREACHED"} <= codes(result)
    gap = next(f for f in result.findings if f.code == "WAL_GAP")
    assert Path(victim).name.split(".")[0] in gap.evidence["missing"]
    assert result.recovery["promoted"] is True  # PostgreSQL itself said nothing


def test_a_user_check_that_fails_fails_the_restore_test(backend, source, tmp_path):
    config_spec = spec_for(source)
    failing = RestoreTestSpec(**{**config_spec.__dict__, "checks": (
        UserCheck("too-many", "SELECT count(*) FROM app.events", min_rows=10**6),),
        "owners": (OwnerCheck("app.events", "postgres"),), "target_check": False})
    result = run_restore_test(failing, Config(), "rt-user-check",
                              progress=lambda m: None)
    assert result.verdict == Verdict.FAILED
    assert {"USER_CHECK_FAILED", "OWNERSHIP_MISMATCH"} <= codes(result)


def test_cli_writes_reports_and_exits_0_then_bad_input_is_one_line(backend, source, tmp_path, capsys):
    reports = tmp_path / "reports"
    argv = [source.location, "--endpoint-url", backend.endpoint_url, "--access-key-env", READER_KEY,
            "--secret-key-env", READER_SECRET, "--reports-dir", str(reports), "--no-target-check"]
    assert restore_test_main(argv) == 0
    run_dir = next(p for p in reports.iterdir() if p.is_dir())
    for name in ("results.json", "report.html", "junit.xml", "metrics.prom"):
        assert (run_dir / name).is_file(), name
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "timeline 1" in html  # the WAL timeline of the restored chain
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((run_dir / "metrics.prom").read_text())}
    verdicts = {s.labels["verdict"]: s.value for s in families["pgdrill_drill_verdict"].samples
                if s.labels["drill"] == "restore-test-prod"}
    assert verdicts["passed"] == 1.0 and verdicts["failed"] == 0.0
    rto = json.loads((run_dir / "results.json").read_text())["drills"][0]["rto"]["total_s"]
    assert [s.value for s in families["pgdrill_drill_rto_seconds"].samples] == [pytest.approx(rto, abs=1e-3)]
    secret = backend.s3_server.reader.credentials.secret_access_key
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    capsys.readouterr()
    assert restore_test_main([*argv, "--backup-id", "20990101T000000"]) == 2
    # progress lines start with "restore-test:"; the error is one line, before anything is downloaded
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("restore-test: ")]
    assert len(err) == 1 and "does not exist" in err[0] and "restoring" not in err[0]


def _take_second_backup(source: Source) -> str:
    source.write(100)
    backup_id = source.backend.take_backup(source.cluster)
    source.write(100)
    source.switch()
    return backup_id


def test_newest_backup_that_cannot_be_restored_falls_back_to_the_previous_one(backend, source, tmp_path):
    first = sorted(source.backend._backup_ids("prod"))[0]
    newest = _take_second_backup(source)
    prefix = S3Location.parse(source.location).prefix
    key = f"{prefix}/base/{newest}/data.tar"
    # Cut the newest backup's data short: barman-cloud-restore fails on it, as on a damaged upload.
    client, bucket = backend.store._client, backend.store.bucket
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=body[: len(body) // 3])
    result = run(source, tmp_path, target_check=False)
    assert result.verdict == Verdict.FAILED
    unusable = [f for f in result.findings if f.code == "BACKUP_UNUSABLE"]
    assert [f.evidence["backup_id"] for f in unusable] == [newest]
    assert unusable[0].evidence["rto_cost_seconds"] > 0
    assert result.recovery["backup_id"] == first and result.recovery["promoted"]
    assert "fallback" in result.rto.phases
    assert {d.name: d.status.value for d in result.detectors}["end_of_archive"] == "clean"


def test_a_damaged_heap_page_in_the_newest_backup_is_found(backend, source, tmp_path):
    import io
    import tarfile

    source.sql("CREATE TABLE app.static AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g")
    path = source.sql("SELECT pg_relation_filepath('app.static')")[0][0]
    source.sql("CHECKPOINT")
    newest = _take_second_backup(source)  # app.static is never written again: no full-page image repairs it
    prefix = S3Location.parse(source.location).prefix
    key = f"{prefix}/base/{newest}/data.tar"
    client, bucket = backend.store._client, backend.store.bucket
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    with tarfile.open(fileobj=io.BytesIO(bytes(body))) as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == path)
    start = member.offset_data + 8192 + 4000  # inside the second page's tuples
    body[start:start + 64] = bytes(64)
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    result = run(source, tmp_path, target_check=False)
    assert result.verdict == Verdict.FAILED
    assert "DATA_CHECKSUM_FAILURE" in codes(result)
    assert result.recovery["backup_id"] == newest  # the damage is inside: restore and replay succeed


def test_pytest_drills_runs_every_configured_restore_test(backend, source, tmp_path):
    import subprocess
    import sys

    config = tmp_path / "pgdrill.toml"
    config.write_text(f'''
[[restore_test]]
name = "prod-archive"
location = "{source.location}"
endpoint_url = "{backend.endpoint_url}"
access_key_id_env = "{READER_KEY}"
secret_access_key_env = "{READER_SECRET}"
target_check = false

[[restore_test.checks]]
name = "events"
sql = "SELECT count(*) FROM app.events"
min_rows = 1100
''')
    reports = tmp_path / "reports"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pytest", str(root / "drills" / "test_restore_tests.py"), "-q",
                           "-p", "no:cacheprovider", "--pgdrill-config", str(config), "--reports-dir", str(reports)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
    results = json.loads(next(reports.glob("*/results.json")).read_text())
    [drill] = results["drills"]
    assert drill["drill"] == "prod-archive" and drill["verdict"] == "passed"
    assert drill["recovery"]["user_checks"][0]["status"] == "passed"


def test_a_timeline_2_fork_is_followed_to_its_end(backend, source, tmp_path):
    replica = backend.create_replica(source.cluster, "prod-replica")
    source.write(50)
    source.switch()
    time.sleep(1.0)  # let the replica receive it: what it has is what TL2 starts from
    backend.kill_primary(source.cluster)
    promoted = backend.promote(replica)
    assert promoted.promoted, promoted.fatal_lines
    source.cluster = replica  # the new primary archives into the same serverName, on timeline 2
    source.write(100)
    last = source.switch()
    assert last.startswith("00000002")
    result = run(source, tmp_path)
    assert result.verdict == Verdict.PASSED, result.verdict_reasons
    end = next(d for d in result.detectors if d.name == "end_of_archive")
    assert "00000002" in end.summary  # the end of the archive is on timeline 2
    assert result.recovery["timeline"] == 3
    assert any(n.startswith("00000002") for n in result.recovery["restored_segments"])


def test_a_newest_backup_whose_end_wal_is_missing_is_unusable_and_the_previous_one_restores(backend, source,
                                                                                             tmp_path):
    first = sorted(source.backend._backup_ids("prod"))[0]
    newest = _take_second_backup(source)
    end_wal = next(b for b in source.backend.read_archive("prod")[1] if b.backup_id == newest).end_wal
    backend.store._client.delete_object(Bucket=backend.store.bucket, Key=source.wal_key(end_wal.name))
    result = run(source, tmp_path, target_check=False)
    assert result.verdict == Verdict.FAILED
    unusable = next(f for f in result.findings if f.code == "BACKUP_UNUSABLE")
    assert unusable.evidence["backup_id"] == newest
    assert result.recovery["backup_id"] == first
    # the fallback's recovery must cross the same hole: it stops there, and says so
    assert {"REPLAY_STOPPED_EARLY", "WAL_GAP"} <= codes(result)


def test_bad_input_is_one_line_and_nothing_is_downloaded(backend, source, tmp_path, capsys, monkeypatch):
    base = [source.location, "--endpoint-url", backend.endpoint_url, "--access-key-env", READER_KEY,
            "--secret-key-env", READER_SECRET, "--reports-dir", str(tmp_path / "reports")]
    cases = {
        "wrong credentials": ([*base], {READER_SECRET: "not-the-secret"}, "cannot list"),
        "unknown serverName": ([source.location + "-nope", *base[1:]], {}, "nothing under"),
        "target after the archive": ([*base, "--target-time", "2099-01-01T00:00:00Z"], {}, "after the end"),
        "variable unset": ([*base, "--access-key-env", "PGDRILL_TEST_UNSET"], {}, "set PGDRILL_TEST_UNSET"),
    }
    for label, (argv, env, words) in cases.items():
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            capsys.readouterr()
            assert restore_test_main(argv) == 2, label
            err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("restore-test: ")]
            assert len(err) == 1 and words in err[0], (label, err)
            assert backend.s3_server.reader.credentials.secret_access_key not in err[0]
    assert not list(Path(backend.run_dir.parent).glob("pgdrill-*/prod-restore-*")), "nothing restored"


def test_ctrl_c_during_the_restore_is_an_error_in_every_output_and_releases_everything(backend, source, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    reports = tmp_path / "reports"
    env = {**os.environ}
    argv = [sys.executable, "-m", "pgdrill.cli", "restore-test", source.location, "--endpoint-url",
            backend.endpoint_url, "--access-key-env", READER_KEY, "--secret-key-env", READER_SECRET,
            "--reports-dir", str(reports)]
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # interrupt once PostgreSQL of the restore is replaying
        if subprocess.run(["pgrep", "-f", "prod-restore-1/pgdata"], capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the restore-test never started PostgreSQL")
    # At once: replay takes seconds and the checks after it more, so the run is still going.
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, out + err
    results = json.loads(next(reports.glob("*/results.json")).read_text())
    assert [d["verdict"] for d in results["drills"]] == ["error"]
    junit = next(reports.glob("*/junit.xml")).read_text()
    assert "<error" in junit
    leftover = subprocess.run(["pgrep", "-f", "prod-restore-1/pgdata"], capture_output=True)
    assert leftover.returncode == 1, "PostgreSQL of the interrupted restore is still running"
