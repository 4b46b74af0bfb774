"""Kill the primary, with and without a streaming replica (issue 4): `pytest drills/ -k failover`.

Python drills, because a scenario file cannot express a replica, a concurrent load and a
promotion.  The procedures live in ``pgdrill.failover_drill`` (shared with bench/bench_failover.py);
the verdict comes from ``pgdrill.failover.judge``, which reads archiving from the bucket listing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgdrill.drill.node import run_crash_drill, run_failover_drill
from pgdrill.drill.node_plans import (
    CRASH_RESTART,
    FAILOVER,
    FAILOVER_ARCHIVER_BACKLOG,
    FAILOVER_ARCHIVING_STALLED,
    NodeDrillPlan,
)
from pgdrill.plugin import assert_drill
from pgdrill.results import Verdict

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _run(runner, plan: NodeDrillPlan, drill_backend, record_drill, pgdrill_config, pgdrill_run):
    backend = drill_backend(plan.name)
    result = runner(backend, pgdrill_config, plan, pgdrill_run.state_dir(plan.name), FIXTURES)
    record_drill(result)
    if result.verdict == Verdict.NOT_RUN:
        pgdrill_run.skipped(plan.name, "; ".join(result.verdict_reasons))
        pytest.skip("; ".join(result.verdict_reasons))
    return result


@pytest.mark.drill
@pytest.mark.parametrize("plan", [
    pytest.param(FAILOVER, id=FAILOVER.name, marks=getattr(pytest.mark, FAILOVER.tier)),
    pytest.param(FAILOVER_ARCHIVER_BACKLOG, id=FAILOVER_ARCHIVER_BACKLOG.name,
                 marks=getattr(pytest.mark, FAILOVER_ARCHIVER_BACKLOG.tier)),
    pytest.param(FAILOVER_ARCHIVING_STALLED, id=FAILOVER_ARCHIVING_STALLED.name,
                 marks=getattr(pytest.mark, FAILOVER_ARCHIVING_STALLED.tier)),
])
def test_primary_kill_with_replica_failover(plan, drill_backend, record_drill, pgdrill_config, pgdrill_run):
    result = _run(run_failover_drill, plan, drill_backend, record_drill, pgdrill_config, pgdrill_run)
    assert_drill(result)
    if plan.expect.outcome == "complete":
        # Belt and braces on the #842 question: judged from the bucket, not pg_stat_archiver.
        assert result.archive["expected_timeline"] == 2 and 2 in result.archive["history_files"]
        assert result.archive["missing_expected"] == [] and result.archive["gaps"] == []
    if plan.archive_to_nowhere_after_event:
        # The point of the control: the server's own view says all is well.
        stat = result.archive["pg_stat_archiver"]
        assert stat["failed_count"] == 0 and stat["last_archived_wal"] >= result.archive["expected_segments"][-1]


@pytest.mark.drill
@pytest.mark.parametrize("plan", [pytest.param(CRASH_RESTART, id=CRASH_RESTART.name,
                                               marks=getattr(pytest.mark, CRASH_RESTART.tier))])
def test_primary_kill_without_replica_crash_recovery(plan, drill_backend, record_drill, pgdrill_config,
                                                     pgdrill_run):
    result = _run(run_crash_drill, plan, drill_backend, record_drill, pgdrill_config, pgdrill_run)
    assert_drill(result)
    (path,) = result.measures
    assert path["path"] == "crash_restart" and path["lost_writes"] == 0, path
