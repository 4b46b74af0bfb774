"""The audit's metrics through prometheus_client: growth and replica families, absence of what
was not measured, the atomic textfile, and a push to a real HTTP server standing in for a
Pushgateway (PUT to ``/metrics/job/<job>/server_name/<name>``, body in the text format)."""

from __future__ import annotations

import base64
import math
import threading
from dataclasses import dataclass, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_archive_growth import NOW, catalog, intervals_archive

from pgdrill.audit import (
    AuditThresholds,
    audit_main,
    render_prometheus,
    write_prometheus,
)
from pgdrill.audit.analyze import analyze
from pgdrill.audit.render import check_pushgateway_url, push_prometheus
from pgdrill.audit.synthetic import SyntheticArchive
from pgdrill.errors import UsageError


def report_of(synth: SyntheticArchive | None = None):
    return analyze(catalog(synth or intervals_archive()), AuditThresholds(), NOW,
                   location="s3://backups/postgres/postgres-cluster")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels), through prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted({"server_name": "postgres-cluster", **labels}.items())))]


def names(found: dict) -> set[str]:
    return {name for name, _ in found}


@dataclass(frozen=True)
class Replica:  # the attributes AuditReport.replica has; a stand-in so this test needs no replica check
    location: str
    verified: bool
    lag_seconds: float | None
    missing_objects: int
    mismatched_objects: int
    checked_objects: int


def with_replica(report, replica: Replica):
    # AuditReport is frozen (and may not have the field yet): set the attribute on a copy.
    copy = replace(report)
    object.__setattr__(copy, "replica", replica)
    return copy


def test_growth_metrics_hold_the_report_figures():
    found = samples(render_prometheus(report_of()))
    assert value(found, "pgdrill_wal_segments_per_hour", window="24h") == pytest.approx(2 / 24, abs=1e-3)
    assert value(found, "pgdrill_wal_segments_per_hour", window="7d") == pytest.approx(6 / 168, abs=1e-3)
    assert value(found, "pgdrill_wal_bytes_per_hour", window="7d") == pytest.approx(1400 / 168, abs=1e-3)
    assert value(found, "pgdrill_archive_stored_bytes", kind="base") == 100_999
    assert value(found, "pgdrill_archive_stored_bytes", kind="wal") == 11_407
    assert value(found, "pgdrill_archive_projected_bytes") == 31 * 40_000 + 6200
    assert value(found, "pgdrill_wal_bytes_between_backups", stat="median") == 300
    assert value(found, "pgdrill_wal_bytes_between_backups", stat="max") == 1000
    assert not any(name.startswith("pgdrill_replica_") for name in names(found))  # no replica checked


def test_unmeasured_growth_figures_are_absent_not_zero():
    synth = SyntheticArchive()  # one backup, no WAL: no rate, no interval, no projection
    synth.add_backup("20261125T100000", begin=1, end=1, begin_time=NOW - timedelta(hours=2))
    found = samples(render_prometheus(report_of(synth)))
    assert {"pgdrill_wal_segments_per_hour", "pgdrill_wal_bytes_per_hour", "pgdrill_wal_bytes_between_backups",
            "pgdrill_archive_projected_bytes"}.isdisjoint(names(found))
    assert value(found, "pgdrill_archive_stored_bytes", kind="wal") == 0  # measured: nothing stored


def test_no_base_backup_is_plus_inf_through_prometheus_client():
    synth = SyntheticArchive()
    synth.add_wal_range(1, 1, 5, NOW - timedelta(minutes=25))
    text = render_prometheus(report_of(synth))
    assert 'pgdrill_base_backup_age_seconds{server_name="postgres-cluster"} +Inf' in text
    assert math.isinf(value(samples(text), "pgdrill_base_backup_age_seconds"))


