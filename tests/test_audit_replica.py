"""``pgdrill audit --replica``: the archive's copy in another organisation's bucket.

Unit tests of the pure parts (what a recovery from the replica needs, the comparison) on
synthetic listings; then integration tests on a real SeaweedFS with two buckets and, per bucket,
an admin and a read-only identity scoped to that bucket alone.  There the replica is produced as
replication would: read from the primary with the primary's key, written with the replica's.
Every audit there runs with the two read-only identities.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgdrill.archive.store import ObjectInfo, ObjectStore, S3Credentials, S3Location
from pgdrill.audit import AuditThresholds, audit_main, exit_code, run_audit
from pgdrill.audit.replica import (
    MAX_LISTED,
    ReplicaReport,
    ReplicaTarget,
    compare_replica,
    expected_objects,
    newest_consistent,
)
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.audit.thresholds import ReplicaSettings, load_thresholds
from pgdrill.errors import ConfigError, S3Error, UsageError
from pgdrill.postgres.wal import Lsn

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=5)
FIRST = 0x10
LAG = 600.0  # the default limit, ADR 007's WAL age
PRIMARY = S3Location("backups", "postgres/pg")
REPLICA = S3Location("replica-org", "dr/postgres/pg")
REPLICA_ENV = ("PGDRILL_REPLICA_AWS_ACCESS_KEY_ID", "PGDRILL_REPLICA_AWS_SECRET_ACCESS_KEY")


class MemoryStore:
    """A bucket in memory (list + get), from a synthetic archive or a copy of one."""

    endpoint_url = None

    def __init__(self, objects: dict[str, ObjectInfo], bodies: dict[str, bytes] | None = None,
                 fail: str | None = None, fail_get: str | None = None):
        self.objects, self.bodies, self.fail, self.fail_get = objects, bodies or {}, fail, fail_get
        self.calls: list[str] = []

    def list(self, prefix: str):
        self.calls.append("list")
        if self.fail:
            raise S3Error(self.fail)
        yield from (o for k, o in sorted(self.objects.items()) if k.startswith(prefix))

    def get(self, key: str) -> bytes:
        self.calls.append("get")
        if self.fail_get:
            raise S3Error(self.fail_get)
        return self.bodies.get(key, b"")

    def list_prefixes(self, prefix: str) -> list[str]:
        return []


def archive(now: datetime = NOW, root: str = "postgres/pg/") -> SyntheticArchive:
    """Two backups (3 h and 1 h ago) and a segment every 5 minutes up to 5 minutes ago."""
    synth = SyntheticArchive(root=root)
    start = now - timedelta(hours=3)
    synth.add_wal_range(1, FIRST, FIRST + 34, start + STEP, STEP)
    synth.add_backup("old", begin=FIRST, end=FIRST, begin_time=start, data_bytes=10_000)
    synth.add_backup("new", begin=FIRST + 24, end=FIRST + 25, begin_time=now - timedelta(hours=1),
                     data_bytes=10_000)
    return synth


def primary_store(synth: SyntheticArchive) -> MemoryStore:
    return MemoryStore({o.key: o for o in synth.listing()}, {k: synth.get(k) for k in synth.keys()})


def mirror(synth: SyntheticArchive, copied_at: datetime = NOW, root: str = REPLICA.prefix + "/",
           skip: tuple[str, ...] = ()) -> MemoryStore:
    """What replication made of the primary: the same objects under another root, copied at ``copied_at``."""
    objects, bodies = {}, {}
    for obj in synth.listing():
        if obj.key in skip:
            continue
        key = root + obj.key[len(synth.root):]
        objects[key] = ObjectInfo(key, obj.size, copied_at, obj.etag)
        bodies[key] = synth.get(obj.key)
    return MemoryStore(objects, bodies)


def audit(synth: SyntheticArchive, replica: MemoryStore, now: datetime = NOW,
          thresholds: AuditThresholds | None = None, lag: float = LAG):
    return run_audit(PRIMARY, primary_store(synth), thresholds or AuditThresholds(), now,
                     ReplicaTarget(REPLICA, replica, lag))


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings)


def finding(report, code):
    (found,) = [f for f in report.findings if f.code == code]
    return found


# -- what a recovery from the replica needs ------------------------------------------------

def _primary(synth: SyntheticArchive):
    from pgdrill.archive.catalog import read_catalog

    store = primary_store(synth)
    meta = read_catalog(store, synth.root, "pg")
    report = run_audit(PRIMARY, store, AuditThresholds(), NOW)
    return meta, report


def test_expected_objects_are_the_newest_consistent_backup_and_its_wal_up_to_the_newest():
    synth = archive()
    meta, report = _primary(synth)
    assert newest_consistent(report) == "new"
    expected = expected_objects(meta, synth.listing(), "new")
    backup = [e.rel for e in expected if e.kind == "backup"]
    assert backup == ["base/new/backup.info", "base/new/data.tar"]
    wal = [e for e in expected if e.kind == "wal"]
    assert [e.rel.rsplit("/", 1)[-1] for e in wal] == [synth.seg(1, n).name for n in range(FIRST + 24, FIRST + 35)]
    assert [e.order for e in wal] == list(range(len(wal)))
    # begin..end is what consistency needs; the rest serves later recovery points
    assert [e.required for e in wal] == [True, True] + [False] * (len(wal) - 2)
    assert all(e.required for e in expected if e.kind == "backup")


def test_expected_objects_follow_a_timeline_switch_with_its_history_file():
    synth = SyntheticArchive(root="postgres/pg/")
    t0 = NOW - timedelta(hours=3)
    synth.add_wal_range(1, 0x10, 0x2F, t0 + STEP)
    synth.add_wal_range(2, 0x30, 0x3F, t0 + 33 * STEP, timedelta(minutes=2))
    synth.add_history(2, [(1, Lsn(0x30_0000E8), "no recovery target specified")], t0 + 33 * STEP)
    synth.add_backup("b", begin=0x2E, end=0x2E, begin_time=t0 + 30 * STEP)
    meta, report = _primary(synth)
    expected = expected_objects(meta, synth.listing(), newest_consistent(report))
    assert [e.rel for e in expected if e.kind == "history"] == ["wals/00000002.history"]
    names = [e.rel.rsplit("/", 1)[-1] for e in expected if e.kind == "wal"]
    assert names == [synth.seg(1, 0x2E).name, synth.seg(1, 0x2F).name] + [
        synth.seg(2, n).name for n in range(0x30, 0x40)]


# -- the comparison --------------------------------------------------------------------------

def _compare(synth: SyntheticArchive, replica: MemoryStore, now: datetime = NOW):
    meta, _ = _primary(synth)
    expected = expected_objects(meta, synth.listing(), "new")
    return compare_replica(expected, replica.objects.values(), REPLICA.prefix + "/", now, LAG,
                           location=REPLICA.url, backup_id="new")


def test_a_complete_copy_has_no_finding_and_no_lag():
    synth = archive()
    replica, found = _compare(synth, mirror(synth))
    assert found == [] and replica.status == "ok" and replica.verified
    assert (replica.lag_seconds, replica.missing_objects, replica.mismatched_objects) == (0.0, 0, 0)
    assert replica.checked_objects == 2 + 11 and replica.unreplicated_segments == 0
    assert replica.replica_newest_segment == replica.primary_newest_segment == synth.seg(1, FIRST + 34).name


def test_an_old_hole_is_missing_and_named_a_fresh_one_is_a_copy_in_flight():
    synth = archive()
    hole = synth.wal_key(1, FIRST + 28)  # uploaded 35 minutes before NOW
    replica, found = _compare(synth, mirror(synth, skip=(hole,)))
    (missing,) = found
    assert missing.code == "REPLICA_OBJECT_MISSING" and missing.severity.value == "critical"
    key = REPLICA.prefix + "/" + hole[len(synth.root):]
    assert missing.evidence["keys"] == [key] and missing.evidence["count"] == 1
    assert synth.seg(1, FIRST + 28).name in missing.message
    assert replica.lag_seconds == 0.0  # the replica holds the newest segment: a hole, not lag
    # The same hole seconds after the primary got the segment: replication is copying it.
    young = archive()
    young.objects[young.wal_key(1, FIRST + 33)].last_modified = NOW - timedelta(seconds=30)
    replica, found = _compare(young, mirror(young, skip=(young.wal_key(1, FIRST + 33),)))
    assert found == [] and replica.pending_objects == 1 and replica.missing_objects == 0


def test_the_tail_is_lag_not_missing_and_alerts_only_past_the_limit():
    synth = archive()
    tail = tuple(synth.wal_key(1, n) for n in range(FIRST + 32, FIRST + 35))  # the newest three
    # The newest three segments are 15, 10 and 5 minutes old: the oldest waits for 15 min.
    replica, found = _compare(synth, mirror(synth, skip=tail))
    (lag,) = found
    assert lag.code == "REPLICA_LAG" and lag.severity.value == "warning"
    assert replica.lag_seconds == pytest.approx(15 * 60) and replica.unreplicated_segments == 3
    assert replica.missing_objects == 0 and replica.replica_newest_segment == synth.seg(1, FIRST + 31).name
    assert lag.evidence["first_unreplicated"].endswith(synth.seg(1, FIRST + 32).name)
    # Only the newest one (5 minutes): within the limit, healthy.
    replica, found = _compare(synth, mirror(synth, skip=tail[-1:]))
    assert found == [] and replica.lag_seconds == pytest.approx(5 * 60) and replica.status == "ok"


def test_without_the_backups_wal_the_replica_cannot_restore_it():
    synth = archive()
    wal = tuple(k for k in synth.keys() if "/wals/" in k)
    replica, found = _compare(synth, mirror(synth, skip=wal))
    assert {f.code for f in found} == {"REPLICA_OBJECT_MISSING", "REPLICA_LAG"}
    (missing,) = [f for f in found if f.code == "REPLICA_OBJECT_MISSING"]
    # begin..end WAL are holes a recovery cannot pass; the rest is lag
    assert [k.rsplit("/", 1)[-1] for k in missing.evidence["keys"]] == [
        synth.seg(1, FIRST + 24).name, synth.seg(1, FIRST + 25).name]
    assert replica.replica_newest_segment is None and replica.unreplicated_segments == 11


def test_a_backup_object_missing_is_critical_once_the_primary_had_it_longer_than_the_limit():
    synth = archive()
    data = synth.root + "base/new/data.tar"
    replica, found = _compare(synth, mirror(synth, skip=(data,)))
    assert [f.code for f in found] == ["REPLICA_OBJECT_MISSING"]
    assert found[0].evidence["kinds"] == ["backup"]
    # just after the backup ended: the copy may still be running
    replica, found = _compare(synth, mirror(synth, skip=(data,)), now=NOW - timedelta(minutes=55))
    assert replica.pending_objects == 1 and not [f for f in found if f.code == "REPLICA_OBJECT_MISSING"]


def test_size_and_md5_etag_differences_are_mismatches_multipart_etags_are_not_compared():
    synth = archive()
    md5a, md5b = "0" * 32, "f" * 32
    seg = synth.wal_key(1, FIRST + 30)
    copy = mirror(synth)
    rel = seg[len(synth.root):]
    replica_key = REPLICA.prefix + "/" + rel
    primary_obj = next(o for o in synth.listing() if o.key == seg)

    def compare_with(primary_etag, replica_etag, replica_size=None, compare_etags=True):
        meta, _ = _primary(synth)
        expected = expected_objects(meta, synth.listing(), "new")
        expected = [e if e.rel != rel else type(e)(e.rel, ObjectInfo(seg, primary_obj.size, primary_obj.last_modified,
                                                                      primary_etag), e.kind, e.required, e.order)
                    for e in expected]
        objects = dict(copy.objects)
        objects[replica_key] = ObjectInfo(replica_key, replica_size or primary_obj.size, NOW, replica_etag)
        return compare_replica(expected, objects.values(), REPLICA.prefix + "/", NOW, LAG,
                               location=REPLICA.url, backup_id="new", compare_etags=compare_etags)

    report, found = compare_with(md5a, md5a, replica_size=primary_obj.size - 1)
    assert [f.code for f in found] == ["REPLICA_OBJECT_MISMATCH"] and report.mismatched_objects == 1
    assert found[0].evidence["objects"][0]["key"] == replica_key
    assert "size" in found[0].evidence["objects"][0]["reason"]
    report, found = compare_with(md5a, md5b)
    assert [f.code for f in found] == ["REPLICA_OBJECT_MISMATCH"] and "MD5" in found[0].message
    assert compare_with(md5a, md5a.upper())[1] == []  # hex case is not a difference
    assert compare_with(md5a, "a" * 32 + "-3")[1] == []  # multipart: not an MD5, size only
    assert compare_with(None, md5b)[1] == []
    assert compare_with(md5a, md5b, compare_etags=False)[1] == []  # SSE-KMS/SSE-C buckets: sizes only
    assert compare_with(md5a, md5a, replica_size=1, compare_etags=False)[0].mismatched_objects == 1


def test_many_missing_objects_are_counted_all_and_listed_up_to_the_limit():
    synth = archive()
    synth.add_wal_range(1, FIRST + 35, FIRST + 35 + 40, NOW - timedelta(hours=2), timedelta(seconds=1))
    holes = tuple(synth.wal_key(1, n) for n in range(FIRST + 24, FIRST + 35 + 40))  # keep only the newest
    _, found = _compare(synth, mirror(synth, skip=holes), now=NOW + timedelta(hours=1))
    missing = next(f for f in found if f.code == "REPLICA_OBJECT_MISSING")
    assert missing.evidence["count"] == len(holes) and len(missing.evidence["keys"]) == MAX_LISTED


# -- through run_audit: findings join the report, exit codes follow ----------------------------

def test_run_audit_adds_the_replica_findings_and_report():
    synth = archive()
    healthy = audit(synth, mirror(synth))
    assert codes(healthy) == [] and exit_code(healthy) == 0
    assert healthy.replica.verified and healthy.replica.backup_id == "new"
    doc = healthy.to_dict()["replica"]
    assert doc["status"] == "ok" and doc["location"] == REPLICA.url and doc["checked_objects"] == 13
    hole = synth.wal_key(1, FIRST + 26)
    broken = audit(synth, mirror(synth, skip=(hole,)))
    assert codes(broken) == ["REPLICA_OBJECT_MISSING"] and exit_code(broken) == 1
    assert broken.status == "alert"


def test_replica_unreadable_is_could_not_verify_and_a_verified_alert_still_wins():
    synth = archive()
    denied = MemoryStore({}, fail="S3 access denied for s3://replica-org/dr/postgres/pg/: the credentials lack permission")
    report = audit(synth, denied)
    assert codes(report) == ["REPLICA_ACCESS_ERROR"] and exit_code(report) == 2
    assert not report.replica.verified and "access denied" in report.replica.error
    assert report.replica.status == "could_not_verify"
    # Listing allowed, reading not: the replica's backup.info cannot be fetched by a recovery either.
    copy = mirror(synth)
    copy.fail_get = "S3 access denied for s3://replica-org/...: the credentials lack permission"
    report = audit(synth, copy)
    assert codes(report) == ["REPLICA_ACCESS_ERROR"] and exit_code(report) == 2
    assert "backup.info" in finding(report, "REPLICA_ACCESS_ERROR").message
    # The primary alerting too: exit 1, the replica still shows as unverified.
    stale = audit(synth, denied, now=NOW + timedelta(minutes=30))
    assert "WAL_STALE" in codes(stale) and "REPLICA_ACCESS_ERROR" in codes(stale) and exit_code(stale) == 1


def test_primary_unreadable_leaves_the_replica_not_compared():
    synth = archive()
    replica = mirror(synth)
    report = run_audit(PRIMARY, MemoryStore({}, fail="S3 endpoint unreachable"), AuditThresholds(), NOW,
                       ReplicaTarget(REPLICA, replica, LAG))
    assert codes(report) == ["S3_ACCESS_ERROR"] and exit_code(report) == 2
    assert report.replica is not None and not report.replica.verified and replica.calls == []


def test_no_consistent_backup_in_the_primary_is_never_a_healthy_replica():
    synth = SyntheticArchive(root="postgres/pg/")
    synth.add_wal_range(1, FIRST, FIRST + 5, NOW - timedelta(minutes=30), STEP)
    report = audit(synth, mirror(synth))
    assert not report.replica.verified and report.replica.status == "could_not_verify"
    assert exit_code(report) != 0 and "BACKUP_STALE" in codes(report)


def test_the_audit_only_lists_and_gets_the_replica():
    synth = archive()
    replica = mirror(synth)
    audit(synth, replica)
    assert set(replica.calls) == {"list", "get"} and replica.calls.count("list") == 1
    assert replica.calls.count("get") == 2  # the two backup.info objects, nothing else


def test_replica_report_has_what_metrics_and_the_table_use():
    synth = archive()
    tail = (synth.wal_key(1, FIRST + 34),)
    report = audit(synth, mirror(synth, skip=tail)).replica
    assert isinstance(report, ReplicaReport)
    for name in ("location", "verified", "lag_seconds", "missing_objects", "mismatched_objects", "checked_objects"):
        assert hasattr(report, name)
    lines = report.summary_lines()
    assert lines[0] == f"Replica {REPLICA.url}: OK"
    assert "13 objects checked, 0 missing" in lines[1] and "lag 5m" in lines[2]
    assert json.loads(json.dumps(report.to_dict()))["unreplicated_segments"] == 1


# -- settings: strict config, env var NAMES ------------------------------------------------------

def test_replica_settings_load_strictly_from_the_audit_table():
    t = load_thresholds({"replica": {"location": "s3://other/postgres/pg", "max_lag_minutes": 30,
                                     "access_key_id_env": "ORG2_KEY", "secret_access_key_env": "ORG2_SECRET",
                                     "session_token_env": "ORG2_TOKEN", "endpoint_url": "https://s3.nl-ams.scw.cloud"}},
                        "x.toml")
    assert t.replica.max_lag_seconds == 1800 and t.replica.access_key_id_env == "ORG2_KEY"
    assert "replica" not in t.to_dict()  # thresholds stay flat numbers
    assert AuditThresholds().replica == ReplicaSettings()
    with pytest.raises(ConfigError, match=r"x.toml: unknown key audit.replica.access_key \(allowed: "):
        load_thresholds({"replica": {"access_key": "x"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: audit.replica.max_lag_minutes must be > 0"):
        load_thresholds({"replica": {"max_lag_minutes": 0}}, "x.toml")
    with pytest.raises(ConfigError, match=r"audit.replica.location: not an S3 URL"):
        load_thresholds({"replica": {"location": "other/pg"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"names no serverName"):
        load_thresholds({"replica": {"location": "s3://other"}}, "x.toml")


def test_a_credential_value_where_a_name_belongs_is_rejected_without_echoing_it():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(ConfigError) as err:
        load_thresholds({"replica": {"secret_access_key_env": secret}}, "x.toml")
    assert "audit.replica.secret_access_key_env must name an environment variable" in str(err.value)
    assert secret not in str(err.value)


def test_credentials_come_only_from_the_named_variables():
    settings = ReplicaSettings(location="s3://other/postgres/pg", access_key_id_env="K", secret_access_key_env="S")
    creds = settings.credentials({"K": "key", "S": "secret", "AWS_DEFAULT_REGION": "fr-par"})
    assert (creds.access_key_id, creds.secret_access_key, creds.region, creds.env_names) == ("key", "secret",
                                                                                           "fr-par", "K/S")
    # never the primary's AWS_*
    with pytest.raises(UsageError) as err:
        settings.credentials({"AWS_ACCESS_KEY_ID": "pk", "AWS_SECRET_ACCESS_KEY": "ps", "K": "key"})
    assert str(err.value).startswith("replica credentials missing: set S in the environment")
    assert "--replica-secret-key-env / audit.replica.secret_access_key_env" in str(err.value)
    token = ReplicaSettings(session_token_env="T").credentials(
        {REPLICA_ENV[0]: "k", REPLICA_ENV[1]: "s", "T": "tok"})
    assert token.session_token == "tok" and "tok" in token.secrets() and "tok" not in repr(token)


def test_cli_options_override_the_config(tmp_path, monkeypatch):
    from pgdrill.audit.cli import build_parser
    from pgdrill.audit.replica_options import replica_settings

    configured = ReplicaSettings(location="s3://a/p/pg", max_lag_minutes=30)
    args = build_parser().parse_args(["s3://b/p/pg"])
    assert replica_settings(args, ReplicaSettings()) is None  # no location anywhere: no replica check
    assert replica_settings(args, configured) == configured
    args = build_parser().parse_args(["s3://b/p/pg", "--replica", "s3://c/q/pg", "--replica-access-key-env", "MINE"])
    got = replica_settings(args, configured)
    assert (got.location, got.access_key_id_env, got.max_lag_minutes) == ("s3://c/q/pg", "MINE", 30)
    for bad, message in ((["--replica-access-key-env", "AKIA/XYZ"], "--replica-access-key-env must name"),
                         (["--replica", "s3://c"], "--replica = 's3://c' names no serverName"),
                         (["--replica-endpoint-url", "ftp://x"], "--replica-endpoint-url")):
        with pytest.raises(UsageError, match=message):
            replica_settings(build_parser().parse_args(["s3://b/p/pg", *bad]), configured)


def test_replica_target_own_credentials_primary_endpoint_and_a_shared_key_noted():
    from pgdrill.audit.replica_options import replica_target

    settings = ReplicaSettings(location="s3://other/dr/pg")
    env = {REPLICA_ENV[0]: "org2-key", REPLICA_ENV[1]: "org2-secret",
           "AWS_ACCESS_KEY_ID": "org1-key", "AWS_SECRET_ACCESS_KEY": "org1-secret"}
    target = replica_target(settings, "http://127.0.0.1:9", env)
    assert target.location == S3Location("other", "dr/pg") and target.notes == ()
    assert target.store.endpoint_url == "http://127.0.0.1:9"  # the primary's, unless set
    assert target.store.credentials.access_key_id == "org2-key" and target.max_lag_seconds == 600
    own = replica_target(replace(settings, endpoint_url="https://s3.nl-ams.scw.cloud"), "http://127.0.0.1:9", env)
    assert own.store.endpoint_url == "https://s3.nl-ams.scw.cloud"
    shared = replica_target(settings, None, {**env, REPLICA_ENV[0]: "org1-key"})
    assert "not separated by their credentials" in shared.notes[0] and "org1-key" not in shared.notes[0]


def test_replica_may_sit_under_another_prefix_and_serverName():
    synth = archive()
    elsewhere = mirror(synth, root="org2/pg-copy/")
    meta, _ = _primary(synth)
    expected = expected_objects(meta, synth.listing(), "new")
    replica, found = compare_replica(expected, elsewhere.objects.values(), "org2/pg-copy", NOW, LAG,
                                     location="s3://o/org2/pg-copy", backup_id="new")
    assert found == [] and replica.objects_listed == len(synth.objects)
    assert audit(archive(), mirror(archive())).to_dict()["replica"]["status"] == "ok"
    assert run_audit(PRIMARY, primary_store(synth), AuditThresholds(), NOW).to_dict()["replica"] is None


def test_cli_missing_replica_variable_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    for name in REPLICA_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "primary-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "primary-secret")
    assert audit_main(["s3://backups/postgres/pg", "--replica", "s3://other/postgres/pg"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert "PGDRILL_REPLICA_AWS_ACCESS_KEY_ID and PGDRILL_REPLICA_AWS_SECRET_ACCESS_KEY" in out.err
    config = tmp_path / "pgdrill.toml"
    config.write_text('[audit.replica]\nlocation = "s3://other/postgres/pg"\nsecret_key_env = "X"\n')
    assert audit_main(["s3://backups/postgres/pg", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: unknown key audit.replica.secret_key_env (allowed: " in err and err.count("\n") == 1


# == integration: two buckets, two organisations' identities, one real S3 server ======================

pytest_integration = pytest.mark.integration
BUCKET, OTHER = "backups", "replica-org"


@pytest.fixture(scope="module")
def seaweed():
    from pgdrill.backends.local.seaweed import SeaweedServer

    directory = Path(tempfile.mkdtemp(prefix="pgdrill-audit-replica-"))
    server = SeaweedServer(directory, bucket=BUCKET, extra_buckets=(OTHER,), bucket_identities=True)
    try:
        server.start()
    except Exception as exc:  # the S3 server is the point of these tests: say why they cannot run
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"SeaweedFS not available: {exc}")
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


class Org:
    """One organisation's bucket on the server: its scoped admin and read-only stores."""

    def __init__(self, seaweed, bucket: str):
        self.ids = seaweed.identities_for(bucket)
        self.admin = seaweed.store(self.ids.admin, bucket)
        self.reader = seaweed.store(self.ids.reader, bucket)


