"""Run PostgreSQL-side programs as an unprivileged OS user when pgdrill itself is root.

PostgreSQL refuses to run as root.  Instead of ``runuser`` (which resets the
environment and PATH), pgdrill forks with ``subprocess``'s ``user=``/``group=``, so the
child gets exactly the environment pgdrill hands it, credentials included, and nothing
has to be written to disk or put in argv.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pgdrill.errors import UsageError


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int
    switch: bool
    """True when pgdrill runs as root and must drop to this user for PostgreSQL work."""

    @classmethod
    def for_postgres(cls, wanted: str) -> OsUser:
        """The current user, or (as root) ``wanted``, created as a system user if missing."""
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, False)
        try:
            entry = pwd.getpwnam(wanted)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            result = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", wanted],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise UsageError(f"could not create OS user {wanted!r} for PostgreSQL "
                                 f"({result.stderr.strip()}); create it or set local.os_user") from None
            entry = pwd.getpwnam(wanted)
        if entry.pw_uid == 0:
            raise UsageError(f"local.os_user {wanted!r} is root; PostgreSQL refuses to run as root")
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, True)

    def popen_kwargs(self) -> dict[str, object]:
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path, mode: int = 0o700) -> Path:
        """Create ``path`` (if needed) owned by this user with ``mode``."""
        path.mkdir(parents=True, exist_ok=True)
        if self.switch:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def run(self, argv: Sequence[str], env: dict[str, str], cwd: Path,
            timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL,
                                timeout=timeout, **self.popen_kwargs())  # type: ignore[call-overload]
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv[:1], result.stdout, result.stderr)
        return result

    def can_execute(self, program: Path, env: dict[str, str], cwd: Path) -> str | None:
        """``None`` if this user can run ``program --version``; else the reason."""
        try:
            result = self.run([str(program), "--version"], env, cwd, timeout=60)
        except PermissionError as exc:
            return str(exc)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return lines[-1] if lines else f"exit {result.returncode}"
        return None
