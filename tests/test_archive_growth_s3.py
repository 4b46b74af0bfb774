"""Growth and rate against a real S3 server (SeaweedFS): sizes and LastModified as a real
listing gives them (second resolution, real upload times), through ``pgdrill audit`` with the
read-only identity, its JSON, and a push to a stand-in Pushgateway."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from test_audit_metrics import Gateway, samples

from pgdrill.archive.store import S3Location
from pgdrill.audit import AuditThresholds, audit_main, run_audit
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.backends.local.seaweed import SeaweedServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seaweed():
    directory = Path(tempfile.mkdtemp(prefix="pgdrill-growth-s3-"))
    server = SeaweedServer(directory)
    try:
        server.start()
    except Exception as exc:  # the S3 server is the point of these tests: say why they cannot run
        pytest.skip(f"SeaweedFS not available: {exc}")
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def upload_in_three_rounds(seaweed: SeaweedServer, server_name: str) -> tuple[SyntheticArchive, datetime, datetime]:
    """Backup A ends; segment 1 is uploaded; segments 2..6; backup B ends; segments 7..9.

    The pauses exceed LastModified's one-second resolution, so each round's uploads are
    strictly later than the one before, and than the backup end before them.
    """
    synth = SyntheticArchive(root=f"postgres/{server_name}/")
    store = seaweed.store()
    end_a = datetime.now(timezone.utc)
    synth.add_backup("20261125T000000", begin=1, end=1, begin_time=end_a, duration=timedelta(0),
                     data_bytes=10_000)
    for number in range(1, 10):
        synth.add_wal(1, number, end_a, size=1000 + number)  # LastModified will be the upload time
    synth.upload(store, keys=[k for k in synth.keys() if "/wals/" not in k])
    # LastModified is truncated to the second: an upload in the same second as a backup's end
    # would be listed as before it (and fall in the earlier interval).
    time.sleep(1.2)
    synth.upload(store, keys=[synth.wal_key(1, 1)])
    time.sleep(1.2)
    synth.upload(store, keys=[synth.wal_key(1, n) for n in range(2, 7)])
    end_b = datetime.now(timezone.utc)
    synth.add_backup("20261125T010000", begin=6, end=6, begin_time=end_b, duration=timedelta(0),
                     data_bytes=20_000)
    synth.upload(store, keys=[k for k in synth.keys() if "/base/20261125T010000/" in k])
    time.sleep(1.2)
    synth.upload(store, keys=[synth.wal_key(1, n) for n in range(7, 10)])
    return synth, end_a, end_b


def test_growth_from_a_real_listing(seaweed, monkeypatch, tmp_path, capsys):
    server_name = f"growth-{uuid.uuid4().hex[:8]}"
    synth, end_a, end_b = upload_in_three_rounds(seaweed, server_name)
    now = datetime.now(timezone.utc)
    reader = seaweed.store(seaweed.reader)
    listed = {o.key: o for o in reader.list(synth.root)}
    first = listed[synth.wal_key(1, 1)].last_modified
    assert all(listed[synth.wal_key(1, n)].last_modified > first for n in range(2, 10))

    report = run_audit(S3Location("backups", f"postgres/{server_name}"), reader, AuditThresholds(), now)
    g = report.growth
    assert g is not None and [b.stored_bytes for b in g.backups] == [10_000, 20_000]
    assert (g.stored_base_bytes, g.stored_wal_bytes) == (30_000, sum(1000 + n for n in range(1, 10)))
    for rate in g.rates:
        # the archive is seconds old: (oldest upload, now], which leaves segment 1 out
        assert rate.covered_seconds == pytest.approx((now - first).total_seconds())
        assert (rate.segments, rate.bytes) == (8, sum(1000 + n for n in range(2, 10)))
        assert rate.segments_per_hour == pytest.approx(8 * 3600 / (now - first).total_seconds())
    (interval,) = g.intervals  # (end A, end B]: segments 1..6; (end B, now]: 7..9
    assert (interval.wal_segments, interval.wal_bytes) == (6, sum(1000 + n for n in range(1, 7)))
    assert g.since_newest is not None and (g.since_newest.wal_segments, g.since_newest.wal_bytes) == \
        (3, sum(1000 + n for n in range(7, 10)))
    span = (end_b - end_a).total_seconds()
    assert g.backups_kept == math.ceil(30 * 86400 / span) + 1
    assert g.projected_base_bytes == g.backups_kept * 20_000

    # the CLI: JSON and a push of the same figures, with the read-only identity
    for key, val in seaweed.reader.credentials.as_environment().items():
        monkeypatch.setenv(key, val)
    monkeypatch.delenv("PGDRILL_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    with Gateway() as gateway:
        audit_main([f"s3://backups/postgres/{server_name}", "--endpoint-url", seaweed.endpoint_url, "--json",
                    "--pushgateway", gateway.url])
    doc = json.loads(capsys.readouterr().out)["growth"]
    assert doc["stored_bytes"] == {"base": 30_000, "wal": g.stored_wal_bytes}
    assert [i["wal_segments"] for i in doc["intervals"]] == [6] and doc["since_newest"]["wal_segments"] == 3
    ((method, path, _, body),) = gateway.requests
    assert (method, path) == ("PUT", f"/metrics/job/pgdrill-audit/server_name/{server_name}")
    pushed = samples(body.decode())
    key = {"server_name": server_name}
    assert pushed[("pgdrill_archive_stored_bytes", tuple(sorted({**key, "kind": "base"}.items())))] == 30_000
    assert pushed[("pgdrill_wal_bytes_between_backups", tuple(sorted({**key, "stat": "max"}.items())))] == \
        sum(1000 + n for n in range(1, 7))
