"""Timeline chain: recover v2 from v1, write on v2, then recover v3 from v2's own archive.

CNPG gives each recovered cluster its own serverName; v2 archives on a new timeline under
``postgres-cluster-v2``. A v3 recovered from that archive must hold every row of v1 and v2.
This flow (two recoveries, a backup of a recovered cluster) is beyond scenario data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdrill.drill import DrillContext, drill_result, evaluate, judge_recovery
from pgdrill.ledger import Ledger
from pgdrill.scenario import Expectation, Scenario
from pgdrill.workload import Workload, load_fixture

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

SCENARIO = Scenario(
    name="timeline-chain",
    description="v1 -> v2 (timeline 2, own serverName) -> backup of v2 -> writes on v2 -> v3 from v2's archive; "
                "every row of v1 and v2 must be in v3",
    tier="full",
    expect=Expectation("complete", recovered_rows=30, missing_rows=0),
    source_file=__file__,
)


@pytest.mark.drill
@pytest.mark.full
def test_timeline_chain(drill_backend, record_drill, pgdrill_config, pgdrill_run):
    backend = drill_backend(SCENARIO.name)
    ledger = Ledger(pgdrill_run.state_dir(SCENARIO.name) / "ledger.jsonl")
    ctx = DrillContext(SCENARIO, pgdrill_config, backend, pgdrill_run.state_dir(SCENARIO.name), FIXTURES)
    result, step = drill_result(ctx)
    fixture = load_fixture("moderation_event", FIXTURES)

    with step("v1: provision, seed 24 rows, base backup, 3 writes"):
        v1 = backend.create_source("postgres-cluster")
        workload = Workload(backend, v1, fixture, ledger)
        workload.seed()
        workload.write(24, "baseline")
        result.backups.append({"backup_id": backend.take_backup(v1), "server_name": v1.server_name})
        workload.write(3, "after_backup", switch_wal_each=True)
        backend.lose(v1, destroy_data=True)
    with step("v2: recover from v1's archive"):
        v2_name = backend.next_recovery_name("postgres-cluster")
        v2 = backend.recover(v1, v2_name, None, archive=True)
        assert v2.promoted and v2.cluster is not None, v2.fatal_lines
        assert v2.timeline == 2
    with step("v2: base backup, 3 writes on timeline 2, then lose v2"):
        result.backups.append({"backup_id": backend.take_backup(v2.cluster), "server_name": v2.cluster.server_name})
        Workload(backend, v2.cluster, fixture, ledger).write(3, "on_v2", switch_wal_each=True)
        backend.lose(v2.cluster, destroy_data=True)
    v3_name = backend.next_recovery_name("postgres-cluster")
    assert v3_name == "postgres-cluster-v3"
    judge_recovery(ctx, result, step, ledger, fixture, source=v2.cluster, recovery_name=v3_name)
    assert result.recovery["timeline"] == 3, result.recovery
    result.verdict, result.verdict_reasons = evaluate(SCENARIO.expect, result)
    record_drill(result)
    from pgdrill.plugin import assert_drill

    assert_drill(result)
