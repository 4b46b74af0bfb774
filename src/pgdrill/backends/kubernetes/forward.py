"""``kubectl port-forward`` to a pod or service, and the drill's bucket through one.

SQL and pg_amcheck reach a cluster's primary pod through a ``PortForward``; the object store
reaches in-namespace MinIO through one that survives MinIO restarts (the S3 outage fault).
"""

from __future__ import annotations

import socket
import subprocess
import time

from pgdrill.archive.store import ObjectStore, S3Credentials
from pgdrill.backends.kubernetes.kube import Kube
from pgdrill.backends.naming import free_port
from pgdrill.errors import CouldNotVerify


class PortForward:
    """``kubectl port-forward`` on a fixed local port, restarted when its pod went away."""

    def __init__(self, kube: Kube, namespace: str, target: str, remote_port: int):
        self.kube, self.namespace, self.target, self.remote_port = kube, namespace, target, remote_port
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def ensure(self, timeout: float = 20.0) -> int:
        if self._proc is not None and self._proc.poll() is None and _can_connect(self.port):
            return self.port
        self.close()
        self._proc = subprocess.Popen(
            [*self.kube.kubectl_base(), "port-forward", "-n", self.namespace, "--address", "127.0.0.1",
             self.target, f"{self.port}:{self.remote_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (self._proc.stderr.read() if self._proc.stderr else b"").decode(errors="replace").strip()
                raise CouldNotVerify(f"kubectl port-forward {self.target} failed: {err.splitlines()[-1] if err else 'exited'}")
            if _can_connect(self.port):
                return self.port
            time.sleep(0.2)
        self.close()
        raise CouldNotVerify(f"kubectl port-forward {self.target} did not open port {self.port} in {timeout:.0f}s")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
            self._proc = None


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class ForwardedObjectStore(ObjectStore):
    """The drill's bucket through a port-forward to MinIO that survives MinIO restarts."""

    def __init__(self, forward: PortForward, credentials: S3Credentials, bucket: str):
        self._forward = forward
        super().__init__(f"http://127.0.0.1:{forward.port}", credentials, bucket)

    def _alive(self) -> None:
        self._forward.ensure()

    def list(self, prefix: str):  # type: ignore[override]
        self._alive()
        return super().list(prefix)

    def list_prefixes(self, prefix: str) -> list[str]:
        self._alive()
        return super().list_prefixes(prefix)

    def get(self, key: str) -> bytes:
        self._alive()
        return super().get(key)

    def put(self, key: str, body: bytes) -> None:
        self._alive()
        super().put(key, body)

    def delete(self, key: str) -> None:
        self._alive()
        super().delete(key)

    def check_access(self) -> None:
        self._alive()
        super().check_access()
