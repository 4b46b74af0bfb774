"""What the audit's and the drills' Pushgateway pushes share: credentials in the URL.

``urllib`` cannot take ``user:password@`` from a URL, so they are sent as HTTP basic auth, and
every message shows the URL without them."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client.exposition import basic_auth_handler, default_handler


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: what may be printed."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def credentials_handler(url: str) -> Any:
    """The ``push_to_gateway`` handler for ``url``: basic auth with its userinfo, if any."""
    parts = urlsplit(url)
    if parts.username is None:
        return default_handler
    user, password = unquote(parts.username), unquote(parts.password or "")

    def handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return handler