@pytest.fixture
def orgs(seaweed, request):
    server_name = f"{request.node.name[:30]}-{uuid.uuid4().hex[:6]}"
    return server_name, Org(seaweed, BUCKET), Org(seaweed, OTHER)


def live_archive(server_name: str) -> SyntheticArchive:
    return archive(datetime.now(timezone.utc), root=f"postgres/{server_name}/")


def replicate(primary: Org, replica: Org, synth: SyntheticArchive, server_name: str,
              skip: tuple[str, ...] = ()) -> None:
    """Replication as it would be done across organisations: GET with the primary's read key,
    PUT with the replica's write key (no identity holds both, so no server-side copy)."""
    for key in primary.reader.list(synth.root):
        if key.key not in skip:
            replica.admin.put(f"dr/postgres/{server_name}/" + key.key[len(synth.root):], primary.reader.get(key.key))


def audit_live(seaweed, primary: Org, replica: Org, server_name: str, now: datetime | None = None,
               replica_store: ObjectStore | None = None):
    # The primary's own WAL age limit is relaxed where the clock is moved on to age the replica.
    thresholds = AuditThresholds(wal_max_age_minutes=60)
    return run_audit(S3Location(BUCKET, f"postgres/{server_name}"), primary.reader, thresholds,
                     now or datetime.now(timezone.utc),
                     ReplicaTarget(S3Location(OTHER, f"dr/postgres/{server_name}"), replica_store or replica.reader))


