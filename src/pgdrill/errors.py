"""pgdrill's error hierarchy.

The split drives verdicts: a ``DrillFailed`` means pgdrill verified something is broken;
a ``CouldNotVerify`` means pgdrill could not find out, which is never a pass.
``UsageError`` covers bad input: its message is one line that says what to fix.
"""

from __future__ import annotations


class PgdrillError(Exception):
    """Base of every error pgdrill raises on purpose."""


class UsageError(PgdrillError):
    """Bad input (config, arguments, environment); the message names what to fix."""


class ConfigError(UsageError):
    """A config or scenario file is invalid; the message names file, key and allowed values."""


class S3Error(UsageError):
    """The object store refused or could not be reached."""


class CouldNotVerify(PgdrillError):
    """Infrastructure got in the way: the drill result is unknown, not passed."""


class DrillFailed(PgdrillError):
    """A drill ran and its expectation did not hold."""


class BackendUnavailable(UsageError):
    """The selected backend cannot run on this machine (no Docker, no kubeconfig...).

    Drills on it are reported as *not run* (skipped with this reason), never as passed.
    """
