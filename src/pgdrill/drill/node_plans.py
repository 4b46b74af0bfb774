"""The node-level drills shipped with pgdrill, as data: what each does and what it must measure.

Run by ``pgdrill.drill.node``; ``drills/test_failover.py`` and ``bench/bench_failover.py`` use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgdrill.config import Config
from pgdrill.drill.spec import Expectation, PathExpectation


@dataclass(frozen=True)
class NodeDrillPlan:
    """One node-level drill.  Defaults: the smoke-tier failover drill."""

    name: str = "primary-kill-failover"
    tier: str = "smoke"
    description: str = ""
    fixture: str = "moderation_event"
    baseline_rows: int = 24
    load_seconds: float = 3.0
    """Steady load before the kill: one committed ledger row after another, no forced switch."""
    load_interval_seconds: float = 0.0
    """Pause between two writes of the load (0: as fast as one client commits)."""
    backlog_segments: int = 0
    """Right before the kill, close this many segments without waiting for the archiver, so the
    kill hits while archiving is behind (the archiver uploads one segment at a time)."""
    rows_after_event: int = 3
    """Rows written on the surviving primary after the event, each switched into its own segment
    (not waited for): archiving must upload them."""
    archive_wait_seconds: float = 90.0
    recover_from_s3: bool = True
    expect: Expectation = field(default_factory=lambda: Expectation("complete"))
    """What the drill must measure and report (the same expectation as a scenario's)."""
    archive_to_nowhere_after_event: bool = False
    """Negative control for plugin-barman-cloud#842: right after the event, the surviving primary's
    archive_command becomes ``/bin/true``, so pg_stat_archiver reports every segment archived while
    nothing reaches the bucket.  The drill must still report archiving as stalled."""


def rto_bound(plan: NodeDrillPlan, config: Config) -> float:
    return plan.expect.max_rto_seconds if plan.expect.max_rto_seconds is not None else config.targets.rto_seconds


#: The drills shipped in drills/test_failover.py (and timed by bench/bench_failover.py).
#: Lost-write counts under a concurrent load depend on timing, so their expectations are ranges.
FAILOVER = NodeDrillPlan(
    name="primary-kill-failover", tier="smoke",
    description="SIGKILL the primary under a steady write load, promote the async streaming replica; "
                "archiving must resume on timeline 2 under the same serverName with no gap",
    # Asynchronous replication may lose the newest commits at the kill (measured, a warning);
    # the archive must then lose nothing more (SILENT_DATA_LOSS otherwise).
    expect=Expectation("complete", paths={"failover": PathExpectation(lost_writes=[0, 50]),
                                          "s3_recovery": PathExpectation(lost_writes=[0, 50])}))


FAILOVER_ARCHIVER_BACKLOG = NodeDrillPlan(
    name="primary-kill-failover-archiver-backlog", tier="full", backlog_segments=3,
    description="as primary-kill-failover, but the kill hits while the archiver is behind: the segments the "
                "old primary never uploaded are lost for good and pgdrill must say so",
    expect=Expectation("loss_detected", findings=["WAL_GAP", "UNARCHIVED_WAL_LOST_AT_FAILOVER", "SILENT_DATA_LOSS"],
                       allowed=["REPLAY_STOPPED_EARLY", "RECOVERY_TARGET_UNREACHED", "WAL_SEGMENT_UNREADABLE"],
                       lost_writes=[1, 100000], rpo_seconds=[0.0, 120.0],
                       paths={"failover": PathExpectation(lost_writes=[0, 50]),
                              "s3_recovery": PathExpectation(lost_writes=[1, 100000], rpo_seconds=[0.0, 120.0])}))


CRASH_RESTART = NodeDrillPlan(
    name="primary-kill-crash-recovery", tier="smoke", backlog_segments=2, recover_from_s3=False,
    description="SIGKILL the primary (no replica) while the archiver is behind, restart it on its data "
                "directory: every acknowledged commit survives, the backlog and later WAL reach the bucket",
    expect=Expectation("complete", lost_writes=0, rpo_seconds=[0.0, 0.0]))


FAILOVER_ARCHIVING_STALLED = NodeDrillPlan(
    name="primary-kill-failover-archiving-stalled", tier="full", archive_to_nowhere_after_event=True,
    archive_wait_seconds=15.0,
    description="negative control: after the failover the new primary's archive_command reports success "
                "but uploads nothing (pg_stat_archiver looks healthy); pgdrill must report archiving stalled, "
                "and a restore from the archive loses every write since",
    expect=Expectation("loss_detected", findings=["ARCHIVING_STALLED_AFTER_FAILOVER", "SILENT_DATA_LOSS"],
                       allowed=["TIMELINE_HISTORY_MISSING", "RECOVERY_TARGET_UNREACHED", "REPLAY_STOPPED_EARLY"],
                       lost_writes=[4, 100000], rpo_seconds=[0.0, 120.0],
                       paths={"failover": PathExpectation(lost_writes=[0, 50])}))