@pytest_integration
def test_each_identity_reaches_its_own_bucket_only(orgs):
    server_name, primary, replica = orgs
    primary.admin.put(f"probe/{server_name}", b"p")
    replica.admin.put(f"probe/{server_name}", b"r")
    assert primary.reader.get(f"probe/{server_name}") == b"p" and replica.reader.get(f"probe/{server_name}") == b"r"
    for org, other in ((primary, replica), (replica, primary)):
        bucket = other.admin.bucket
        for identity in (org.ids.admin, org.ids.reader):
            crossed = ObjectStore(org.admin.endpoint_url, identity.credentials, bucket)
            with pytest.raises(S3Error, match="access denied"):
                list(crossed.list("probe/"))
            with pytest.raises(S3Error, match="access denied"):
                crossed.get(f"probe/{server_name}")
            with pytest.raises(S3Error, match="access denied"):
                crossed.put(f"probe/{server_name}-x", b"x")
        with pytest.raises(S3Error, match="access denied"):
            org.reader.put(f"probe/{server_name}-w", b"w")  # read-only means read-only


@pytest_integration
def test_complete_replica_is_healthy_with_the_two_read_only_identities(seaweed, orgs):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    replicate(primary, replica, synth, server_name)
    report = audit_live(seaweed, primary, replica, server_name)
    assert codes(report) == [] and exit_code(report) == 0, report.findings
    assert report.replica.verified and report.replica.checked_objects == 13
    assert report.replica.lag_seconds == 0.0 and report.replica.objects_listed == len(synth.objects)


