"""How the audit spells times, ages and sizes (in findings, the table and the metrics)."""

from __future__ import annotations

from datetime import datetime, timezone

from pgdrill.archive.catalog import parse_barman_time


def parse_time(text: str | None) -> datetime | None:
    """barman's time format (``pgdrill.archive.catalog.parse_barman_time``)."""
    return parse_barman_time(text)


def time_from_backup_id(backup_id: str) -> datetime | None:
    try:
        return datetime.strptime(backup_id, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def age(now: datetime, when: datetime | None) -> float | None:
    return None if when is None else (now - when).total_seconds()


def none_value(value: str | None) -> str | None:
    """barman writes a missing value as ``None``."""
    return None if value in (None, "", "None") else value


def human_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
