"""Renderings of an ``AuditReport``: terminal table, Prometheus metrics (textfile or
Pushgateway, through prometheus_client), exit code."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import (
    CollectorRegistry,
    generate_latest,
    push_to_gateway,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily

from pgdrill.archive.growth import WalRate
from pgdrill.audit import codes
from pgdrill.audit.codes import AUDIT_CODES
from pgdrill.audit.formatting import format_time, human_bytes, human_duration
from pgdrill.audit.report import AuditReport
from pgdrill.errors import UsageError
from pgdrill.findings import Severity
from pgdrill.pushgateway import credentials_handler, without_userinfo

EXIT_HEALTHY, EXIT_ALERT, EXIT_COULD_NOT_VERIFY = 0, 1, 2
_GRADES = ("pitr_capable", "consistent", "waiting_for_wal", "not_consistent", "in_progress", "failed",
           "unreadable")
_GRADE_LABEL = {
    "pitr_capable": "PITR-capable", "consistent": "consistent (hole after)",
    "waiting_for_wal": "waiting for WAL", "not_consistent": "NOT CONSISTENT",
    "in_progress": "in progress", "failed": "failed", "unreadable": "UNREADABLE",
}


def exit_code(report: AuditReport) -> int:
    """0 healthy, 1 an alert fires (verified problem), 2 something could not be verified."""
    return {"healthy": EXIT_HEALTHY, "alert": EXIT_ALERT, "could_not_verify": EXIT_COULD_NOT_VERIFY}[report.status]


# -- terminal ------------------------------------------------------------------------------

def disaster_now(report: AuditReport) -> str:
    """The headline: what a disaster at the audit's moment would recover to, and what it loses.

    WAL times are upload times, so the loss is measured between the newest restorable segment
    and the newest archived one (plus up to ``archive_timeout`` not yet archived at all)."""
    r, w = report.recoverability, report.wal
    if r is None or r.latest is None:
        return "A disaster now: nothing could be recovered from this archive."
    newest = w.newest_modified if w is not None else None
    lost = (newest - r.latest).total_seconds() if newest is not None and newest > r.latest else 0.0
    return (f"A disaster now recovers to {format_time(r.latest)} ({r.latest_segment}, LSN {r.latest_lsn})"
            + (f", losing {human_duration(lost)} of archived WAL after it" if lost > 0 else
               ", the end of the archive"))


def render_table(report: AuditReport) -> str:
    t = report.thresholds
    status = {"healthy": "HEALTHY", "alert": "ALERT", "could_not_verify": "COULD NOT VERIFY"}[report.status]
    lines = [
        f"pgdrill audit {report.location}"
        + (f" (endpoint {report.endpoint_url})" if report.endpoint_url else ""),
        f"audited at {format_time(report.audited_at)}: {status} (exit {exit_code(report)}), "
        f"{report.objects_listed} objects listed in {report.duration_seconds:.2f}s",
        disaster_now(report),
        "",
    ]
    lines += [f"note: {note}" for note in report.notes]
    if report.wal is None:  # nothing could be listed
        lines += _findings(report)
        return "\n".join(lines) + "\n"

    done = sum(1 for b in report.backups if b.status == "DONE")
    age = (f"{report.newest_completed}, ended {human_duration(report.backup_age_seconds)} ago"
           if report.newest_completed and report.backup_age_seconds is not None else "none")
    lines.append(
        f"Base backups: {len(report.backups)} ({done} completed); newest completed: {age} "
        f"(limit {t.backup_max_age_hours:g}h); consecutive failures: {report.consecutive_failures} "
        f"(limit {t.backup_consecutive_failures})")
    if report.backups:
        header = ("BACKUP ID", "STATUS", "TL", "BEGIN WAL", "END WAL", "ENDED (UTC)", "STORED", "VS MEDIAN",
                  "GRADE", "REACHES")
        rows = [header]
        for b in report.backups:
            rows.append((
                b.backup_id, b.status, "" if b.timeline is None else str(b.timeline), b.begin_wal or "-",
                b.end_wal or "-", format_time(b.end_time)[:-1] if b.end_time else "-",
                human_bytes(b.stored_bytes), "-" if b.size_ratio is None else f"{b.size_ratio:.2f}",
                _GRADE_LABEL[b.grade], b.reaches or "-",
            ))
        lines += ["  " + line for line in _columns(rows)]
    w = report.wal
    newest = (f"{w.newest_segment}, archived {human_duration(w.age_seconds)} ago"
              if w.newest_segment and w.age_seconds is not None else "none")
    lines += [
        "",
        f"WAL: {w.segments} segments on timeline(s) {', '.join(map(str, w.timelines)) or '-'}; "
        f"newest {newest} (limit {t.wal_max_age_minutes:g}m)",
        f"  history files: {', '.join(w.history_files) or 'none'}; partial files: "
        f"{', '.join(w.partial_files) or 'none'}",
        f"  gaps since {w.checked_from or '-'}: "
        + (", ".join(_gap(g) for g in w.gaps) if w.gaps else "none")
        + (f"; still uploading: {', '.join(_gap(g) for g in w.uploading)}" if w.uploading else ""),
    ]
    lines += _growth_lines(report)
    r = report.recoverability
    if r is not None:
        window = (f"{format_time(r.earliest)} .. {format_time(r.latest)} (up to {r.latest_segment}, "
                  f"LSN {r.latest_lsn})" if r.earliest and r.latest else "nothing is recoverable")
        coverage = "covered" if r.retention_covered else "NOT covered: " + (
            ", ".join(f"{format_time(p.start)} .. {format_time(p.end)}" for p in r.uncovered))
        lines += [
            "",
            f"Recoverable: {window}",
            f"  retention {t.retention_days:g} days (since {format_time(r.retention_start)}): {coverage}",
        ]
        if len(r.periods) > 1:
            lines.append("  recoverable periods: " + ", ".join(
                f"{format_time(p.start)} .. {format_time(p.end)}" for p in r.periods))
        if r.note:
            lines.append(f"  note: {r.note}")
    if report.replica is not None:
        lines += [""] + report.replica.summary_lines()
    lines += [""] + _findings(report)
    return "\n".join(lines) + "\n"


def _growth_lines(report: AuditReport) -> list[str]:
    """Two lines of docs/audit.md's "Growth and rate" figures."""
    g = report.growth
    if g is None:
        return []

    def per_hour(rate: WalRate) -> str:
        if rate.segments_per_hour is None or rate.bytes_per_hour is None:
            return f"n/a ({rate.window})"
        return (f"{rate.segments_per_hour:.2f} segments/h, {human_bytes(round(rate.bytes_per_hour))}/h "
                f"({rate.window})")

    between, interval = "n/a (fewer than two completed backups)", ""
    if g.intervals:
        between = (f"median {human_bytes(round(g.wal_bytes_between_backups_median or 0))}, "
                   f"max {human_bytes(g.wal_bytes_between_backups_max or 0)}")
        interval = f" (median {human_duration(g.median_interval_seconds or 0)})"
    projected = (f"{human_bytes(g.projected_bytes)} ({g.backups_kept} backups of "
                 f"{human_bytes(g.backups[-1].stored_bytes)} + {human_bytes(g.projected_wal_bytes or 0)} of WAL)"
                 if g.projected_bytes is not None and g.backups else "n/a")
    return [
        "",
        f"Growth: WAL {'; '.join(per_hour(r) for r in g.rates)}; stored: base {human_bytes(g.stored_base_bytes)}, "
        f"WAL {human_bytes(g.stored_wal_bytes)}",
        f"  WAL per backup interval{interval}: {between}; projected at {g.retention_days:g}-day retention: "
        f"{projected}",
    ]


