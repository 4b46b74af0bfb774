"""``--backend kind``: a kind cluster (through pytest-kind) with cert-manager, CNPG and the plugin.

The cluster is created from ``kind-config.yaml`` (which pins the node image), reused by every
drill of the session, and deleted at the end unless ``keep``.  Installs use the release
manifests at pinned versions, in the order the plugin requires (cnpg-notes §1): CNPG
(server-side apply: its clusters CRD is larger than client-side apply's annotation limit),
cert-manager, then plugin-barman-cloud into ``cnpg-system``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from pgdrill.backends.kubernetes.kube import Kube, say
from pgdrill.backends.kubernetes.settings import KubernetesSettings
from pgdrill.errors import BackendUnavailable, CouldNotVerify, UsageError


def check_docker(timeout: float = 30.0) -> None:
    """kind needs a running Docker engine; ``docker info`` is the cheapest proof.

    A missing tool is ``BackendUnavailable`` (drills are reported *not run*), not a pass."""
    if shutil.which("docker") is None:
        raise BackendUnavailable("the kind backend needs Docker: `docker` is not on PATH (install Docker, or use --backend local)")
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BackendUnavailable(f"the kind backend needs Docker: `docker info` did not answer in {timeout:.0f}s") from None
    if result.returncode != 0 or not result.stdout.strip():
        detail = (result.stderr.strip().splitlines() or ["no server version"])[-1][:200]
        raise BackendUnavailable(f"the kind backend needs a running Docker engine: `docker info` failed ({detail})")


def _binary(name: str, what: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackendUnavailable(f"the kind backend needs {what}: {name!r} is not on PATH")
    return found


class KindEnvironment:
    """One kind cluster with the operator stack, shared by every drill of a session."""

    def __init__(self, settings: KubernetesSettings):
        self.settings = settings
        self.kube: Kube | None = None
        self._cluster: Any = None
        self._created_cluster = False
        self.versions: dict[str, str] = {}

    def preflight(self) -> tuple[str, str, Path]:
        config = Path(self.settings.kind_config)
        if not config.is_file():
            raise UsageError(f"kind config {config} not found: run from the repository root or set kubernetes.kind_config")
        kind = _binary(self.settings.kind_binary, "kind (https://kind.sigs.k8s.io, v0.32.0)")
        kubectl = _binary(self.settings.kubectl_binary, "kubectl")
        check_docker()
        return kind, kubectl, config

    def up(self) -> Kube:
        if self.kube is not None:
            return self.kube
        kind, kubectl, config = self.preflight()
        from pytest_kind import KindCluster

        cluster = KindCluster(self.settings.kind_cluster_name, kind_path=Path(kind), kubectl_path=Path(kubectl))
        existing = subprocess.run([kind, "get", "clusters"], capture_output=True, text=True).stdout.split()
        self._created_cluster = self.settings.kind_cluster_name not in existing
        say(f"kind cluster {cluster.name}: {'creating' if self._created_cluster else 'reusing'} ({config})")
        self._cluster = cluster
        try:
            cluster.create(config_file=config)
            self.kube = Kube(str(cluster.kubeconfig_path), None, kubectl)
            self.install()
        except BaseException:
            # Nothing half-made stays behind: a cluster this call created goes away again.
            self.close(force=True)
            raise
        return self.kube

    def _kubectl(self, *args: str, timeout: float | None = None) -> str:
        assert self.kube is not None
        result = subprocess.run([*self.kube.kubectl_base(), *args], capture_output=True, text=True,
                                timeout=timeout or self.settings.install_timeout_seconds)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise CouldNotVerify(f"kubectl {' '.join(args[:3])} failed: {detail}")
        return result.stdout

    def _deployment_image(self, namespace: str, name: str) -> str | None:
        assert self.kube is not None
        try:
            dep = self.kube.apps.read_namespaced_deployment(name, namespace)
        except Exception:
            return None
        return str(dep.spec.template.spec.containers[0].image)

    def install(self) -> None:
        s = self.settings
        timeout = f"--timeout={int(s.install_timeout_seconds)}s"
        if not (self._deployment_image("cnpg-system", "cnpg-controller-manager") or "").endswith(f":{s.cnpg_version}"):
            say(f"installing CloudNativePG {s.cnpg_version}")
            self._kubectl("apply", "--server-side", "--force-conflicts", "-f", s.cnpg_manifest_url)
        self._kubectl("rollout", "status", "-n", "cnpg-system", "deployment/cnpg-controller-manager", timeout)
        if self._deployment_image("cert-manager", "cert-manager") is None:
            say(f"installing cert-manager {s.cert_manager_version}")
            self._kubectl("apply", "-f", s.cert_manager_url)
        for name in ("cert-manager", "cert-manager-cainjector", "cert-manager-webhook"):
            self._kubectl("rollout", "status", "-n", "cert-manager", f"deployment/{name}", timeout)
        if not (self._deployment_image("cnpg-system", "barman-cloud") or "").endswith(f":v{s.plugin_version}"):
            say(f"installing plugin-barman-cloud v{s.plugin_version}")
            self._kubectl("apply", "-f", s.plugin_manifest_url)
        self._kubectl("rollout", "status", "-n", "cnpg-system", "deployment/barman-cloud", timeout)
        self.versions = {"cnpg": s.cnpg_version, "plugin-barman-cloud": s.plugin_version,
                         "cert-manager": s.cert_manager_version, "kind-cluster": s.kind_cluster_name}

    def close(self, force: bool = False) -> None:
        """Delete the kind cluster unless ``keep`` (``force``: only one this object created)."""
        if self._cluster is None:
            return
        if force and not self._created_cluster:
            return
        if self.settings.keep and not force:
            say(f"keeping kind cluster {self._cluster.name} (kubeconfig {self._cluster.kubeconfig_path})")
            return
        say(f"deleting kind cluster {self._cluster.name}")
        self._cluster.delete()
        self._cluster, self.kube = None, None


_ENVIRONMENTS: dict[str, KindEnvironment] = {}


def kind_environment(settings: KubernetesSettings) -> KindEnvironment:
    """The session's kind environment for ``settings.kind_cluster_name`` (created on first use)."""
    env = _ENVIRONMENTS.get(settings.kind_cluster_name)
    if env is None:
        env = _ENVIRONMENTS[settings.kind_cluster_name] = KindEnvironment(settings)
    return env


def close_kind_environments() -> None:
    """Session end: delete every kind cluster this process set up (unless ``keep``)."""
    while _ENVIRONMENTS:
        _, env = _ENVIRONMENTS.popitem()
        env.close()
