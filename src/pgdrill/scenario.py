"""Declarative drill definitions (``scenarios/*.yaml``), loaded strictly.

A scenario states its workload, the faults to inject, the recovery target and, always,
the expected outcome, so a drill can never pass by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from . import strict
from .errors import ConfigError
from .findings import catalogue

FaultKind = Literal["delete_wal", "lose_cluster"]

#: Parameters each fault kind accepts (others are rejected by name).
FAULT_PARAMETERS: dict[str, set[str]] = {
    "delete_wal": {"position"},
    "lose_cluster": set(),
}


@dataclass(frozen=True)
class Workload:
    fixture: str = "moderation_event"
    """Seed data set: ``fixtures/<fixture>.sql`` (schema, owner role and baseline rows)."""
    baseline_rows: int = 24
    """Rows committed before the base backup (the ADR used 24)."""
    writes_after_backup: int = 3
    """Rows committed after the base backup, one transaction each (the ADR used 3)."""
    segment_per_write: bool = True
    """Switch WAL after each write so every write lives in its own segment (ADR: 8, 9, A)."""


@dataclass(frozen=True)
class FaultSpec:
    kind: FaultKind
    position: Literal["first", "middle", "last"] | None = None
    """For delete_wal: which of the segments holding post-backup writes to delete."""


@dataclass(frozen=True)
class RecoverySpec:
    target: Literal["latest"] = "latest"
    """Recover to the end of the archive, as CNPG does without ``recoveryTarget``."""


@dataclass(frozen=True)
class Expectation:
    outcome: Literal["complete", "loss_detected"]
    """complete: every ledger row back, no loss finding; loss_detected: pgdrill must name the loss."""
    findings: list[str] = field(default_factory=list)
    """Finding codes that must appear."""
    recovered_rows: int | None = None
    missing_rows: int | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: Expectation
    tier: Literal["smoke", "full"] = "full"
    workload: Workload = field(default_factory=Workload)
    faults: list[FaultSpec] = field(default_factory=list)
    recovery: RecoverySpec = field(default_factory=RecoverySpec)
    source_file: str = ""

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        return asdict(self)


def load_scenario(path: Path) -> Scenario:
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if isinstance(data, dict) and "source_file" in data:
        raise ConfigError(f"{where}: unknown key source_file (it is set by pgdrill)")
    scenario = strict.load(Scenario, data, where)
    known = catalogue()
    for code in scenario.expect.findings:
        if code not in known:
            raise ConfigError(f"{where}: expect.findings: unknown finding code {code!r} "
                              f"(allowed: {', '.join(sorted(known))})")
    for index, fault in enumerate(scenario.faults):
        given = {k for k, v in vars(fault).items() if k != "kind" and v is not None}
        extra = given - FAULT_PARAMETERS[fault.kind]
        if extra:
            raise ConfigError(f"{where}: faults[{index}] ({fault.kind}) does not take "
                              f"{', '.join(sorted(extra))} (allowed: {', '.join(sorted(FAULT_PARAMETERS[fault.kind])) or 'none'})")
        if fault.kind == "delete_wal" and fault.position is None:
            raise ConfigError(f"{where}: faults[{index}].position is required for delete_wal "
                              f"(allowed: 'first', 'middle', 'last')")
    if scenario.name != path.stem:
        raise ConfigError(f"{where}: name {scenario.name!r} must match the file name {path.stem!r}")
    return _with_source(scenario, where)


def _with_source(scenario: Scenario, where: str) -> Scenario:
    from dataclasses import replace

    return replace(scenario, source_file=where)


def load_scenarios(directory: Path) -> list[Scenario]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no scenarios (*.yaml) in {directory}")
    return [load_scenario(f) for f in files]
