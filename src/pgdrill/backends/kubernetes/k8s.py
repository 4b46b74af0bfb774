"""``--backend k8s``: an existing cluster from a kubeconfig context with CNPG and the plugin installed.

Every check runs before pgdrill creates anything, and each failure is one line naming what to fix.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from pgdrill.backends.kubernetes.kube import Kube, default_kubeconfig
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.errors import BackendUnavailable, UsageError

#: What must be installed before pgdrill can run a drill on an existing cluster.
REQUIRED_CRDS = (
    "clusters.postgresql.cnpg.io",
    "backups.postgresql.cnpg.io",
    "scheduledbackups.postgresql.cnpg.io",
    "objectstores.barmancloud.cnpg.io",
)


def resolve_context(kubeconfig: str, wanted: str | None) -> str:
    """The context to use: ``wanted`` if it exists in the kubeconfig, else its current context."""
    from kubernetes import config

    if not os.path.isfile(kubeconfig):
        raise BackendUnavailable(f"no kubeconfig at {kubeconfig}: set KUBECONFIG or kubernetes.kubeconfig in pgdrill.toml")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except Exception as exc:  # the client raises ConfigException, yaml errors, KeyError...
        raise UsageError(f"kubeconfig {kubeconfig} is not usable ({type(exc).__name__}): fix or replace it") from None
    names = [c.get("name") for c in contexts or []]
    context = wanted or (current or {}).get("name")
    if not context:
        raise UsageError(f"kubeconfig {kubeconfig} has no current context: set kubernetes.context "
                         f"(available: {', '.join(names) or 'none'})")
    if context not in names:
        raise UsageError(f"context {context!r} is not in {kubeconfig} (available: {', '.join(names) or 'none'})")
    return context


def check_reachable(kube: Kube, timeout: float = 10.0) -> str:
    try:
        info = kube.version.get_code(_request_timeout=timeout)
    except Exception as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise BackendUnavailable(f"cannot reach the Kubernetes API server of context {kube.context!r} "
                         f"({str(reason).splitlines()[0][:160]}): check the cluster and the kubeconfig") from None
    return str(info.git_version)


def missing_crds(kube: Kube) -> list[str]:
    from kubernetes.client.exceptions import ApiException

    missing = []
    for name in REQUIRED_CRDS:
        try:
            kube.apiext.read_custom_resource_definition(name, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                missing.append(name)
            elif exc.status == 403:
                raise UsageError(f"context {kube.context!r} may not read CustomResourceDefinitions: "
                                 f"pgdrill needs get on customresourcedefinitions to check for CNPG") from None
            else:
                raise UsageError(f"checking CRD {name} failed (HTTP {exc.status})") from None
    return missing


def connect_existing(settings: KubernetesSettings) -> tuple[Kube, dict[str, Any]]:
    """Check the kubeconfig, context, API server and CNPG/plugin CRDs; return a client and versions."""
    kubeconfig = default_kubeconfig(settings.kubeconfig)
    context = resolve_context(kubeconfig, settings.context)
    if shutil.which(settings.kubectl_binary) is None:
        raise BackendUnavailable(f"{settings.kubectl_binary} not found on PATH: pgdrill needs kubectl for port-forwards")
    kube = Kube(kubeconfig, context, settings.kubectl_binary)
    version = check_reachable(kube)
    missing = missing_crds(kube)
    if missing:
        raise UsageError(f"CloudNativePG is not installed in context {context!r} (missing CRDs: {', '.join(missing)}): "
                         f"install CNPG {settings.cnpg_version} and plugin-barman-cloud {settings.plugin_version}")
    return kube, {"kubernetes": version, "context": context}
