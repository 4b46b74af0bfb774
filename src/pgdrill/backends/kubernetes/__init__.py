"""Kubernetes backends: ``kind`` (a throw-away kind cluster) and ``k8s`` (an existing cluster)."""
