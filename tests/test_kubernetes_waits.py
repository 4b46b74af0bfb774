"""Wait and failure-detection logic against recorded real API payloads and log lines.

Sources (facts carried over, not code):
- CNPG = cloudnative-pg/cloudnative-pg tag v1.30.0, commit 4b5e244a7d031f67e025c83c1555e7726ecbbfa1
- PLUGIN = cloudnative-pg/plugin-barman-cloud tag v0.14.0, commit 1e13020fe5f09fd8fc29ea03828f7b61375b3721
"""

from __future__ import annotations

import json

from pgdrill.backends.kubernetes import status as st

# CNPG docs/src/troubleshooting.md ("Below is a snippet of a `cluster.status` that contains a
# failing condition"), verbatim conditions.
DOCS_FAILING_STATUS = {
    "metadata": {"name": "cluster-example"},
    "status": {
        "conditions": [
            {"message": "unexpected failure invoking barman-cloud-wal-archive: exit status 2",
             "reason": "ContinuousArchivingFailing", "status": "False", "type": "ContinuousArchiving"},
            {"message": "exit status 2", "reason": "LastBackupFailed", "status": "False",
             "type": "LastBackupSucceeded"},
            {"message": "Cluster Is Not Ready", "reason": "ClusterIsNotReady", "status": "False", "type": "Ready"},
        ],
    },
}


