"""``pgdrill restore-test --backend {local,k8s,kind}``: the flags of the Kubernetes restore-test and
the backend they select.

``open_backend`` runs before any listing or report: for ``k8s`` and ``kind`` it connects to the
cluster and checks CNPG and the plugin are there, so a missing kubeconfig, an unreachable API
server or no Docker is one line and exit 2, never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pgdrill.errors import UsageError
from pgdrill.strict import ArgumentParser

#: dest -> flag, for "only with --backend k8s or kind".
KUBERNETES_FLAGS = {
    "namespace": "--namespace", "source_cluster": "--source-cluster", "image_name": "--image-name",
    "k8s_secret": "--k8s-secret", "k8s_secret_keys": "--k8s-secret-keys", "k8s_endpoint_url": "--k8s-endpoint-url",
    "endpoint_ca": "--endpoint-ca", "storage_size": "--storage-size", "storage_class": "--storage-class",
    "scratch_object_store": "--scratch-object-store", "scratch_server_name": "--scratch-server-name",
    "kubeconfig": "--kubeconfig", "context": "--context",
}


def add_backend_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("local", "k8s", "kind"), default="local",
                        help="where the throwaway cluster runs: local processes (default), a CNPG Cluster on an "
                             "existing Kubernetes cluster (k8s), or on a kind cluster (kind)")
    group = parser.add_argument_group("Kubernetes (--backend k8s or kind; docs/restore-test.md, On Kubernetes)")
    group.add_argument("--namespace", metavar="NS", help="an existing namespace for pgdrill's objects "
                       "(default: a namespace of its own, deleted afterwards)")
    group.add_argument("--source-cluster", metavar="[NS/]NAME",
                       help="the source CNPG Cluster: its imageName is used, its serverName and archive cross-checked")
    group.add_argument("--image-name", metavar="IMAGE", help="PostgreSQL image (default: the source Cluster's)")
    group.add_argument("--k8s-secret", metavar="NAME", help="existing Secret in --namespace with the read-only S3 "
                       "keys (default: pgdrill makes one from --access-key-env/--secret-key-env)")
    group.add_argument("--k8s-secret-keys", metavar="ID_KEY,SECRET_KEY",
                       help="key names in --k8s-secret (default ACCESS_KEY_ID,ACCESS_SECRET_KEY)")
    group.add_argument("--k8s-endpoint-url", metavar="URL", help="S3 endpoint as the cluster reaches it "
                       "(default: the source ObjectStore's, else --endpoint-url)")
    group.add_argument("--endpoint-ca", metavar="SECRET/KEY", help="CA bundle of the endpoint, in --namespace")
    group.add_argument("--storage-size", metavar="SIZE", help="PVC size, e.g. 200Gi (default: from the backup's size)")
    group.add_argument("--storage-class", metavar="CLASS")
    group.add_argument("--scratch-object-store", metavar="NAME", help="let the restored cluster archive into this "
                       "other ObjectStore (refused when it resolves to the source's serverName path)")
    group.add_argument("--scratch-server-name", metavar="NAME", help="serverName there (default: the Cluster's name)")
    group.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig for k8s (default KUBECONFIG, ~/.kube/config)")
    group.add_argument("--context", metavar="NAME", help="kubeconfig context for k8s (default: its current one)")


@dataclass
class RestoreBackend:
    """What ``run_specs`` runs each restore-test with; ``run`` None means the local runner."""

    name: str
    run: Callable[..., Any] | None = None
    connection: Any = None

    def close(self, keep: bool = False) -> None:
        if self.connection is not None:
            self.connection.close(keep)
            self.connection = None


def kubernetes_options(args: Any) -> Any:
    from pgdrill.restoretest.kubernetes import KubernetesRestoreOptions

    keys: tuple[str, ...] = ()
    if args.k8s_secret_keys:
        keys = tuple(k.strip() for k in args.k8s_secret_keys.split(","))
        if len(keys) != 2 or not all(keys):
            raise UsageError("--k8s-secret-keys takes ID_KEY,SECRET_KEY (two key names of the Secret)")
    options = KubernetesRestoreOptions(
        backend=args.backend, namespace=args.namespace, source_cluster=args.source_cluster,
        image_name=args.image_name, credentials_secret=args.k8s_secret, endpoint_url=args.k8s_endpoint_url,
        endpoint_ca=args.endpoint_ca, storage_size=args.storage_size, storage_class=args.storage_class,
        scratch_object_store=args.scratch_object_store, scratch_server_name=args.scratch_server_name,
        **({"access_key_id_key": keys[0], "secret_access_key_key": keys[1]} if keys else {}))
    options.check()
    if not (options.source_cluster or options.image_name):
        raise UsageError("--backend k8s/kind needs --source-cluster [NS/]NAME (its imageName is used) or --image-name")
    return options


def open_backend(args: Any, config: Any) -> RestoreBackend:
    """``local``: nothing to open.  ``k8s``/``kind``: a reachable cluster with CNPG and the plugin, or
    a one-line ``UsageError``/``BackendUnavailable``."""
    given = [flag for dest, flag in KUBERNETES_FLAGS.items() if getattr(args, dest, None)]
    if args.backend == "local":
        if given:
            raise UsageError(f"{', '.join(given)} only apply to --backend k8s or kind")
        return RestoreBackend("local")
    from pgdrill.restoretest.kubernetes_run import (
        connect_backend,
        run_kubernetes_restore_test,
    )

    options = kubernetes_options(args)
    settings = config.kubernetes
    if args.kubeconfig or args.context:
        settings = replace(settings, kubeconfig=args.kubeconfig or settings.kubeconfig,
                           context=args.context or settings.context)
    config = replace(config, kubernetes=settings)
    connection = connect_backend(options, settings)

    def run(spec: Any, _config: Any, run_id: str, keep: bool) -> Any:
        return run_kubernetes_restore_test(spec, config, run_id, options, connection, keep)

    return RestoreBackend(args.backend, run, connection)
