"""Start a Kubernetes backend (kind or an existing cluster) and close kind environments."""


from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pgdrill.backends.kubernetes.settings import KubernetesSettings, settings_from

if TYPE_CHECKING:
    from pgdrill.backends.kubernetes.cluster import KubernetesBackend
    from pgdrill.backends.kubernetes.kind import KindEnvironment



def make_backend(config: Any, run_id: str, keep: bool = False, *, settings: KubernetesSettings | None = None,
                 environment: KindEnvironment | None = None) -> KubernetesBackend:
    """A started backend for ``config.backend`` ("kind" or "k8s") in a new namespace for ``run_id``.

    Every precondition (Docker, kind, kubectl, kubeconfig, context, CNPG CRDs) is checked before
    anything is created; a failure is a one-line ``UsageError``.  Call ``close()`` when done.
    """
    from pgdrill.archive.store import S3Credentials
    from pgdrill.backends.kubernetes.cluster import KubernetesBackend
    from pgdrill.backends.kubernetes.plan import drill_objects
    from pgdrill.errors import UsageError

    settings = settings or settings_from(config)
    if keep and not settings.keep:
        settings = replace(settings, keep=True)
    credentials = S3Credentials.from_environment() if config.s3.mode == "external" else None
    if config.backend == "kind":
        from pgdrill.backends.kubernetes.kind import kind_environment

        env = environment or kind_environment(settings)
        kube = env.up()
        versions = dict(env.versions)
    elif config.backend == "k8s":
        from pgdrill.backends.kubernetes.k8s import connect_existing

        kube, versions = connect_existing(settings)
    else:
        raise UsageError(f"backend {config.backend!r} is not a Kubernetes backend (use kind or k8s)")
    objects = drill_objects(config, run_id, settings=settings)
    return KubernetesBackend(config.backend, kube, objects, settings, credentials, versions).start()


def close_kind_environments() -> None:
    from pgdrill.backends.kubernetes.kind import close_kind_environments as close

    close()
