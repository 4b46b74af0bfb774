"""Settings of the kind and k8s backends (a ``[kubernetes]`` table in pgdrill.toml).

Only types ``pgdrill.strict`` can load are used, so ``Config`` can embed this dataclass.
The default versions are those of the CRDs in ``crds/SOURCES.md``; change them together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesSettings:
    kubeconfig: str | None = None
    """Path of the kubeconfig for ``k8s``; default: ``$KUBECONFIG``, else ``~/.kube/config``."""
    context: str | None = None
    """kubeconfig context for ``k8s``; default: the current context.  Never guessed."""
    namespace_prefix: str = "pgdrill"
    """Each run gets its own namespace ``<prefix>-<run id>``, created and deleted by pgdrill."""

    kind_cluster_name: str = "pgdrill"
    kind_config: str = "kind-config.yaml"
    """kind cluster definition (pins the node image); relative paths start at the current directory."""
    kind_binary: str = "kind"
    kubectl_binary: str = "kubectl"
    keep: bool = False
    """Keep the kind cluster (and the run's namespace) after the session, for inspection."""

    cnpg_version: str = "1.30.0"
    plugin_version: str = "0.14.0"
    cert_manager_version: str = "v1.21.0"
    minio_image: str = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
    """The MinIO release the plugin's e2e tests use (PLUGIN test/e2e/internal/objectstore/minio.go)."""
    postgres_image: str | None = None
    """``None``: the operator's default PostgreSQL image for its version."""

    instances: int = 1
    """Instances of the source cluster; the primary-kill fault needs at least 2."""
    storage_size: str = "1Gi"
    archive_timeout: str = "5min"
    """ADR 007 value; drills force WAL switches, so it only bounds unforced archiving."""

    ready_timeout_seconds: float = 600.0
    """CNPG e2e ``ClusterIsReady``."""
    recovery_timeout_seconds: float = 800.0
    """CNPG e2e ``ClusterIsReadySlow`` (used for PITR restores)."""
    backup_timeout_seconds: float = 180.0
    """CNPG e2e ``BackupIsReady``."""
    install_timeout_seconds: float = 300.0
    poll_seconds: float = 5.0
    failed_recovery_pods: int = 2
    """Declare a recovery failed after this many failed ``full-recovery`` pods with errors,
    rather than waiting for the Job's ``BackoffLimitExceeded`` (7 pods, exponential back-off)."""

    @property
    def cnpg_manifest_url(self) -> str:
        major_minor = ".".join(self.cnpg_version.split(".")[:2])
        return (f"https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-{major_minor}"
                f"/releases/cnpg-{self.cnpg_version}.yaml")

    @property
    def cert_manager_url(self) -> str:
        return (f"https://github.com/cert-manager/cert-manager/releases/download/"
                f"{self.cert_manager_version}/cert-manager.yaml")

    @property
    def plugin_manifest_url(self) -> str:
        # The release asset, not manifest.yaml from the tree (that one points at a testing image).
        return (f"https://github.com/cloudnative-pg/plugin-barman-cloud/releases/download/"
                f"v{self.plugin_version}/manifest.yaml")


def settings_from(config: object) -> KubernetesSettings:
    """The ``kubernetes`` section of a ``Config`` if it has one, else the defaults."""
    found = getattr(config, "kubernetes", None)
    return found if isinstance(found, KubernetesSettings) else KubernetesSettings()
