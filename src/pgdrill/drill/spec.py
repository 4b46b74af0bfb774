"""Declarative drill definitions (``scenarios/*.yaml``), loaded strictly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import yaml

from pgdrill import strict
from pgdrill.errors import ConfigError
from pgdrill.faults.base import FaultSpec
from pgdrill.faults.registry import load_faults
from pgdrill.findings import catalogue


@dataclass(frozen=True)
class WorkloadSpec:
    fixture: str = "moderation_event"
    """Seed data set: ``fixtures/<fixture>.yaml`` (schema, owner role, ledger write statements)."""
    baseline_rows: int = 24
    """Rows committed before the first base backup (the ADR used 24)."""
    base_backups: int = 1
    """Base backups to take; with more than one, ``writes_between_backups`` rows go between them."""
    writes_between_backups: int = 0
    writes_after_backup: int = 3
    """Rows committed after the (last) base backup, one transaction each (the ADR used 3)."""
    segment_per_write: bool = True
    """Switch WAL after each write so every write lives in its own segment (ADR: 8, 9, A)."""
    steady_seconds: float = 0.0
    """Then a steady load for this long, one row every ``write_interval_seconds``, with no
    forced switch: WAL reaches the bucket only when a segment fills or ``archive_timeout`` fires."""
    write_interval_seconds: float = 0.5
    archive_timeout_seconds: int | None = None
    """Override ``archive.archive_timeout_seconds`` for this scenario (e.g. 10 to bound RPO)."""


@dataclass(frozen=True)
class RecoverySpec:
    target: Literal["latest", "lsn", "time", "name"] = "latest"
    """latest: the end of the archive, as CNPG does without ``recoveryTarget``; lsn/time/name:
    point-in-time recovery to just after post-backup write number ``after_write``."""
    after_write: int | None = None
    """For PITR: the target sits right after this post-backup write (1-based); later writes
    must be absent after recovery, earlier ones present (a two-sided boundary check)."""
    cluster_name: str | None = None
    """Recover into this cluster/serverName instead of the next free ``<source>-vN``."""


@dataclass(frozen=True)
class PathExpectation:
    """What one recovery path (by its name in ``measures``) must measure."""

    lost_writes: int | list[int] | None = None
    """Exactly this many acknowledged writes lost, or ``[min, max]``."""
    rpo_seconds: list[float] | None = None
    """``[min, max]`` for the path's achieved RPO."""


@dataclass(frozen=True)
class Expectation:
    outcome: Literal["complete", "loss_detected", "bounded_loss", "refused"]
    """complete: every expected ledger row back and no loss finding; loss_detected: pgdrill must
    name the loss; bounded_loss: writes not yet archived may be lost (the accepted RPO risk) but
    no gap or damage, and RPO <= ``max_rpo_seconds``; refused: the recovery must be refused
    before anything is written."""
    findings: list[str] = field(default_factory=list)
    """Finding codes that must appear."""
    recovered_rows: int | None = None
    missing_rows: int | None = None
    max_rpo_seconds: float | None = None
    """Upper bound for the measured RPO (e.g. archive_timeout plus a margin)."""
    lost_writes: int | list[int] | None = None
    """Acknowledged writes lost on the worst recovery path: exactly N, or ``[min, max]``.
    Required for ``loss_detected`` (docs/measures.md)."""
    rpo_seconds: list[float] | None = None
    """``[min, max]`` for the worst path's achieved RPO. Required for ``loss_detected``."""
    max_rto_seconds: float | None = None
    """Bound for every path's RTO; default: the configured ``targets.rto_seconds``."""
    allowed: list[str] = field(default_factory=list)
    """Finding codes that may appear without being required (e.g. a loss that timing decides)."""
    paths: dict[str, PathExpectation] = field(default_factory=dict)
    """Per recovery path (``failover``, ``s3_recovery``...): its own lost writes and RPO range."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    expect: Expectation
    tier: Literal["smoke", "full"] = "full"
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
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
    text = strict.read_text(path, "scenario file", "give a scenario file such as scenarios/wal-gap.yaml"
                     + (" (or --scenarios-dir for a folder)" if path.is_dir() else ""))
    try:
        data = yaml.safe_load(text)
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
    for code in [*scenario.expect.findings, *scenario.expect.allowed]:
        if code not in known:
            raise ConfigError(f"{where}: expect.findings: unknown finding code {code!r} "
                              f"(allowed: {', '.join(sorted(known))})")
    scenario = replace(scenario, faults=faults)
    _check_consistency(scenario, where)
    if scenario.name != path.stem:
        raise ConfigError(f"{where}: name {scenario.name!r} must match the file name {path.stem!r}")
    return replace(scenario, source_file=where)


def _check_consistency(scenario: Scenario, where: str) -> None:
    workload, recovery = scenario.workload, scenario.recovery
    if recovery.target == "latest":
        if recovery.after_write is not None:
            raise ConfigError(f"{where}: recovery.after_write only applies to target lsn, time or name")
    else:
        if recovery.after_write is None:
            raise ConfigError(f"{where}: recovery.after_write is required for target {recovery.target!r}")
        if not 1 <= recovery.after_write < workload.writes_after_backup:
            raise ConfigError(f"{where}: recovery.after_write must be between 1 and "
                              f"workload.writes_after_backup - 1 ({workload.writes_after_backup - 1}): "
                              "a write after the target must exist to prove it is absent")
    expect = scenario.expect
    if expect.outcome == "loss_detected" and (expect.lost_writes is None or expect.rpo_seconds is None):
        raise ConfigError(f"{where}: expect.lost_writes and expect.rpo_seconds are required for outcome "
                          "'loss_detected' (how many acknowledged writes are lost, and the RPO range)")
    for label, spec in [("expect", expect), *((f"expect.paths.{k}", v) for k, v in expect.paths.items())]:
        check_ranges(spec.lost_writes, spec.rpo_seconds, f"{where}: {label}")
    if scenario.expect.outcome == "bounded_loss" and scenario.expect.max_rpo_seconds is None:
        raise ConfigError(f"{where}: expect.max_rpo_seconds is required for outcome 'bounded_loss'")
    if workload.base_backups < 1:
        raise ConfigError(f"{where}: workload.base_backups must be at least 1")
    if workload.writes_between_backups and workload.base_backups == 1:
        raise ConfigError(f"{where}: workload.writes_between_backups needs workload.base_backups >= 2")


def check_ranges(lost_writes: int | list[int] | None, rpo_seconds: list[float] | None, where: str) -> None:
    if isinstance(lost_writes, list) and (len(lost_writes) != 2 or not 0 <= lost_writes[0] <= lost_writes[1]):
        raise ConfigError(f"{where}.lost_writes must be a number or [min, max] with 0 <= min <= max")
    if isinstance(lost_writes, int) and lost_writes < 0:
        raise ConfigError(f"{where}.lost_writes must not be negative")
    if rpo_seconds is not None and (len(rpo_seconds) != 2 or not 0 <= rpo_seconds[0] <= rpo_seconds[1]):
        raise ConfigError(f"{where}.rpo_seconds must be [min, max] with 0 <= min <= max")


def load_scenarios(directory: Path) -> list[Scenario]:
    if not directory.is_dir():
        raise ConfigError(f"scenarios directory {directory} "
                          + ("is not a directory" if directory.exists() else "does not exist")
                          + ": fix --scenarios-dir")
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no scenarios (*.yaml) in {directory}")
    return [load_scenario(f) for f in files]