def test_replica_metrics_from_the_report():
    where = 's3://replica-bucket/postgres/postgres-cluster "eu-west"'  # quotes: escaped by the library
    report = with_replica(report_of(), Replica(where, True, 42.5, 2, 1, 100))
    found = samples(render_prometheus(report))
    assert value(found, "pgdrill_replica_success", replica=where) == 1
    assert value(found, "pgdrill_replica_lag_seconds", replica=where) == 42.5
    assert value(found, "pgdrill_replica_missing_objects", replica=where) == 2
    assert value(found, "pgdrill_replica_mismatched_objects", replica=where) == 1
    assert value(found, "pgdrill_replica_checked_objects", replica=where) == 100
    # a replica that could not be read: success 0, and no counts or lag that were not measured
    unread = samples(render_prometheus(with_replica(report_of(), Replica(where, False, None, 0, 0, 0))))
    assert value(unread, "pgdrill_replica_success", replica=where) == 0
    assert {n for n in names(unread) if n.startswith("pgdrill_replica_")} == {"pgdrill_replica_success"}


def test_textfile_is_what_render_gives_and_a_failed_write_leaves_no_temp_file(tmp_path):
    report = report_of()
    target = tmp_path / "textfile" / "pgdrill.prom"
    write_prometheus(report, target)
    assert target.read_text() == render_prometheus(report)
    blocked = tmp_path / "blocked.prom"
    blocked.mkdir()  # rename over a directory fails
    with pytest.raises(OSError):
        write_prometheus(report, blocked)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked.prom", "textfile"]


# -- Pushgateway ----------------------------------------------------------------------------

class Gateway:
    """A tiny HTTP server on 127.0.0.1 that records what a Pushgateway would receive."""

    def __init__(self, status: int = 200):
        self.requests: list[tuple[str, str, str, bytes]] = []
        self.authorization: list[str | None] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gateway.requests.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
                gateway.authorization.append(self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record

            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_push_puts_the_group_of_job_and_server_name():
    report = report_of()
    with Gateway() as gateway:
        push_prometheus(report, gateway.url, "pgdrill-audit")
    ((method, path, content_type, body),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/pgdrill-audit/server_name/postgres-cluster")
    assert gateway.authorization == [None]
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(body.decode())
    assert found == samples(render_prometheus(report))
    assert value(found, "pgdrill_audit_success") == 1
    assert value(found, "pgdrill_archive_projected_bytes") == 31 * 40_000 + 6200


def test_cli_pushes_even_an_unverified_audit(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGDRILL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with Gateway() as gateway:
        code = audit_main(["s3://backups/postgres/postgres-cluster", "--pushgateway", gateway.url,
                           "--pushgateway-job", "audit_prod"])
    assert code == 2  # no credentials: could not verify
    ((method, path, _, body),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/audit_prod/server_name/postgres-cluster")
    found = samples(body.decode())
    assert value(found, "pgdrill_audit_success") == 0 and value(found, "pgdrill_audit_findings",
                                                                code="S3_ACCESS_ERROR") == 1
    assert "pgdrill_wal_gap_segments" not in names(found)  # not measured: absent, also on the gateway


def test_cli_reports_a_push_failure_in_one_line_and_exits_2(monkeypatch, tmp_path, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGDRILL_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    prom = tmp_path / "audit.prom"
    with Gateway(status=500) as gateway:
        url = gateway.url.replace("http://", "http://user:s3cret@")
        assert audit_main(["s3://backups/postgres/postgres-cluster", "--pushgateway", url,
                           "--prometheus", str(prom)]) == 2
    err = capsys.readouterr().err.strip()
    # credentials in the URL go as basic auth, and are never printed
    assert gateway.authorization == ["Basic " + base64.b64encode(b"user:s3cret").decode()]
    assert err == f"pgdrill audit: cannot push to the Pushgateway {gateway.url}: HTTP Error 500: Internal Server Error"
    assert prom.exists()  # the textfile is still written
    with Gateway() as closed:
        pass  # its port is free again: nothing listens there
    assert audit_main(["s3://backups/postgres/postgres-cluster", "--pushgateway", closed.url]) == 2
    assert "Connection refused" in capsys.readouterr().err


def test_pushgateway_url_is_checked():
    assert check_pushgateway_url("pushgateway.monitoring:9091") == "http://pushgateway.monitoring:9091"
    assert check_pushgateway_url("https://gw.example/prefix") == "https://gw.example/prefix"
    for bad in ("ftp://gw", "http://", "http://gw:port", "http://gw/?x=1"):
        with pytest.raises(UsageError, match="--pushgateway"):
            check_pushgateway_url(bad)
    assert audit_main(["s3://backups/postgres/x", "--pushgateway", "ftp://gw"]) == 2