def _findings(report: AuditReport) -> list[str]:
    if not report.findings:
        return ["Findings: none"]
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    lines = ["Findings:"]
    for f in sorted(report.findings, key=lambda f: order[f.severity]):
        lines.append(f"  {f.severity.value.upper():8} {f.code}: {f.message}")
        if f.severity is not Severity.INFO:
            lines.append(f"           fix: {f.remedy}")
    return lines


def _gap(gap: object) -> str:
    g = gap  # archive.Gap
    return f"{g.first.name}..{g.last.name} ({g.count})"  # type: ignore[attr-defined]


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


# -- Prometheus ----------------------------------------------------------------------------
#
# prometheus_client does all the exposition (escaping, number format, +Inf, the atomic
# textfile, the Pushgateway protocol); this part only decides which samples exist.

#: The Pushgateway job of ``--pushgateway`` (the grouping key adds ``server_name``).
DEFAULT_PUSHGATEWAY_JOB = "pgdrill-audit"  # the CronJob's group (deploy/kubernetes), like pgdrill-drills

_DESCRIPTIONS = {
    "pgdrill_audit_success": "1 if the last audit could verify everything it checks, 0 if not (S3 or metadata error).",
    "pgdrill_audit_timestamp_seconds": "When the last audit ran (Unix time).",
    "pgdrill_audit_duration_seconds": "How long the last audit took.",
    "pgdrill_audit_findings": "Findings of the last audit, by code.",
    "pgdrill_base_backups": "Base backups in the bucket, by grade.",
    "pgdrill_base_backup_age_seconds": "Age of the newest completed base backup (+Inf: none).",
    "pgdrill_base_backup_size_bytes": "Stored size of the newest completed base backup.",
    "pgdrill_backup_consecutive_failures": "Most recent base backups that failed in a row.",
    "pgdrill_wal_archive_age_seconds": "Age (LastModified) of the newest archived WAL segment (+Inf: none).",
    "pgdrill_wal_segments": "Archived complete WAL segments.",
    "pgdrill_wal_gap_segments": "WAL segments missing with later WAL archived (lost), from the oldest completed backup on.",
    "pgdrill_wal_uploading_segments": "WAL segments missing among the newest ones, probably still uploading.",
    "pgdrill_recovery_window_start_timestamp_seconds": "Earliest point a recovery can reach (end of the oldest consistent backup).",
    "pgdrill_recovery_window_end_timestamp_seconds": "Latest point a recovery can reach without a hole (upload time of its last segment).",
    "pgdrill_retention_covered": "1 if every point of the retention window is recoverable.",
    "pgdrill_wal_segments_per_hour": "Complete WAL segments uploaded per hour over the window (docs/audit.md, Growth and rate).",
    "pgdrill_wal_bytes_per_hour": "Bytes of complete WAL segments uploaded per hour over the window.",
    "pgdrill_wal_bytes_between_backups": "WAL bytes uploaded between consecutive completed base backups (median or max).",
    "pgdrill_archive_stored_bytes": "Bytes stored in the archive now: base backups or WAL.",
    "pgdrill_archive_projected_bytes": "Bytes the archive holds at the retention window in steady state.",
    "pgdrill_replica_success": "1 if the replica bucket could be checked against the archive, 0 if not.",
    "pgdrill_replica_lag_seconds": "How far the replica bucket is behind the archive.",
    "pgdrill_replica_checked_objects": "Archive objects compared with the replica bucket.",
    "pgdrill_replica_missing_objects": "Archive objects absent from the replica bucket.",
    "pgdrill_replica_mismatched_objects": "Archive objects whose replica differs (size or checksum).",
}


