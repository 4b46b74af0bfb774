"""The Kubernetes API for one kubeconfig context: the official client's APIs, create / get /
delete by UID of exactly the objects pgdrill made, pod logs, and progress output.

The ``kubernetes`` client is imported when a ``Kube`` is made, not when this module is.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from pgdrill.backends.kubernetes.schema import crd_for, validate


def say(text: str) -> None:
    """Progress output: one line on stderr, visible under pytest's ``-s`` and in CI logs."""
    print(f"[pgdrill] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Owned:
    """An object pgdrill created, identified by name and UID (cleanup deletes exactly this)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None
    uid: str


class Kube:
    """The official client's APIs for one kubeconfig context, plus kubectl for port-forwards."""

    def __init__(self, kubeconfig: str, context: str | None, kubectl: str = "kubectl"):
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.context = context
        self.kubectl = kubectl
        self.api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.core = client.CoreV1Api(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)
        self.batch = client.BatchV1Api(self.api_client)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.apiext = client.ApiextensionsV1Api(self.api_client)
        self.version = client.VersionApi(self.api_client)

    def kubectl_base(self) -> list[str]:
        args = [self.kubectl, "--kubeconfig", self.kubeconfig]
        if self.context:
            args += ["--context", self.context]
        return args

    def plain(self, obj: Any) -> dict[str, Any]:
        """A client model as the JSON the apiserver sent (camelCase keys), for ``status``."""
        return obj if isinstance(obj, dict) else self.api_client.sanitize_for_serialization(obj)

    # -- create / get / delete ----------------------------------------------------------------

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        validate(manifest)
        kind = manifest["kind"]
        ns = manifest["metadata"].get("namespace")
        crd = crd_for(manifest)
        if crd is not None:
            return self.custom.create_namespaced_custom_object(crd.group, crd.version, ns, crd.plural, manifest)
        creators = {
            "Namespace": lambda: self.core.create_namespace(manifest),
            "Secret": lambda: self.core.create_namespaced_secret(ns, manifest),
            "Service": lambda: self.core.create_namespaced_service(ns, manifest),
            "PersistentVolumeClaim": lambda: self.core.create_namespaced_persistent_volume_claim(ns, manifest),
            "Deployment": lambda: self.apps.create_namespaced_deployment(ns, manifest),
        }
        return self.plain(creators[kind]())

    def get_custom(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        crd = _crd_by_kind(kind)
        try:
            return self.custom.get_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_custom(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        crd = _crd_by_kind(kind)
        found = self.custom.list_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural,
                                                          label_selector=selector)
        return list(found.get("items") or [])

    def delete(self, ref: Owned) -> None:
        """Delete exactly the object pgdrill created: the UID precondition makes the apiserver
        refuse if someone replaced it with a same-named object."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=ref.uid),
                                      propagation_policy="Background")
        try:
            crd = _crd_by_kind(ref.kind) if ref.api_version.endswith("cnpg.io/v1") else None
            if crd is not None:
                self.custom.delete_namespaced_custom_object(crd.group, crd.version, ref.namespace, crd.plural,
                                                            ref.name, body=body)
            elif ref.kind == "Namespace":
                self.core.delete_namespace(ref.name, body=body)
            elif ref.kind == "Secret":
                self.core.delete_namespaced_secret(ref.name, ref.namespace, body=body)
            elif ref.kind == "Service":
                self.core.delete_namespaced_service(ref.name, ref.namespace, body=body)
            elif ref.kind == "PersistentVolumeClaim":
                self.core.delete_namespaced_persistent_volume_claim(ref.name, ref.namespace, body=body)
            elif ref.kind == "Deployment":
                self.apps.delete_namespaced_deployment(ref.name, ref.namespace, body=body)
            elif ref.kind == "Pod":
                self.core.delete_namespaced_pod(ref.name, ref.namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone already / UID changed: not ours any more
                raise

    def primary_pod(self, namespace: str, cluster: str) -> str:
        """The running (not terminating) pod CNPG labels as ``cluster``'s primary."""
        from pgdrill.backends.kubernetes import status as st
        from pgdrill.errors import CouldNotVerify

        pods = self.core.list_namespaced_pod(
            namespace, label_selector=f"{st.CLUSTER_LABEL}={cluster},{st.INSTANCE_ROLE_LABEL}=primary").items
        running = [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        if not running:
            raise CouldNotVerify(f"cluster {cluster} has no running primary pod")
        return running[0]

    def logs(self, namespace: str, pod: str, container: str | None = None, tail: int = 500) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod_log(pod, namespace, container=container, tail_lines=tail)
        except ApiException:
            return ""


def _crd_by_kind(kind: str) -> Any:
    from pgdrill.backends.kubernetes.schema import crd_schemas

    for entry in crd_schemas().values():
        if entry.kind == kind:
            return entry
    raise KeyError(kind)



def default_kubeconfig(explicit: str | None) -> str:
    if explicit:
        return os.path.expanduser(explicit)
    env = os.environ.get("KUBECONFIG")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")
