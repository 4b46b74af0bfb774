"""Every scenario in scenarios/ as one drill: `pytest drills/ -k wal-gap`, `-m smoke`, `--backend kind`.

The smoke tier runs a second time on moto's S3 server (`<name>-moto`, `-k moto`): the same
PostgreSQL and barman-cloud against another S3 implementation, so no drill can pass only
because of one server's quirks.  Only the smoke tier: the full tier would double the CI time
for little more evidence (the S3 calls are the same ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdrill.drill.spec import load_scenarios
from pgdrill.plugin import assert_drill

SCENARIOS = load_scenarios(Path(__file__).resolve().parent.parent / "scenarios")
SECOND_S3 = "moto"


def _params() -> list[object]:
    params = []
    for s in SCENARIOS:
        marks = [getattr(pytest.mark, s.tier)]
        params.append(pytest.param(s, None, id=s.name, marks=marks))
        if s.tier == "smoke":
            params.append(pytest.param(s, SECOND_S3, id=f"{s.name}-{SECOND_S3}", marks=marks))
    return params


@pytest.mark.drill
@pytest.mark.parametrize(("scenario", "pgdrill_s3_mode"), _params())
def test_scenario(run_drill, scenario, pgdrill_s3_mode):
    assert_drill(run_drill(scenario))
