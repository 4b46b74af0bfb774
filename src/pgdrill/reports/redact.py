"""Keep credentials out of every file the reports write.

Drill results are not supposed to hold secrets (``S3Credentials`` keeps its values out of
``repr``), but evidence payloads are free-form: a log line or an environment dump added
by a future fault could carry one.  Reports are attached to audits and CI artifacts, so
they scrub defensively: values under secret-looking keys, and the S3 credentials of this
process's environment wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"secret|passw|token|credential|access_key|private_key|session_key|api_key", re.I)
_ENV_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD")
# Credentials embedded in URLs: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.I)


def environment_secrets(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    # Very short values would blank out ordinary words; real keys are long.
    return [v for k in _ENV_SECRETS if len(v := env.get(k, "")) >= 8]


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    known = sorted({s for s in secrets if s}, key=len, reverse=True)
    return _redact(value, known)


def _redact(value: Any, known: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "", [], {})
                    else _redact(v, known)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, known) for v in value]
    if isinstance(value, str):
        for secret in known:
            value = value.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + "@", value)
    return value
