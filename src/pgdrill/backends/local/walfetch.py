"""``restore_command`` with the barman-cloud plugin's parallel WAL fetch (``wal.maxParallel``).

PostgreSQL runs it as ``python -P <run dir>/bin/walfetch.py --max-parallel N
--segment-size BYTES --spool DIR %f %p -- barman-cloud-wal-restore <options> <dest> <server>``
in its data directory, as the unprivileged postgres OS user.  What it does is what the plugin's
``Restore`` does (plugin-barman-cloud ``internal/cnpgi/common/wal.go``, barman-cloud
``pkg/restorer/restorer.go`` and ``pkg/spool/spool.go``):

1. a request found complete in the spool is moved into place: exit 0, nothing downloaded;
2. otherwise one ``barman-cloud-wal-restore`` for the requested file (straight into %p) and,
   for a segment, one for each of the next N-1 segment *names* into the spool, all at once; it
   waits for all of them, as ``RestoreList`` does;
3. the exit code is the requested file's (barman's 1 = "not found" makes PostgreSQL end archive
   recovery); a prefetched segment that fails is dropped silently (the next one missing is normal
   at the end of the archive).

Two deliberate differences: the next names are computed for the cluster's real segment size
(the plugin passes ``nil`` to ``NextSegments`` and so assumes 16 MiB, plugin #603/#604), and a
spool file is checked to be a whole segment before it is served.  A prefetch is written to
``<name>.tmp`` and renamed only after barman exits 0, so a half-downloaded file is never served
(cnpg #10092, fixed the same way in barman-cloud v0.5.0).  The spool is keyed by the full
name, timeline included, so a segment of another timeline is never served for the wrong name.

Stdlib only, and runnable as a plain file: PostgreSQL starts it once per WAL file (its start-up
time is part of every segment's restore time), and it runs as the unprivileged OS user from a
copy in the run directory (``install``), because that user cannot always read pgdrill's own
source tree (an editable install in root's home or a private CI checkout).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def _segment_number(name: str, segment_size: int) -> int:
    """The segment number of a 24-hex-digit WAL name (log * segments-per-log + seg), as
    ``pgdrill.postgres.wal`` computes it; ValueError when out of range."""
    per_log = _per_log(segment_size)
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    if seg >= per_log:
        raise ValueError(f"{name}: segment part out of range for {segment_size}-byte segments")
    return log * per_log + seg


def _segment_name(timeline: str, number: int, segment_size: int) -> str:
    log, seg = divmod(number, _per_log(segment_size))
    return f"{timeline}{log:08X}{seg:08X}"


def _per_log(segment_size: int) -> int:
    if segment_size <= 0 or segment_size & (segment_size - 1):
        raise ValueError(f"WAL segment size must be a power of two, got {segment_size}")
    return 0x1_0000_0000 // segment_size


def install(directory: Path, uid: int | None = None, gid: int | None = None) -> Path:
    """Copy this file to ``directory/walfetch.py`` (readable by everyone, owned by ``uid``)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "walfetch.py"
    shutil.copyfile(__file__, target)
    target.chmod(0o644)
    directory.chmod(0o755)
    if uid is not None and gid is not None:
        os.chown(directory, uid, gid)
        os.chown(target, uid, gid)
    return target

_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
TEMP_SUFFIX = ".tmp"
# What serverlog.walfetch_stats reads back; the wording avoids every serverlog.EVENT_KEYS word
# so these lines never crowd PostgreSQL's own recovery lines out of a report's excerpt.
LOG_TAG = "pgdrill-walfetch:"
# A wrong restore_command must stop recovery, not end it: PostgreSQL reads exit codes up to 125
# as "file not in the archive" (and promotes), above 125 as a shell error (FATAL), as for a
# misspelt command (xlogarchive.c, RestoreArchivedFile).
USAGE_EXIT = 126


class _Terminated(Exception):
    """SIGTERM (a server shutdown signals the startup process's whole group)."""


