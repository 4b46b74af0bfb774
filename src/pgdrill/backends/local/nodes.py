"""One PostgreSQL node of the local backend: the handle drills see and the instance behind it.

Its own module so the backend and its replica/integrity helpers share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgdrill.backends.base import ClusterHandle
from pgdrill.backends.local.postgres import Instance


@dataclass
class Node:
    handle: ClusterHandle
    instance: Instance
