"""Kubernetes backends: ``kind`` (a throw-away kind cluster) and ``k8s`` (an existing cluster).

Public surface::

    make_backend(config, run_id, keep=False, *, settings=None, environment=None) -> KubernetesBackend
    plan_manifests(config, scenario, run_id="plan") -> list[dict]
    close_kind_environments() -> None            # session end (deletes kind unless keep)
    KubernetesSettings                           # the [kubernetes] config table

Importing this package needs only PyYAML and jsonschema; the ``kubernetes`` client and
pytest-kind are imported when a backend is made.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .plan import plan_manifests
from .settings import KubernetesSettings, settings_from

if TYPE_CHECKING:
    from .cluster import KubernetesBackend
    from .kind import KindEnvironment

__all__ = ["KubernetesSettings", "close_kind_environments", "make_backend", "plan_manifests"]


def make_backend(config: Any, run_id: str, keep: bool = False, *, settings: KubernetesSettings | None = None,
                 environment: KindEnvironment | None = None) -> KubernetesBackend:
    """A started backend for ``config.backend`` ("kind" or "k8s") in a new namespace for ``run_id``.

    Every precondition (Docker, kind, kubectl, kubeconfig, context, CNPG CRDs) is checked before
    anything is created; a failure is a one-line ``UsageError``.  Call ``close()`` when done.
    """
    from ...errors import UsageError
    from ...s3 import S3Credentials
    from .cluster import KubernetesBackend
    from .plan import drill_objects

    settings = settings or settings_from(config)
    if keep and not settings.keep:
        settings = replace(settings, keep=True)
    credentials = S3Credentials.from_environment() if config.s3.mode == "external" else None
    if config.backend == "kind":
        from .kind import kind_environment

        env = environment or kind_environment(settings)
        kube = env.up()
        versions = dict(env.versions)
    elif config.backend == "k8s":
        from .k8s import connect_existing

        kube, versions = connect_existing(settings)
    else:
        raise UsageError(f"backend {config.backend!r} is not a Kubernetes backend (use kind or k8s)")
    objects = drill_objects(config, run_id, settings=settings)
    return KubernetesBackend(config.backend, kube, objects, settings, credentials, versions).start()


def close_kind_environments() -> None:
    from .kind import close_kind_environments as close

    close()
