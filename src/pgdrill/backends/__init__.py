"""Backends: where drill clusters and their object store live (local, kind, k8s)."""

from .base import Backend, ClusterHandle, RecoveryOutcome, RecoveryTarget

__all__ = ["Backend", "ClusterHandle", "RecoveryOutcome", "RecoveryTarget"]
