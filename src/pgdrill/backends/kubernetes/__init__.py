"""Kubernetes backends: ``kind`` (a throw-away kind cluster) and ``k8s`` (an existing cluster).

Public surface::

    factory.make_backend(config, run_id, keep=False, *, settings=None, environment=None) -> KubernetesBackend
    plan.plan_manifests(config, scenario, run_id="plan") -> list[dict]
    close_kind_environments() -> None            # session end (deletes kind unless keep)
    KubernetesSettings                           # the [kubernetes] config table

Importing this package needs only PyYAML and jsonschema; the ``kubernetes`` client and
pytest-kind are imported when a backend is made.
"""

from __future__ import annotations

from pgdrill._lazy import lazy_names

_PUBLIC = {
    "make_backend": "pgdrill.backends.kubernetes.factory",
    "close_kind_environments": "pgdrill.backends.kubernetes.factory",
    "plan_manifests": "pgdrill.backends.kubernetes.plan",
    "KubernetesSettings": "pgdrill.backends.kubernetes.settings",
    "settings_from": "pgdrill.backends.kubernetes.settings",
}
__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
