"""The result of one drill: the single record every report (JSON, HTML, JUnit) renders.

Schema: ``src/pgdrill/schemas/drill-result-v1.json`` (documented in docs/results.md).
Bump ``SCHEMA_VERSION`` on any incompatible change.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgdrill.findings import Finding

SCHEMA_VERSION = 1


class Verdict(str, enum.Enum):
    PASSED = "passed"  # the expectation held and every detector ran
    FAILED = "failed"  # verified: the expectation did not hold
    COULD_NOT_VERIFY = "could_not_verify"  # something needed to know did not run
    NOT_RUN = "not_run"  # skipped (backend unavailable, deselected)
    ERROR = "error"  # the drill raised or was interrupted: nothing about it is known


class DetectorStatus(str, enum.Enum):
    CLEAN = "clean"  # ran, found nothing
    FINDINGS = "findings"  # ran, found something
    COULD_NOT_VERIFY = "could_not_verify"
    NOT_APPLICABLE = "not_applicable"  # nothing to check here, and the summary says why


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
    """The headline path's RTO: contiguous phases that add up to ``total`` (docs/measures.md)."""

    total: float | None = None
    phases: dict[str, float] = field(default_factory=dict)
    excluded: dict[str, float] = field(default_factory=dict)
    """Harness waits between the disaster and the end of the last phase, not part of the RTO."""
    kind: str | None = None
    """``archive`` (restore from the bucket), ``failover`` or ``crash``: separate series in history."""
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"total_s": _round(self.total), "phases_s": {k: _round(v) for k, v in self.phases.items()},
                "excluded_s": {k: _round(v) for k, v in self.excluded.items()}, "kind": self.kind,
                "path": self.path}


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
    """The headline: the worst recovery path's RPO and lost writes, naming the path."""
    measures: list[dict[str, Any]] = field(default_factory=list)
    """One record per recovery path (pgdrill.measures.PathMeasure.to_dict)."""
    error: dict[str, Any] = field(default_factory=dict)
    """For verdict ``error``: what was raised (type, message, where)."""
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

    def set_measures(self, measures: list[Any]) -> None:
        """Record every path's measure; the worst becomes the headline RPO and RTO."""
        from pgdrill.drill.measures import worst_path

        self.measures = [m.to_dict() for m in measures]
        worst = worst_path(measures)
        if worst is None:
            return
        self.rpo = {"path": worst.path, "kind": worst.kind, "seconds": _round(worst.rpo_seconds),
                    "lost_writes": worst.lost_writes, "expected_writes": worst.expected,
                    "present_writes": worst.present, "rpo_basis": worst.rpo_basis,
                    "rpo_lower_bound": worst.rpo_lower_bound, "last_committed": worst.last_acknowledged,
                    "last_recovered": worst.prefix_end, "lost": worst.lost,
                    "lost_out_of_order": [w["row_id"] for w in worst.survivors_after_first_loss],
                    "in_doubt": worst.in_doubt}
        rto = worst.rto or {}
        self.rto = Timing(rto.get("total_s"), dict(rto.get("phases_s", {})), dict(rto.get("excluded_s", {})),
                          worst.kind, worst.path)

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
            "measures": self.measures,
            "error": self.error,
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


def _path_figures(measure: dict[str, Any]) -> str:
    rto = (measure.get("rto") or {}).get("total_s")
    rpo = measure.get("rpo_seconds")
    if measure.get("expected_writes") is None:  # a restore-test of a real archive: no ledger
        return ((f"observed RPO {rpo:.1f}s" if isinstance(rpo, (int, float)) else "no ledger") + ", "
                + (f"RTO {rto:.1f}s" if isinstance(rto, (int, float)) else "RTO n/a"))
    return (f"writes {measure.get('present_writes', '?')}/{measure.get('expected_writes', '?')}, "
            f"lost {measure.get('lost_writes', '?')}, "
            + (f"RPO {rpo:.1f}s" if isinstance(rpo, (int, float)) else "RPO n/a") + ", "
            + (f"RTO {rto:.1f}s" if isinstance(rto, (int, float)) else "RTO n/a"))


def summary_line(result: dict[str, Any]) -> str:
    """A short human summary of a result dict (as written to JSON): the worst path first."""
    codes = sorted({f["code"] for f in result.get("findings", [])})
    measures = result.get("measures") or []
    headline = (result.get("rpo") or {}).get("path")
    parts = [f"{result['drill']}: {result['verdict'].upper()}"]
    ordered = sorted(measures, key=lambda m: m.get("path") != headline)
    for index, measure in enumerate(ordered):
        label = f"worst path {measure['path']}" if index == 0 and len(ordered) > 1 else f"path {measure['path']}"
        parts.append(f"{label}: {_path_figures(measure)}")
    if not measures:
        parts.append("no recovery path measured")
    if result.get("error"):
        parts.append(f"error: {result['error'].get('type')}: {result['error'].get('message')}")
    parts.append("findings: " + (", ".join(codes) if codes else "none"))
    return " | ".join(parts)