def healthy_cluster(archiving: bool | None = True) -> dict:
    """Condition texts as CNPG sets them: Ready from pkg/resources/status/transactions.go
    (SetClusterReadyCondition: "Cluster is Ready"/ClusterIsReady when phase == PhaseHealthy),
    ContinuousArchiving from pkg/management/postgres/webserver/local.go
    (getContinuousArchivingCondition); phase string from api/v1/cluster_types.go."""
    conditions = [{"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "Cluster is Ready"}]
    if archiving is not None:
        conditions.append({"type": "ContinuousArchiving", "status": "True" if archiving else "False",
                           "reason": "ContinuousArchivingSuccess" if archiving else "ContinuousArchivingFailing",
                           "message": "Continuous archiving is working" if archiving else
                           "unexpected failure invoking barman-cloud-wal-archive: exit status 2"})
    return {"metadata": {"name": "postgres-cluster"}, "spec": {"instances": 1},
            "status": {"phase": "Cluster in healthy state", "instances": 1, "readyInstances": 1,
                       "currentPrimary": "postgres-cluster-1", "targetPrimary": "postgres-cluster-1",
                       "conditions": conditions}}


def setting_up(name: str = "postgres-cluster-v2") -> dict:
    return {"metadata": {"name": name}, "spec": {"instances": 1},
            "status": {"phase": "Setting up primary", "phaseReason": "Creating primary instance postgres-cluster-v2-1",
                       "instances": 1, "conditions": [
                           {"type": "Ready", "status": "False", "reason": "ClusterIsNotReady",
                            "message": "Cluster Is Not Ready"}]}}


# Real full-recovery pod log lines, from cloudnative-pg/cloudnative-pg issue #6470
# (pod "database-1-full-recovery"): a postgres record, the barman-cloud check's ERROR and the
# instance manager's error line (stacktrace shortened).
ISSUE_6470_LOG = "\n".join([
    '{"level":"info","ts":"2024-12-28T04:46:39.393488975Z","logger":"postgres","msg":"record","logging_pod":"database-1-full-recovery","record":{"log_time":"2024-12-28 04:46:39.393 UTC","process_id":"45","session_id":"676f82af.2d","session_line_num":"1","session_start_time":"2024-12-28 04:46:39 UTC","transaction_id":"0","error_severity":"LOG","sql_state_code":"00000","message":"database system was interrupted while in recovery at log time 2024-12-28 04:24:30 UTC","hint":"If this has occurred more than once some data might be corrupted and you might need to choose an earlier recovery target.","backend_type":"startup","query_id":"0"}}',
    '{"level":"info","ts":"2024-12-28T04:57:25.512796992Z","msg":"barman-cloud-check-wal-archive checking the first wal","logging_pod":"database-1-full-recovery"}',
    '{"level":"info","ts":"2024-12-28T04:57:26.914684215Z","logger":"barman-cloud-check-wal-archive","msg":"2024-12-28 04:57:26,914 [23] ERROR: WAL archive check failed for server local: Expected empty archive","pipe":"stderr","logging_pod":"database-1-full-recovery"}',
    '{"level":"error","ts":"2024-12-28T04:57:26.942015656Z","msg":"Error invoking barman-cloud-check-wal-archive","logging_pod":"database-1-full-recovery","options":["--cloud-provider","aws-s3","s3://metal-backup-eu/cnpg-backups/","local"],"exitCode":-1,"error":"exit status 1","stacktrace":"github.com/cloudnative-pg/machinery/pkg/log.(*logger).Error"}',
])

# CNPG docs/src/logging.md: the PostgreSQL record example (one line), severity LOG.
DOCS_LOG_RECORD = json.dumps({
    "level": "info", "ts": 1619781249.7188137, "logger": "postgres", "msg": "record",
    "record": {"log_time": "2021-04-30 11:14:09.718 UTC", "user_name": "", "database_name": "",
               "process_id": "25", "connection_from": "", "session_id": "608be681.19", "session_line_num": "1",
               "command_tag": "", "session_start_time": "2021-04-30 11:14:09 UTC", "virtual_transaction_id": "",
               "transaction_id": "0", "error_severity": "LOG", "sql_state_code": "00000",
               "message": "database system was interrupted; last known up at 2021-04-30 11:14:07 UTC",
               "detail": "", "hint": "", "internal_query": "", "internal_query_pos": "", "context": "",
               "query": "", "query_pos": "", "location": "", "application_name": "", "backend_type": "startup"}})


def pg_record(severity: str, message: str, state: str = "00000") -> str:
    """A PostgreSQL record in the CNPG JSON shape above, with PostgreSQL's own message texts."""
    return json.dumps({"level": "info", "logger": "postgres", "msg": "record",
                       "record": {"error_severity": severity, "sql_state_code": state, "message": message,
                                  "backend_type": "startup"}})


# PostgreSQL's messages (src/backend/access/transam/xlogrecovery.c) as they appear in a
# recovery that cannot reach its target after a WAL segment was deleted (cnpg-notes §3/§7).
REPLAY_LOG = "\n".join([
    pg_record("LOG", "starting point-in-time recovery to WAL location (LSN) \"0/A000100\""),
    pg_record("LOG", 'restored log file "000000010000000000000007" from archive'),
    pg_record("LOG", 'restored log file "000000010000000000000008" from archive'),
    pg_record("FATAL", "the database system is starting up", "57P03"),
    pg_record("FATAL", "recovery ended before configured recovery target was reached", "55000"),
])


def job(failed: int = 0, active: int = 0, condition: dict | None = None, complete: bool = False) -> dict:
    """A batch/v1 Job status as the Kubernetes job controller writes it; the Failed condition's
    reason/message are the controller's ("BackoffLimitExceeded", "Job has reached the specified
    backoff limit", kubernetes/kubernetes pkg/controller/job), as reported for CNPG recovery Jobs
    in cloudnative-pg/cloudnative-pg issue #11475."""
    conditions = []
    if condition:
        conditions.append(condition)
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    return {"metadata": {"name": "postgres-cluster-v2-1-full-recovery",
                         "labels": {"cnpg.io/jobRole": "full-recovery", "cnpg.io/cluster": "postgres-cluster-v2"}},
            "status": {"failed": failed, "active": active, "succeeded": 1 if complete else 0,
                       "conditions": conditions}}


BACKOFF = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
           "message": "Job has reached the specified backoff limit"}


def pod(name: str, phase: str) -> dict:
    return {"metadata": {"name": name}, "status": {"phase": phase}}


# --- cluster status -----------------------------------------------------------------------------


def test_docs_failing_status_is_not_ready_and_names_the_archiving_error() -> None:
    status = st.ClusterStatus.from_object(DOCS_FAILING_STATUS)
    assert not status.ready and status.archiving is False
    assert "barman-cloud-wal-archive" in status.archiving_message
    assert st.cluster_ready_state(DOCS_FAILING_STATUS).state == "waiting"


def test_healthy_cluster_is_done_and_archiving_is_required_when_asked() -> None:
    assert st.cluster_ready_state(healthy_cluster()).state == "done"
    assert st.cluster_ready_state(healthy_cluster(None), need_archiving=True).state == "waiting"
    failing = st.cluster_ready_state(healthy_cluster(False), need_archiving=True)
    assert failing.state == "failed" and "exit status 2" in failing.summary


def test_terminal_phase_stops_the_wait() -> None:
    obj = setting_up()
    obj["status"]["phase"] = "Cluster is unrecoverable and needs manual intervention"
    obj["status"]["phaseReason"] = "bootstrap failed"
    verdict = st.cluster_ready_state(obj)
    assert verdict.state == "failed" and "bootstrap failed" in verdict.summary


# --- backups and the plugin's recovery window ---------------------------------------------------


def backup(phase: str, **status: str) -> dict:
    # Field names from the Backup CRD (status.backupId, beginWal, endWal, error...); phases from
    # CNPG api/v1/backup_types.go.
    return {"metadata": {"name": "postgres-cluster-base-1"}, "status": {"phase": phase, **status}}


def test_backup_phases() -> None:
    assert st.backup_state(backup("running")).state == "waiting"
    done = st.backup_state(backup("completed", backupId="20251023T120000", beginWal="000000010000000000000004",
                                  endWal="000000010000000000000004"))
    assert done.state == "done" and "20251023T120000" in done.summary
    failed = st.backup_state(backup("failed", error="rpc error: code = Unknown desc = exit status 4"))
    assert failed.state == "failed" and "exit status 4" in failed.summary
    assert st.backup_state(backup("walArchivingFailing")).state == "failed"
    assert st.backup_state({}).state == "waiting"


def test_recovery_window_comes_from_the_object_store_status() -> None:
    # ObjectStore CRD (PLUGIN config/crd/bases/barmancloud.cnpg.io_objectstores.yaml):
    # status.serverRecoveryWindow[<serverName>].{firstRecoverabilityPoint,lastSuccessfulBackupTime,...}
    store = {"status": {"serverRecoveryWindow": {"postgres-cluster": {
        "firstRecoverabilityPoint": "2025-10-23T12:00:05Z", "lastSuccessfulBackupTime": "2025-10-23T12:00:09Z"}}}}
    window = st.recovery_window(store, "postgres-cluster")
    assert window is not None and window.first_recoverability_point == "2025-10-23T12:00:05Z"
    assert window.last_failed_backup_time is None
    assert st.recovery_window(store, "postgres-cluster-v2") is None
    assert st.recovery_window({}, "postgres-cluster") is None


# --- logs ---------------------------------------------------------------------------------------


def test_issue_6470_log_names_the_failure() -> None:
    records = st.parse_log(ISSUE_6470_LOG)
    assert [r.severity for r in records] == ["LOG", "INFO", "ERROR", "ERROR"]
    lines = st.fatal_lines(records)
    assert any("Expected empty archive" in line for line in lines)
    assert any("Error invoking barman-cloud-check-wal-archive: exit status 1" in line for line in lines)


def test_docs_log_record_parses_and_is_not_an_error() -> None:
    (record,) = st.parse_log(DOCS_LOG_RECORD)
    assert record.severity == "LOG" and record.logger == "postgres"
    assert st.fatal_lines([record]) == []


def test_replay_log_gives_segments_and_fatal_without_startup_noise() -> None:
    records = st.parse_log(REPLAY_LOG)
    assert st.restored_segments(records) == ["000000010000000000000007", "000000010000000000000008"]
    assert st.fatal_lines(records) == ["FATAL: recovery ended before configured recovery target was reached"]


def test_plain_text_logs_are_understood_too() -> None:
    records = st.parse_log('2025-10-23 12:00:00 UTC [1] FATAL:  could not locate required checkpoint record\nhello')
    assert st.fatal_lines(records) == ["FATAL: could not locate required checkpoint record"]


# --- recovery: the full-recovery Job decides, not a timeout -------------------------------------


def test_recovery_waits_while_the_job_runs() -> None:
    verdict = st.recovery_state(setting_up(), job(active=1), [pod("p1", "Running")], {})
    assert verdict.state == "waiting" and "Setting up primary" in verdict.summary and "1 active" in verdict.summary


def test_recovery_fails_on_backoff_limit_with_log_evidence() -> None:
    pods = [pod(f"postgres-cluster-v2-1-full-recovery-{i}", "Failed") for i in range(7)]
    verdict = st.recovery_state(setting_up(), job(failed=7, condition=BACKOFF), pods,
                                {pods[0]["metadata"]["name"]: REPLAY_LOG})
    assert verdict.state == "failed" and "BackoffLimitExceeded" in verdict.summary
    assert verdict.evidence == ("FATAL: recovery ended before configured recovery target was reached",)


def test_recovery_fails_early_after_enough_failed_pods_with_errors() -> None:
    pods = [pod("r-a", "Failed"), pod("r-b", "Failed"), pod("r-c", "Pending")]
    logs = {"r-a": ISSUE_6470_LOG, "r-b": ISSUE_6470_LOG}
    verdict = st.recovery_state(setting_up(), job(failed=2, active=1), pods, logs, failed_pod_limit=2)
    assert verdict.state == "failed" and "2 full-recovery pods failed" in verdict.summary
    # One failure is not enough: the Job retries, and a retry may pick a newer backup (issue #11475).
    one = st.recovery_state(setting_up(), job(failed=1, active=1), pods[:1] + pods[2:], {"r-a": ISSUE_6470_LOG})
    assert one.state == "waiting"
    # Failed pods without any error line are not a verdict either (evicted, node lost...).
    silent = st.recovery_state(setting_up(), job(failed=2, active=1), pods, {"r-a": "", "r-b": ""})
    assert silent.state == "waiting"


def test_recovery_done_when_cluster_ready_even_after_a_retry() -> None:
    ready = healthy_cluster()
    verdict = st.recovery_state(ready, job(failed=1, complete=True), [pod("r-a", "Failed"), pod("r-b", "Succeeded")],
                                {"r-a": REPLAY_LOG})
    assert verdict.state == "done"


# --- the polling loop ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiter_reports_progress_and_returns_the_verdict() -> None:
    clock = FakeClock()
    said: list[str] = []
    states = iter([st.WaitState("waiting", "a"), st.WaitState("waiting", "a"), st.WaitState("waiting", "b"),
                   st.WaitState("done", "c")])
    waiter = st.Waiter("thing", timeout=100, interval=5, progress=said.append, clock=clock, sleep=clock.sleep)
    verdict = waiter.wait(lambda: next(states))
    assert verdict.state == "done"
    assert said == ["thing: a [0s]", "thing: b [10s]", "thing: c [15s]"]
    assert [s for _, s in waiter.history] == ["a", "b", "c"]


def test_waiter_times_out_with_the_last_state_and_heartbeats() -> None:
    clock = FakeClock()
    said: list[str] = []
    waiter = st.Waiter("recovery x", timeout=60, interval=5, heartbeat=30, progress=said.append,
                       clock=clock, sleep=clock.sleep)
    verdict = waiter.wait(lambda: st.WaitState("waiting", "Setting up primary"))
    assert verdict.state == "timeout" and "Setting up primary" in verdict.summary and "60s" in verdict.summary
    assert len(said) == 3  # first sight, then a heartbeat every 30 s
    assert clock.now == 60


def test_waiter_drives_a_recorded_recovery_to_failure_before_the_timeout() -> None:
    clock = FakeClock()
    pods = [pod("r-a", "Failed"), pod("r-b", "Failed")]
    frames = iter([
        (setting_up(), None, [], {}),
        (setting_up(), job(active=1), [pod("r-a", "Running")], {}),
        (setting_up(), job(failed=1, active=1), [pods[0], pod("r-b", "Running")], {"r-a": REPLAY_LOG}),
        (setting_up(), job(failed=2, active=1), pods, {"r-a": REPLAY_LOG, "r-b": REPLAY_LOG}),
    ])
    verdict = st.Waiter("recovery", timeout=800, interval=5, clock=clock, sleep=clock.sleep).wait(
        lambda: st.recovery_state(*next(frames)))
    assert verdict.state == "failed" and clock.now == 15