def is_segment(name: str) -> bool:
    """A plain WAL segment name (not ``.history``, ``.partial`` or ``.backup``)."""
    return bool(_SEGMENT.match(name))


def names_to_fetch(name: str, max_parallel: int, segment_size: int) -> list[str]:
    """The requested name first, then the next ``max_parallel - 1`` segment names on its timeline.

    A name that is not a segment, or whose segment part is out of range for ``segment_size``,
    is fetched alone (the plugin does the same for names it cannot parse).
    """
    if max_parallel <= 1 or not is_segment(name):
        return [name]
    try:
        number = _segment_number(name, segment_size)
    except ValueError:
        return [name]
    # The number splits into log/seg with the real segments-per-log, so ...000000FF is
    # followed by the next log's ...00000000 at 16 MiB, and ...3F by it with 64 MiB.
    return [_segment_name(name[:8], number + i, segment_size) for i in range(max_parallel)]


class Spool:
    """Prefetched segments, one file per full name; ``<name>.tmp`` while being written."""

    def __init__(self, directory: Path, segment_size: int):
        self.directory = directory
        self.segment_size = segment_size

    def ensure(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.directory / name

    def temp(self, name: str) -> Path:
        return self.directory / (name + TEMP_SUFFIX)

    def holds(self, name: str) -> bool:
        """A committed, whole segment under exactly this name (temp files never count)."""
        try:
            return self.path(name).stat().st_size == self.segment_size
        except FileNotFoundError:
            return False

    def take(self, name: str, destination: Path) -> bool:
        """Move a complete spooled ``name`` to ``destination``; False when it is not there."""
        source = self.path(name)
        if not self.holds(name):
            # A short file can only come from outside (we commit after barman's exit 0): drop it
            # and download the segment again rather than hand PostgreSQL a truncated one.
            source.unlink(missing_ok=True)
            return False
        try:
            os.replace(source, destination)
        except FileNotFoundError:
            return False
        except OSError:
            # Another filesystem (the plugin's case: spool on an emptyDir): copy beside the
            # destination, then rename, so the destination is never half-written either.
            staged = destination.with_name(destination.name + ".pgdrill" + TEMP_SUFFIX)
            shutil.copyfile(source, staged)
            os.replace(staged, destination)
            source.unlink()
        return True

    def commit(self, name: str) -> bool:
        """Publish a finished download; a wrong-sized one is discarded instead."""
        temp = self.temp(name)
        try:
            if temp.stat().st_size != self.segment_size:
                temp.unlink()
                return False
            os.replace(temp, self.path(name))
            return True
        except FileNotFoundError:
            return False

    def discard_temp(self, name: str) -> None:
        self.temp(name).unlink(missing_ok=True)

    def prune_before(self, name: str) -> int:
        """Drop spooled files (any timeline, temp files too) below ``name``'s segment number:
        replay never asks for an earlier segment again, and an unbounded spool would fill the disk
        with the prefetches a timeline switch made useless.  Returns how many were removed."""
        try:
            number = _segment_number(name, self.segment_size)
            entries = list(self.directory.iterdir())
        except (ValueError, FileNotFoundError):
            return 0
        removed = 0
        for entry in entries:
            base = entry.name.removesuffix(TEMP_SUFFIX)
            try:
                stale = is_segment(base) and _segment_number(base, self.segment_size) < number
            except ValueError:
                stale = False
            if stale:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed


def restore(name: str, destination: str, barman_argv: list[str], max_parallel: int, segment_size: int,
            spool: Spool, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Fetch ``name`` to ``destination`` (relative to the data directory, as %p is).

    Returns the exit code for PostgreSQL and the log line saying what happened.
    """
    started = time.monotonic()
    dest = Path(destination)
    wanted = names_to_fetch(name, max_parallel, segment_size)
    spool_problem = ""
    if is_segment(name):
        try:
            spool.ensure()
            spool.prune_before(name)
            if spool.take(name, dest):
                return 0, f"{LOG_TAG} {name} served=spool max_parallel={max_parallel}"
        except OSError as exc:
            # A broken spool (full disk, permissions) must not end recovery: PostgreSQL reads
            # any non-zero exit as "not in the archive" and promotes.  Fetch this one file alone.
            spool_problem = f" spool_error={type(exc).__name__}"
            wanted = [name]
    # An extra already spooled (left by an earlier batch) is not downloaded twice.
    extras = [n for n in wanted[1:] if not spool.holds(n)]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        # The requested file's barman output goes to the server log as today; the extras' do
        # not: "WAL file ... does not exist" for a speculative name is not news (plugin: "We
        # don't log errors for prefetched WALs").
        try:
            processes.append((name, subprocess.Popen([*barman_argv, name, str(dest)], env=env)))
        except OSError as exc:
            # What the shell answers for the plain command (127: not found, 126: not executable);
            # PostgreSQL treats > 125 as fatal rather than as "file not found".
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return code, (f"{LOG_TAG} {name} served=failed-exit-{code} max_parallel={max_parallel} "
                          f"cannot run {Path(barman_argv[0]).name}: {exc.strerror}")
        for extra in extras:
            try:
                processes.append((extra, subprocess.Popen(
                    [*barman_argv, extra, str(spool.temp(extra))], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
            except OSError:
                break  # out of processes: the requested file still counts, the prefetch is optional
        # Wait for every download, as the plugin's RestoreList does: the next request then finds
        # its segment committed instead of starting a second download of it.
        codes = {n: p.wait() for n, p in processes}
    except _Terminated:  # raised by main()'s handler: leave no download and no temp file behind
        _stop(processes)
        for extra in extras:
            spool.discard_temp(extra)
        raise
    spooled = []
    for extra in extras:
        try:
            if codes.get(extra) == 0 and spool.commit(extra):
                spooled.append(extra)
            else:
                spool.discard_temp(extra)
        except OSError:
            pass  # a prefetch that cannot be kept is only a lost prefetch
    rc = codes[name]
    if rc < 0:
        rc = 128 - rc  # killed by a signal: what the shell reports for the plain command (> 125: fatal)
    outcome = "fetched" if rc == 0 else ("not-found" if rc == 1 else f"failed-exit-{rc}")
    failed = sorted({str(codes.get(e, "not-started")) for e in extras if codes.get(e) != 0})
    line = (f"{LOG_TAG} {name} served={outcome} max_parallel={max_parallel} "
            f"prefetched={len(spooled)}/{len(extras)}"
            + (f" prefetch_exit={','.join(failed)}" if failed else "") + spool_problem
            + f" seconds={time.monotonic() - started:.3f}")
    return rc, line


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _stop(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, process in processes:
        if process.poll() is None:
            process.terminate()
    for _, process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--" not in args:
        print(f"{LOG_TAG} usage: ... %f %p -- barman-cloud-wal-restore <options> <dest> <server>", file=sys.stderr)
        return USAGE_EXIT
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="pgdrill-walfetch")
    parser.add_argument("--max-parallel", type=int, required=True)
    parser.add_argument("--segment-size", type=int, required=True)
    parser.add_argument("--spool", required=True, help="spool directory (relative: to the data directory)")
    parser.add_argument("wal_name")
    parser.add_argument("destination")
    try:
        options = parser.parse_args(args[:split])
    except SystemExit as exc:
        return USAGE_EXIT if exc.code else 0
    barman_argv = args[split + 1:]
    if not barman_argv or options.max_parallel < 1:
        print(f"{LOG_TAG} need a barman-cloud-wal-restore command after -- and --max-parallel >= 1",
              file=sys.stderr)
        return USAGE_EXIT
    spool = Spool(Path(options.spool), options.segment_size)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        rc, line = restore(options.wal_name, options.destination, barman_argv, options.max_parallel,
                           options.segment_size, spool)
    except _Terminated:
        # Die of the signal itself: PostgreSQL tells a shutdown (SIGTERM) from a failed fetch by
        # how restore_command ended, as it does for barman-cloud-wal-restore run directly.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return 128 + signal.SIGTERM
    print(line, file=sys.stderr, flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
