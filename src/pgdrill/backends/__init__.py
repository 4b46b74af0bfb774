"""Backends: where drill clusters and their object store live (local, kind, k8s)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from .base import Backend, ClusterHandle, RecoveryOutcome, RecoveryTarget

if TYPE_CHECKING:
    from ..config import Config

BACKENDS = ("local", "kind", "k8s")


def make_backend(config: Config, run_id: str, keep: bool = False) -> Backend:
    """Start the configured backend for one drill run (its own clusters and S3 prefix)."""
    if config.backend == "local":
        from .local.backend import LocalBackend

        return LocalBackend(config, run_id, keep=keep)
    if config.backend in ("kind", "k8s"):
        try:
            from .kubernetes import make_backend as make_kubernetes_backend  # type: ignore[attr-defined]
        except ImportError as exc:
            raise UsageError(f"backend {config.backend!r} needs the kube extra: pip install 'pgdrill[kube]' ({exc})") from None
        return make_kubernetes_backend(config, run_id, keep=keep)  # type: ignore[no-any-return]
    raise UsageError(f"unknown backend {config.backend!r} (allowed: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "ClusterHandle", "RecoveryOutcome", "RecoveryTarget", "make_backend"]
