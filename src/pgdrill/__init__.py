"""pgdrill: disaster-recovery drills for PostgreSQL backed up with barman-cloud to S3.

The public API for drill authors (``from pgdrill import run_scenario, Scenario, ...``); each
name lives in the package that owns it:

- ``pgdrill.drill``: scenarios (``spec``), the runner, recovery and verification of one path, the
  one judge, measures (lost writes, RPO, RTO), node-level drills;
- ``pgdrill.workload``: fixtures, the ledger and the writer;
- ``pgdrill.faults``: fault kinds (one table in ``registry``);
- ``pgdrill.detectors``: ledger, archive, target, integrity and failover detectors;
- ``pgdrill.archive`` and ``pgdrill.postgres``: the barman-cloud archive and PostgreSQL's formats;
- ``pgdrill.backends``: local, kind and k8s behind one protocol;
- ``pgdrill.findings``: every finding code; ``pgdrill.audit``, ``pgdrill.reports``.
"""

from __future__ import annotations

from pgdrill._lazy import lazy_names

__version__ = "0.1.0"

_PUBLIC = {
    "Config": "pgdrill.config",
    "load_config": "pgdrill.config",
    "Scenario": "pgdrill.drill.spec",
    "Expectation": "pgdrill.drill.spec",
    "load_scenario": "pgdrill.drill.spec",
    "load_scenarios": "pgdrill.drill.spec",
    "DrillContext": "pgdrill.drill.context",
    "Disaster": "pgdrill.drill.context",
    "drill_result": "pgdrill.drill.context",
    "guard": "pgdrill.drill.context",
    "run_scenario": "pgdrill.drill.runner",
    "recover_and_verify": "pgdrill.drill.recovery",
    "judge": "pgdrill.drill.judge",
    "measure_path": "pgdrill.drill.measures",
    "Workload": "pgdrill.workload.writer",
    "Ledger": "pgdrill.workload.ledger",
    "load_fixture": "pgdrill.workload.fixture",
    "RecoveryTarget": "pgdrill.backends.base",
    "Backend": "pgdrill.backends.base",
    "make_backend": "pgdrill.backends.factory",
    "Finding": "pgdrill.findings",
    "Severity": "pgdrill.findings",
    "DrillResult": "pgdrill.results",
    "DetectorOutcome": "pgdrill.results",
    "DetectorStatus": "pgdrill.results",
    "Verdict": "pgdrill.results",
    "assert_drill": "pgdrill.plugin",
}
__all__ = [*sorted(_PUBLIC), "__version__"]


__getattr__, __dir__ = lazy_names(__name__, _PUBLIC)