@pytest_integration
def test_replica_missing_one_wal_segment(seaweed, orgs):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    hole = synth.wal_key(1, FIRST + 28)
    replicate(primary, replica, synth, server_name, skip=(hole,))
    # Right after the copy the hole may be a copy in flight; 11 minutes on it is a hole.
    assert exit_code(audit_live(seaweed, primary, replica, server_name)) == 0
    report = audit_live(seaweed, primary, replica, server_name, datetime.now(timezone.utc) + timedelta(minutes=11))
    assert codes(report) == ["REPLICA_OBJECT_MISSING"] and exit_code(report) == 1
    missing = finding(report, "REPLICA_OBJECT_MISSING")
    assert missing.evidence["keys"] == [f"dr/postgres/{server_name}/" + hole[len(synth.root):]]


@pytest_integration
def test_lagging_replica_is_healthy_within_the_limit_then_lags(seaweed, orgs):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    tail = tuple(synth.wal_key(1, n) for n in range(FIRST + 32, FIRST + 35))
    replicate(primary, replica, synth, server_name, skip=tail)
    behind = audit_live(seaweed, primary, replica, server_name)
    assert codes(behind) == [] and exit_code(behind) == 0
    assert behind.replica.unreplicated_segments == 3 and behind.replica.lag_seconds < 600
    later = audit_live(seaweed, primary, replica, server_name, datetime.now(timezone.utc) + timedelta(minutes=11))
    assert codes(later) == ["REPLICA_LAG"] and exit_code(later) == 1
    assert later.replica.lag_seconds > 600 and later.replica.missing_objects == 0


@pytest_integration
def test_size_and_content_differences(seaweed, orgs):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    replicate(primary, replica, synth, server_name)
    rel = synth.wal_key(1, FIRST + 30)[len(synth.root):]
    body = primary.reader.get(synth.root + rel)
    replica.admin.put(f"dr/postgres/{server_name}/{rel}", body[:-1])
    report = audit_live(seaweed, primary, replica, server_name)
    assert codes(report) == ["REPLICA_OBJECT_MISMATCH"] and exit_code(report) == 1
    assert "size" in finding(report, "REPLICA_OBJECT_MISMATCH").evidence["objects"][0]["reason"]
    replica.admin.put(f"dr/postgres/{server_name}/{rel}", b"\x01" * len(body))  # same size, other bytes
    report = audit_live(seaweed, primary, replica, server_name)
    assert codes(report) == ["REPLICA_OBJECT_MISMATCH"] and "MD5" in finding(report, "REPLICA_OBJECT_MISMATCH").message


@pytest_integration
def test_wrong_or_crossed_replica_credentials_could_not_verify(seaweed, orgs):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    replicate(primary, replica, synth, server_name)
    location = S3Location(OTHER, "dr")
    wrong = ObjectStore(primary.admin.endpoint_url, S3Credentials("PGDWRONG", "wrong-secret", env_names="K/S"), OTHER)
    report = audit_live(seaweed, primary, replica, server_name, replica_store=wrong)
    assert codes(report) == ["REPLICA_ACCESS_ERROR"] and exit_code(report) == 2
    assert "check K/S" in report.replica.error and "wrong-secret" not in json.dumps(report.to_dict())
    # The primary's own read key on the replica bucket: denied, so the keys are really separate.
    crossed = ObjectStore(primary.admin.endpoint_url, primary.ids.reader.credentials, location.bucket)
    report = audit_live(seaweed, primary, replica, server_name, replica_store=crossed)
    assert codes(report) == ["REPLICA_ACCESS_ERROR"] and "access denied" in report.replica.error


