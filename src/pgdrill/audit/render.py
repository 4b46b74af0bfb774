"""Renderings of an ``AuditReport``: terminal table, Prometheus textfile, exit code."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from pgdrill.audit import codes
from pgdrill.audit.codes import AUDIT_CODES
from pgdrill.audit.formatting import format_time, human_bytes, human_duration
from pgdrill.audit.report import AuditReport
from pgdrill.findings import Severity

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
    lines += [""] + _findings(report)
    return "\n".join(lines) + "\n"


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

_HELP = {
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
}


def render_prometheus(report: AuditReport) -> str:
    """node-exporter textfile format; value metrics are left out when they were not measured,
    so a failed audit never shows stale or invented values (alert on pgdrill_audit_success)."""
    base = {"server_name": report.server_name}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}

    def add(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            samples.setdefault(name, []).append(({**base, **labels}, value))

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
    out: list[str] = []
    for name, values in samples.items():
        out += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge"]
        for labels, value in values:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{rendered}}} {_number(value)}")
    return "\n".join(out) + "\n"


def write_prometheus(report: AuditReport, path: str | os.PathLike[str]) -> Path:
    """Write atomically: node-exporter must never read a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temp name must not end in .prom, or the textfile collector could pick it up.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(render_prometheus(report))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
