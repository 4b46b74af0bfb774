"""pgdrill: disaster-recovery drills for PostgreSQL backed up with barman-cloud to S3.

Public surface: ``load_config``, ``load_scenario``, ``run_scenario``, ``Finding``, ``DrillResult``.
"""

from .config import Config, load_config
from .findings import Finding, Severity
from .results import DrillResult, Verdict
from .scenario import Scenario, load_scenario, load_scenarios

__version__ = "0.1.0"

__all__ = [
    "Config", "DrillResult", "Finding", "Scenario", "Severity", "Verdict",
    "load_config", "load_scenario", "load_scenarios", "__version__",
]
