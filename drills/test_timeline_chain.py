"""Timeline chain: recover v2 from v1, write on v2, then recover v3 from v2's own archive.

CNPG gives each recovered cluster its own serverName; v2 archives on a new timeline under
``postgres-cluster-v2``. A v3 recovered from that archive must hold every row of v1 and v2.
This flow (two recoveries, a backup of a recovered cluster) is beyond scenario data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdrill.drill.context import Disaster, DrillContext, drill_result, guard
from pgdrill.drill.judge import judge
from pgdrill.drill.recovery import recover_and_verify
from pgdrill.drill.spec import Expectation, Scenario
from pgdrill.workload.fixture import load_fixture
from pgdrill.workload.ledger import Ledger
from pgdrill.workload.writer import Workload

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

    measures = []
    with guard(result):
        with step("v1: provision, seed 24 rows, base backup, 3 writes"):
            v1 = backend.create_source("postgres-cluster")
            workload = Workload(backend, v1, fixture, ledger)
            workload.seed()
            workload.write(24, "baseline")
            result.backups.append({"backup_id": backend.take_backup(v1), "server_name": v1.server_name})
            workload.write(3, "after_backup", switch_wal_each=True)
            workload.close()
        lost_v1 = Disaster.declare(ledger)
        backend.lose(v1, destroy_data=True)
        lost_v1.source_gone()
        v2_name = backend.next_recovery_name("postgres-cluster")
        # Hop 1 is a recovery path of its own, measured against the ledger like any other.
        hop1, v2 = recover_and_verify(ctx, result, step, ledger, fixture, v1, v2_name, lost_v1, path="v1->v2")
        measures.append(hop1)
        assert v2 is not None and v2.promoted and v2.cluster is not None, v2 and v2.fatal_lines
        assert v2.timeline == 2
        with step("v2: base backup, 3 writes on timeline 2, then lose v2"):
            result.backups.append({"backup_id": backend.take_backup(v2.cluster),
                                   "server_name": v2.cluster.server_name})
            on_v2 = Workload(backend, v2.cluster, fixture, ledger)
            on_v2.write(3, "on_v2", switch_wal_each=True)
            on_v2.close()
        lost_v2 = Disaster.declare(ledger)
        backend.lose(v2.cluster, destroy_data=True)
        lost_v2.source_gone()
        v3_name = backend.next_recovery_name("postgres-cluster")
        assert v3_name == "postgres-cluster-v3"
        hop2, _ = recover_and_verify(ctx, result, step, ledger, fixture, v2.cluster, v3_name, lost_v2, path="v2->v3")
        measures.append(hop2)
        assert result.recovery["timeline"] == 3, result.recovery
        result.set_measures([m for m in measures if m is not None])
        result.verdict, result.verdict_reasons = judge(SCENARIO.expect, result, pgdrill_config.targets.rto_seconds)
    record_drill(result)
    from pgdrill.plugin import assert_drill

    assert_drill(result)
