"""What every fault shares: its context (the drill's backend, source and ledger), its record
(exactly what it did, as evidence), its kind and the spec a scenario gives.

Faults only touch the drill's own clusters and the drill's own S3 prefix.  The kinds scenarios
may name are the explicit table in ``pgdrill.faults.registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pgdrill.backends.base import Backend, ClusterHandle
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload

Position = Literal["first", "middle", "last"]


@dataclass
class FaultRecord:
    kind: str
    description: str
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "at": self.at, "evidence": self.evidence}


@dataclass
class FaultContext:
    backend: Backend
    source: ClusterHandle
    ledger: Ledger
    segment_size: int
    workload: Workload | None = None
    recovery_name: str | None = None
    """The cluster/serverName the drill will recover into."""


@dataclass(frozen=True)
class NoParams:
    pass


@dataclass(frozen=True)
class FaultType:
    """A fault kind scenarios may name: its parameters dataclass and its injector."""

    kind: str
    params: type
    injector: Callable[..., Any]
    description: str


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    params: Any
    """An instance of the kind's parameters dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self.params)}
