"""The result of one drill: the single record every report (JSON, HTML, JUnit) renders.

Schema: ``src/pgdrill/schemas/drill-result-v1.json`` (documented in docs/results.md).
Bump ``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding

SCHEMA_VERSION = 1


class Verdict(str, enum.Enum):
    PASSED = "passed"  # the expectation held and every detector ran
    FAILED = "failed"  # verified: the expectation did not hold
    COULD_NOT_VERIFY = "could_not_verify"  # something needed to know did not run
    NOT_RUN = "not_run"  # skipped (backend unavailable, deselected)


class DetectorStatus(str, enum.Enum):
    CLEAN = "clean"  # ran, found nothing
    FINDINGS = "findings"  # ran, found something
    COULD_NOT_VERIFY = "could_not_verify"


@dataclass
class DetectorOutcome:
    name: str
    status: DetectorStatus
    summary: str
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "finding_codes": [f.code for f in self.findings],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class Timing:
    """RTO and its phases, in seconds."""

    total: float | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"total_s": _round(self.total), "phases_s": {k: _round(v) for k, v in self.phases.items()}}


@dataclass
class DrillResult:
    drill: str
    scenario: dict[str, Any]
    backend: dict[str, Any]
    started_at: str
    finished_at: str | None = None
    verdict: Verdict = Verdict.COULD_NOT_VERIFY
    verdict_reasons: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    backups: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    disaster_declared_at: str | None = None
    recovery: dict[str, Any] = field(default_factory=dict)
    rto: Timing = field(default_factory=Timing)
    rpo: dict[str, Any] = field(default_factory=dict)
    ledger: dict[str, Any] = field(default_factory=dict)
    archive: dict[str, Any] = field(default_factory=dict)
    detectors: list[DetectorOutcome] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    integrity: dict[str, Any] = field(default_factory=dict)
    """Per-relation physical and content integrity (see pgdrill.integrity)."""
    audit: dict[str, Any] = field(default_factory=dict)
    """What ``pgdrill audit`` reported on the source archive before and after the faults."""
    keep: dict[str, Any] = field(default_factory=dict)

    def finding_codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def add_detector(self, outcome: DetectorOutcome) -> None:
        self.detectors.append(outcome)
        self.findings.extend(outcome.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "drill": self.drill,
            "scenario": self.scenario,
            "backend": self.backend,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "verdict": self.verdict.value,
            "verdict_reasons": self.verdict_reasons,
            "targets": self.targets,
            "source": self.source,
            "backups": self.backups,
            "faults": self.faults,
            "disaster_declared_at": self.disaster_declared_at,
            "recovery": self.recovery,
            "rto": self.rto.to_dict(),
            "rpo": self.rpo,
            "ledger": self.ledger,
            "archive": self.archive,
            "detectors": [d.to_dict() for d in self.detectors],
            "findings": [f.to_dict() for f in self.findings],
            "steps": self.steps,
            "integrity": self.integrity,
            "audit": self.audit,
            "keep": self.keep,
        }

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n")
        return path


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary_line(result: dict[str, Any]) -> str:
    """A short human summary of a result dict (as written to JSON)."""
    ledger = result.get("ledger", {})
    rto = result.get("rto", {}).get("total_s")
    rpo = result.get("rpo", {}).get("seconds")
    codes = sorted({f["code"] for f in result.get("findings", [])})
    parts = [
        f"{result['drill']}: {result['verdict'].upper()}",
        f"rows {ledger.get('recovered', '?')}/{ledger.get('committed', '?')}",
        f"RTO {rto:.1f}s" if isinstance(rto, (int, float)) else "RTO n/a",
        f"RPO {rpo:.1f}s" if isinstance(rpo, (int, float)) else "RPO n/a",
        "findings: " + (", ".join(codes) if codes else "none"),
    ]
    return " | ".join(parts)


def as_plain(obj: Any) -> Any:
    """dataclass → dict helper for evidence payloads."""
    return asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj
