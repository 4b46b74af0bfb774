"""The reaper for the local backend: what a killed run (``kill -9``, a lost CI runner) left.

Only directories named ``pgdrill-<10 hex>`` under the work dir are considered, and only
processes whose working directory is inside one of them are stopped: pgdrill never
touches anything it did not create.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

_RUN_DIR = re.compile(r"^pgdrill-[0-9a-f]{10}$")


def _processes_under(directory: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            pids.append(int(proc.name))
    return pids


def clean_leftovers(workdir: Path | None = None, dry_run: bool = False) -> Iterator[str]:
    parent = workdir or Path(tempfile.gettempdir())
    found = False
    for run_dir in sorted(p for p in parent.iterdir() if p.is_dir() and _RUN_DIR.match(p.name)):
        found = True
        pids = [p for p in _processes_under(run_dir) if p != os.getpid()]
        yield f"{'would remove' if dry_run else 'removing'} {run_dir} (processes: {pids or 'none'})"
        if dry_run:
            continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(run_dir, ignore_errors=True)
    if not found:
        yield f"nothing to clean under {parent}"