@pytest_integration
def test_through_the_cli_with_variable_names(seaweed, orgs, monkeypatch, tmp_path, capsys):
    server_name, primary, replica = orgs
    synth = live_archive(server_name)
    synth.upload(primary.admin)
    replicate(primary, replica, synth, server_name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    for key, value in primary.ids.reader.credentials.as_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORG2_READ_KEY", replica.ids.reader.credentials.access_key_id)
    monkeypatch.setenv("ORG2_READ_SECRET", replica.ids.reader.credentials.secret_access_key)
    argv = [f"s3://{BUCKET}/postgres/{server_name}", "--endpoint-url", seaweed.endpoint_url,
            "--replica", f"s3://{OTHER}/dr/postgres/{server_name}", "--replica-endpoint-url", seaweed.endpoint_url,
            "--replica-access-key-env", "ORG2_READ_KEY", "--replica-secret-key-env", "ORG2_READ_SECRET"]
    assert audit_main(argv + ["--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["status"] == "healthy" and doc["replica"]["verified"] and doc["replica"]["status"] == "ok"
    assert doc["replica"]["checked_objects"] == 13 and doc["findings"] == []
    # The same from the config file, with the variable names there; a wrong secret is exit 2.
    config = tmp_path / "pgdrill.toml"
    config.write_text(f'[audit.replica]\nlocation = "s3://{OTHER}/dr/postgres/{server_name}"\n'
                      'access_key_id_env = "ORG2_READ_KEY"\nsecret_access_key_env = "ORG2_READ_SECRET"\n')
    monkeypatch.setenv("ORG2_READ_SECRET", "not-the-secret")
    assert audit_main(argv[:3] + ["--json"]) == 2
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert [f["code"] for f in doc["findings"]] == ["REPLICA_ACCESS_ERROR"]
    assert "ORG2_READ_KEY/ORG2_READ_SECRET" in doc["findings"][0]["message"]
    secrets = replica.ids.reader.credentials.secrets() + primary.ids.reader.credentials.secrets()
    assert not any(s in out for s in secrets + ("not-the-secret",))
