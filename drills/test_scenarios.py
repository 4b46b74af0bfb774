"""Every scenario in scenarios/ as one drill: `pytest drills/ -k wal-gap`, `-m smoke`, `--backend kind`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdrill.drill.spec import load_scenarios
from pgdrill.plugin import assert_drill

SCENARIOS = load_scenarios(Path(__file__).resolve().parent.parent / "scenarios")


@pytest.mark.drill
@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, id=s.name, marks=[getattr(pytest.mark, s.tier)]) for s in SCENARIOS],
)
def test_scenario(run_drill, scenario):
    assert_drill(run_drill(scenario))
