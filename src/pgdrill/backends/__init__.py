"""Backends: where drill clusters and their object store live (local, kind, k8s).

``base`` is the one protocol (with its optional capabilities); ``factory.make_backend`` starts
the configured one; ``local`` and ``kubernetes`` implement it.
"""

from __future__ import annotations

from pgdrill._lazy import lazy_names

_PUBLIC = {
    "Backend": "pgdrill.backends.base",
    "ClusterHandle": "pgdrill.backends.base",
    "RecoveryOutcome": "pgdrill.backends.base",
    "RecoveryTarget": "pgdrill.backends.base",
    "BACKENDS": "pgdrill.backends.factory",
    "make_backend": "pgdrill.backends.factory",
}
__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
