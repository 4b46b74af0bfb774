"""A local run's room: its directory and ``RunScope`` (every process, port, segment and socket it
leaves is recorded there, see ``pgdrill.cleanup``), the OS user PostgreSQL runs as, and new
PostgreSQL instances inside it.  Shared by the local backend and the restore-test workspace."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path

from pgdrill.backends.local.postgres import Instance
from pgdrill.backends.local.runas import OsUser
from pgdrill.backends.naming import free_port
from pgdrill.cleanup import SOCKET_PATH_MAX, RunScope
from pgdrill.errors import UsageError


def open_run_dir(os_user: str, workdir: str | None, run_id: str) -> tuple[Path, RunScope, OsUser]:
    """Create the run's directory (under ``workdir`` or the temp dir) and its scope; the returned
    user records every process it starts in that scope."""
    user = OsUser.for_postgres(os_user)
    run_dir = Path(workdir or tempfile.gettempdir()) / f"pgdrill-{hashlib.sha1(run_id.encode()).hexdigest()[:10]}"
    try:
        scope = RunScope.create(run_dir, user.uid)
    except FileExistsError:
        raise UsageError(f"run directory {run_dir} already exists; pick another run id") from None
    return run_dir, scope, dataclasses.replace(user, scope=scope)


def new_instance(run_dir: Path, tmp_dir: Path, user: OsUser, env: dict[str, str], name: str,
                 bin_dir: Path | None = None) -> Instance:
    """A not yet initialised instance in its own directory, on a free port."""
    base = user.own(run_dir / name, 0o700)
    port = free_port()
    # Its unix socket lives in the run's short temp dir (".s.PGSQL.<port>.lock" under it).
    sockets = tmp_dir / name
    if len(str(sockets)) + len(f"/.s.PGSQL.{port}.lock") > SOCKET_PATH_MAX:
        sockets = tmp_dir / f"node-{port}"
    return Instance(name=name, pgdata=base / "pgdata", port=port, socket_dir=user.own(sockets, 0o700),
                    log_file=base / "postgres.log", user=user, env=env, cwd=base, bin_dir=bin_dir)
