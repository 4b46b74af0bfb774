"""What a backend picks for the things it creates, as pure functions both backends share:
the next recovery cluster's name and a free local TCP port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable


def next_recovery_name(source_name: str, used: Iterable[str]) -> str:
    """``<source>-vN`` with the lowest N >= 2 that is not in ``used`` (cluster names and
    serverNames already taken, in the cluster list or the archive)."""
    taken = set(used)
    n = 2
    while f"{source_name}-v{n}" in taken:
        n += 1
    return f"{source_name}-v{n}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
