"""Make the configured backend (local, kind or k8s) for one drill run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgdrill.backends.base import Backend
from pgdrill.errors import UsageError

if TYPE_CHECKING:
    from pgdrill.config import Config

BACKENDS = ("local", "kind", "k8s")


def make_backend(config: Config, run_id: str, keep: bool = False) -> Backend:
    """Start the configured backend for one drill run (its own clusters and S3 prefix)."""
    if config.backend == "local":
        from pgdrill.backends.local.backend import LocalBackend

        return LocalBackend(config, run_id, keep=keep)
    if config.backend in ("kind", "k8s"):
        try:
            from pgdrill.backends.kubernetes.factory import (
                make_backend as make_kubernetes_backend,
            )
        except ImportError as exc:
            raise UsageError(f"backend {config.backend!r} needs the kube extra: pip install 'pgdrill[kube]' ({exc})") from None
        return make_kubernetes_backend(config, run_id, keep=keep)  # type: ignore[no-any-return]
    raise UsageError(f"unknown backend {config.backend!r} (allowed: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "make_backend"]