class AuditCollector:
    """The samples of one report, as a prometheus_client collector.

    A custom collector rather than ``Gauge`` objects: a family exists only when a value was
    measured, so a failed audit never shows stale or invented values (alert on
    ``pgdrill_audit_success``), and one label set can be present while another is absent.
    """

    def __init__(self, report: AuditReport):
        self.report = report

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # one collector per registry: no name clashes to check

    def collect(self) -> list[GaugeMetricFamily]:
        return _families(self.report)


def audit_registry(report: AuditReport) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AuditCollector(report))
    return registry


def render_prometheus(report: AuditReport) -> str:
    """Prometheus text format (what node-exporter's textfile collector and a Pushgateway read)."""
    return generate_latest(audit_registry(report)).decode()


def write_prometheus(report: AuditReport, path: str | os.PathLike[str]) -> Path:
    """Write atomically: node-exporter must never read a half-written file.

    ``write_to_textfile`` writes ``<path>.<pid>.<thread>`` and renames it over ``path``; that
    temp name does not end in ``.prom``, so the textfile collector never picks it up.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), audit_registry(report))
    return target


def push_prometheus(report: AuditReport, gateway: str, job: str = DEFAULT_PUSHGATEWAY_JOB,
                    timeout: float = 30.0) -> None:
    """Push to a Pushgateway, grouped by ``job`` and ``server_name``.

    PUT (``push_to_gateway``), not POST: it replaces the whole group, so a metric this audit
    left out (not measured) disappears from the gateway instead of keeping an older value.

    ``user:password@`` in the URL is sent as HTTP basic auth.

    :raises OSError: the gateway is unreachable or answered an error (``urllib`` errors)
    """
    handler = credentials_handler(gateway)
    push_to_gateway(without_userinfo(gateway), job, audit_registry(report),
                    grouping_key={"server_name": report.server_name}, timeout=timeout, handler=handler)


def check_pushgateway_url(text: str) -> str:
    """``http(s)://host[:port][/path]``; a bare ``host:port`` means http, as for prometheus_client."""
    url = text if "://" in text else "http://" + text
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise UsageError(f"--pushgateway {text!r}: the port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"--pushgateway {text!r}: expected http(s)://HOST[:PORT][/PATH]")
    return url


def _families(report: AuditReport) -> list[GaugeMetricFamily]:
    families: dict[str, GaugeMetricFamily] = {}

    def add(name: str, value: float | None, **labels: str) -> None:
        if value is None:  # not measured: no sample at all
            return
        family = families.get(name)
        if family is None:
            family = families[name] = GaugeMetricFamily(name, _DESCRIPTIONS[name], labels=["server_name", *labels])
        family.add_metric([report.server_name, *labels.values()], value)

    add("pgdrill_audit_success", 1.0 if report.verified else 0.0)
    add("pgdrill_audit_timestamp_seconds", report.audited_at.timestamp())
    add("pgdrill_audit_duration_seconds", round(report.duration_seconds, 3))
    counts = {code: 0 for code in AUDIT_CODES}
    for finding in report.findings:
        counts[finding.code] = counts.get(finding.code, 0) + 1
    for code, count in sorted(counts.items()):
        add("pgdrill_audit_findings", count, code=code)
    if report.wal is not None:
        for grade in _GRADES:
            add("pgdrill_base_backups", sum(1 for b in report.backups if b.grade == grade), grade=grade)
        # +Inf only for a verified "there is none"; an unknown age (unreadable newer
        # backup.info) is left out instead of firing the stale-backup alert.
        found = report.codes()
        add("pgdrill_base_backup_age_seconds",
            round(report.backup_age_seconds, 3) if report.backup_age_seconds is not None
            else math.inf if codes.BACKUP_STALE in found else None)
        newest = next((b for b in report.backups if b.backup_id == report.newest_completed), None)
        add("pgdrill_base_backup_size_bytes", newest.stored_bytes if newest else None)
        add("pgdrill_backup_consecutive_failures", report.consecutive_failures)
        w = report.wal
        add("pgdrill_wal_archive_age_seconds",
            round(w.age_seconds, 3) if w.age_seconds is not None
            else math.inf if codes.WAL_STALE in found else None)
        add("pgdrill_wal_segments", w.segments)
        add("pgdrill_wal_gap_segments", w.missing_segments)
        add("pgdrill_wal_uploading_segments", w.uploading_segments)
    r = report.recoverability
    if r is not None:
        add("pgdrill_recovery_window_start_timestamp_seconds", r.earliest.timestamp() if r.earliest else None)
        add("pgdrill_recovery_window_end_timestamp_seconds", r.latest.timestamp() if r.latest else None)
        add("pgdrill_retention_covered", 1.0 if r.retention_covered else 0.0)
    g = report.growth
    if g is not None:
        for rate in g.rates:
            add("pgdrill_wal_segments_per_hour", _rounded(rate.segments_per_hour), window=rate.window)
        for rate in g.rates:
            add("pgdrill_wal_bytes_per_hour", _rounded(rate.bytes_per_hour), window=rate.window)
        add("pgdrill_wal_bytes_between_backups", _rounded(g.wal_bytes_between_backups_median), stat="median")
        add("pgdrill_wal_bytes_between_backups", g.wal_bytes_between_backups_max, stat="max")
        add("pgdrill_archive_stored_bytes", g.stored_base_bytes, kind="base")
        add("pgdrill_archive_stored_bytes", g.stored_wal_bytes, kind="wal")
        add("pgdrill_archive_projected_bytes", g.projected_bytes)
    _replica(report, add)
    return list(families.values())


def _replica(report: AuditReport, add: Callable[..., None]) -> None:
    """The replica bucket's check, when the audit made one (``AuditReport.replica``)."""
    replica = getattr(report, "replica", None)
    if replica is None:
        return
    where = str(replica.location)
    add("pgdrill_replica_success", 1.0 if replica.verified else 0.0, replica=where)
    add("pgdrill_replica_lag_seconds", _rounded(replica.lag_seconds), replica=where)
    # Counts of what was compared: with nothing compared and no verdict they are not measured
    # (a 0 would claim "nothing missing"), like the audit's own value metrics.
    if replica.verified or replica.checked_objects:
        add("pgdrill_replica_checked_objects", replica.checked_objects, replica=where)
        add("pgdrill_replica_missing_objects", replica.missing_objects, replica=where)
        add("pgdrill_replica_mismatched_objects", replica.mismatched_objects, replica=where)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
