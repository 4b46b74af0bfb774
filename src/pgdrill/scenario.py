"""Declarative drill definitions (``scenarios/*.yaml``), loaded strictly.

A scenario states its workload, the faults to inject, the recovery target and, always,
the expected outcome, so a drill can never pass by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

import yaml

from . import strict
from .errors import ConfigError
from .findings import catalogue

@dataclass(frozen=True)
class Workload:
    fixture: str = "moderation_event"
    """Seed data set: ``fixtures/<fixture>.yaml`` (schema, owner role, ledger write statements)."""
    baseline_rows: int = 24
    """Rows committed before the base backup (the ADR used 24)."""
    writes_after_backup: int = 3
    """Rows committed after the base backup, one transaction each (the ADR used 3)."""
    segment_per_write: bool = True
    """Switch WAL after each write so every write lives in its own segment (ADR: 8, 9, A)."""


@dataclass(frozen=True)
class FaultType:
    """A fault kind scenarios may name: its parameters dataclass and its injector."""

    kind: str
    params: type
    injector: Callable[..., Any]
    description: str


#: Filled by ``pgdrill.faults`` (and other fault modules) through ``register_fault``.
FAULT_TYPES: dict[str, FaultType] = {}


def register_fault(kind: str, params: type, injector: Callable[..., Any], description: str) -> None:
    if kind in FAULT_TYPES:
        raise ValueError(f"fault kind {kind!r} is already registered")
    FAULT_TYPES[kind] = FaultType(kind, params, injector, description)


@dataclass(frozen=True)
class FaultSpec:
    kind: str
    params: Any
    """An instance of the kind's parameters dataclass."""

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": self.kind, **asdict(self.params)}


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
    """Loaded by ``load_scenario`` from ``[{kind: ..., <params>}]`` (not by the strict loader)."""
    recovery: RecoverySpec = field(default_factory=RecoverySpec)
    source_file: str = ""

    def to_dict(self) -> dict[str, object]:
        from dataclasses import asdict

        data = asdict(self)
        data["faults"] = [f.to_dict() for f in self.faults]
        return data


def load_scenario(path: Path) -> Scenario:
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a scenario must be a mapping")
    if "source_file" in data:
        raise ConfigError(f"{where}: unknown key source_file (it is set by pgdrill)")
    raw_faults = data.get("faults", [])
    scenario = strict.load(Scenario, {k: v for k, v in data.items() if k != "faults"}, where)
    faults = load_faults(raw_faults, where)
    known = catalogue()
    for code in scenario.expect.findings:
        if code not in known:
            raise ConfigError(f"{where}: expect.findings: unknown finding code {code!r} "
                              f"(allowed: {', '.join(sorted(known))})")
    scenario = replace(scenario, faults=faults)
    if scenario.name != path.stem:
        raise ConfigError(f"{where}: name {scenario.name!r} must match the file name {path.stem!r}")
    return replace(scenario, source_file=where)


def load_faults(raw: Any, where: str) -> list[FaultSpec]:
    from . import faults as _register_builtin_faults  # noqa: F401  (fills FAULT_TYPES)

    if not isinstance(raw, list):
        raise ConfigError(f"{where}: faults must be a list")
    specs = []
    for index, item in enumerate(raw):
        path = f"faults[{index}]"
        if not isinstance(item, dict) or "kind" not in item:
            raise ConfigError(f"{where}: {path} needs a kind (allowed: {', '.join(sorted(FAULT_TYPES))})")
        kind = item["kind"]
        if kind not in FAULT_TYPES:
            raise ConfigError(f"{where}: {path}.kind = {kind!r} is not allowed "
                              f"(allowed: {', '.join(map(repr, sorted(FAULT_TYPES)))})")
        params = strict.load(FAULT_TYPES[kind].params, {k: v for k, v in item.items() if k != "kind"},
                             where, path)
        specs.append(FaultSpec(kind, params))
    return specs


def load_scenarios(directory: Path) -> list[Scenario]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no scenarios (*.yaml) in {directory}")
    return [load_scenario(f) for f in files]
