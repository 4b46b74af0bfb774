"""Reading CNPG, plugin and Job status, and the polling loop that waits on it.

Everything here is pure: it takes API objects as plain dicts (``ApiClient.sanitize_for_serialization``
output, i.e. what ``kubectl get -o json`` shows) and log text, so it is tested against recorded
real payloads without a cluster (``tests/test_kubernetes_waits.py``).

Why recovery failure is read from the Job: with CNPG 1.30 a recovery that cannot finish never
reaches a terminal Cluster phase.  The Cluster stays in "Setting up primary" while the
``<cluster>-1-full-recovery`` Job (label ``cnpg.io/jobRole=full-recovery``) retries its pod up to
``backoffLimit`` times (CNPG issue #11475), so waiting for the phase alone ends in a timeout
with no explanation.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# CNPG api/v1/cluster_types.go (v1.30.0)
PHASE_HEALTHY = "Cluster in healthy state"
PHASE_SETTING_UP_PRIMARY = "Setting up primary"
#: Phases that will not get better without a human: stop waiting and report.
TERMINAL_PHASES = (
    "Cluster is unrecoverable and needs manual intervention",
    "Invalid cluster definition",
    "Cluster has incomplete or invalid image catalog",
    "Unable to create required cluster objects",
)
#: Phases that are fatal only when they last (the plugin may still be registering).
PLUGIN_PHASES = (
    "Cluster cannot proceed to reconciliation due to an unknown plugin being required",
    "Cluster cannot proceed to reconciliation due to an error while interacting with plugins",
)

# CNPG api/v1/backup_types.go (v1.30.0)
BACKUP_DONE = "completed"
BACKUP_FAILED = ("failed", "walArchivingFailing", "invalid backup definition")

JOB_ROLE_LABEL = "cnpg.io/jobRole"
FULL_RECOVERY = "full-recovery"
CLUSTER_LABEL = "cnpg.io/cluster"
INSTANCE_ROLE_LABEL = "cnpg.io/instanceRole"


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _is_true(cond: dict[str, Any] | None) -> bool | None:
    if cond is None:
        return None
    return str(cond.get("status")) == "True"


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    phase: str
    phase_reason: str
    ready: bool
    archiving: bool | None
    """``ContinuousArchiving`` condition; ``None`` until the first WAL was (not) archived."""
    archiving_message: str
    ready_instances: int
    instances: int
    current_primary: str
    target_primary: str

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> ClusterStatus:
        status = obj.get("status") or {}
        archiving = condition(obj, "ContinuousArchiving")
        return cls(
            name=(obj.get("metadata") or {}).get("name", ""),
            phase=status.get("phase", ""),
            phase_reason=status.get("phaseReason", ""),
            ready=bool(_is_true(condition(obj, "Ready"))),
            archiving=_is_true(archiving),
            archiving_message=(archiving or {}).get("message", ""),
            ready_instances=int(status.get("readyInstances") or 0),
            instances=int(status.get("instances") or (obj.get("spec") or {}).get("instances") or 0),
            current_primary=status.get("currentPrimary", ""),
            target_primary=status.get("targetPrimary", ""),
        )

    @property
    def terminal_failure(self) -> str | None:
        if self.phase in TERMINAL_PHASES:
            return f"{self.phase}: {self.phase_reason}" if self.phase_reason else self.phase
        return None

    def summary(self) -> str:
        parts = [self.phase or "no phase yet", f"{self.ready_instances}/{self.instances} ready"]
        if self.archiving is not None:
            parts.append("archiving ok" if self.archiving else f"archiving FAILING ({self.archiving_message})")
        return ", ".join(parts)


@dataclass(frozen=True)
class BackupStatus:
    name: str
    phase: str
    backup_id: str
    error: str
    begin_wal: str
    end_wal: str
    begin_lsn: str
    end_lsn: str
    server_name: str
    started_at: str
    stopped_at: str

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> BackupStatus:
        status = obj.get("status") or {}
        return cls(
            name=(obj.get("metadata") or {}).get("name", ""),
            phase=status.get("phase", ""),
            backup_id=status.get("backupId", ""),
            error=status.get("error", ""),
            begin_wal=status.get("beginWal", ""),
            end_wal=status.get("endWal", ""),
            begin_lsn=status.get("beginLSN", ""),
            end_lsn=status.get("endLSN", ""),
            server_name=status.get("serverName", ""),
            started_at=str(status.get("startedAt") or ""),
            stopped_at=str(status.get("stoppedAt") or ""),
        )

    @property
    def done(self) -> bool:
        return self.phase == BACKUP_DONE

    @property
    def failed(self) -> bool:
        return self.phase in BACKUP_FAILED


@dataclass(frozen=True)
class RecoveryWindow:
    first_recoverability_point: str | None
    last_successful_backup_time: str | None
    last_failed_backup_time: str | None


def recovery_window(object_store: dict[str, Any], server_name: str) -> RecoveryWindow | None:
    """The plugin's per-serverName window (``status.serverRecoveryWindow``).

    With the plugin, the Cluster's ``firstRecoverabilityPoint``/``lastSuccessfulBackup`` are
    never set (Cluster CRD: "Deprecated: the field is not set for backup plugins").
    """
    windows = (object_store.get("status") or {}).get("serverRecoveryWindow") or {}
    window = windows.get(server_name)
    if window is None:
        return None
    return RecoveryWindow(window.get("firstRecoverabilityPoint"), window.get("lastSuccessfulBackupTime"),
                          window.get("lastFailedBackupTime"))


@dataclass(frozen=True)
class JobStatus:
    name: str
    active: int
    succeeded: int
    failed: int
    complete: bool
    failed_reason: str | None
    failed_message: str

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> JobStatus:
        status = obj.get("status") or {}
        failed = condition(obj, "Failed")
        return cls(
            name=(obj.get("metadata") or {}).get("name", ""),
            active=int(status.get("active") or 0),
            succeeded=int(status.get("succeeded") or 0),
            failed=int(status.get("failed") or 0),
            complete=bool(_is_true(condition(obj, "Complete"))),
            failed_reason=(failed or {}).get("reason") if _is_true(failed) else None,
            failed_message=(failed or {}).get("message", "") if _is_true(failed) else "",
        )


def failed_pods(pods: Iterable[dict[str, Any]]) -> list[str]:
    """Names of pods that ran to a non-zero exit (``restartPolicy: Never`` Job pods)."""
    names = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed":
            names.append((pod.get("metadata") or {}).get("name", ""))
    return sorted(names)


# --- logs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    severity: str
    """PostgreSQL ``error_severity`` (LOG, FATAL, PANIC...) or the instance manager's level, upper-cased."""
    message: str
    logger: str
    raw: str


#: Lines that look alarming but are normal during recovery (plugin issue #513, CNPG issue #10094)
#: or while the server starts (SQLSTATE 57P03 "the database system is starting up").
_NOISE = (
    re.compile(r"WAL file not found", re.I),
    re.compile(r"the database system is (starting up|not yet accepting connections|shutting down)", re.I),
    re.compile(r"end of WAL reached", re.I),
)


def parse_log(text: str) -> list[LogRecord]:
    """Parse CNPG's JSON log lines (CNPG docs/src/logging.md); plain lines are kept as-is."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            match = re.search(r"\b(LOG|FATAL|PANIC|ERROR|WARNING):\s+(.*)$", line)
            records.append(LogRecord(match.group(1) if match else "", match.group(2) if match else line, "", line))
            continue
        logger = str(entry.get("logger", ""))
        record = entry.get("record")
        if isinstance(record, dict) and "error_severity" in record:
            records.append(LogRecord(str(record.get("error_severity", "")).upper(), str(record.get("message", "")),
                                     logger, line))
            continue
        message = str(entry.get("msg", ""))
        if entry.get("error"):
            message = f"{message}: {entry['error']}"
        severity = str(entry.get("level", "")).upper()
        # barman-cloud CLIs log through the instance manager at level info with "ERROR:" inside msg.
        if re.search(r"\bERROR:", message) and severity in ("", "INFO"):
            severity = "ERROR"
        records.append(LogRecord(severity, message, logger, line))
    return records


def fatal_lines(records: Iterable[LogRecord]) -> list[str]:
    """Lines that explain a failed recovery: FATAL/PANIC from PostgreSQL, errors from the manager."""
    lines = []
    for record in records:
        if record.severity not in ("FATAL", "PANIC", "ERROR"):
            continue
        if any(pattern.search(record.message) for pattern in _NOISE):
            continue
        text = f"{record.severity}: {record.message}"
        if text not in lines:
            lines.append(text)
    return lines


_RESTORED = re.compile(r'restored log file "([0-9A-F]{24})" from archive')


def restored_segments(records: Iterable[LogRecord]) -> list[str]:
    found = []
    for record in records:
        match = _RESTORED.search(record.message)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


# --- waiting ------------------------------------------------------------------------------

State = Literal["waiting", "done", "failed", "timeout"]


@dataclass(frozen=True)
class WaitState:
    state: State
    summary: str
    evidence: tuple[str, ...] = ()


def cluster_ready_state(cluster: dict[str, Any], need_archiving: bool = False) -> WaitState:
    status = ClusterStatus.from_object(cluster)
    terminal = status.terminal_failure
    if terminal:
        return WaitState("failed", terminal)
    if status.ready and status.phase == PHASE_HEALTHY:
        if need_archiving and status.archiving is not True:
            if status.archiving is False:
                return WaitState("failed", f"WAL archiving failing: {status.archiving_message}")
            return WaitState("waiting", status.summary() + ", waiting for ContinuousArchiving")
        return WaitState("done", status.summary())
    return WaitState("waiting", status.summary())


def backup_state(backup: dict[str, Any]) -> WaitState:
    status = BackupStatus.from_object(backup)
    if status.done:
        return WaitState("done", f"backup {status.backup_id} completed ({status.begin_wal}..{status.end_wal})")
    if status.failed:
        return WaitState("failed", f"backup {status.name} {status.phase}: {status.error or 'no error given'}")
    return WaitState("waiting", f"backup {status.name} {status.phase or 'pending'}")


def recovery_state(cluster: dict[str, Any] | None, job: dict[str, Any] | None, pods: list[dict[str, Any]],
                   logs: dict[str, str], failed_pod_limit: int = 2) -> WaitState:
    """Is the recovery cluster up, still going, or failed for a reason the logs name?

    ``pods`` are the full-recovery Job's pods, ``logs`` their logs by pod name.
    """
    records = [r for text in logs.values() for r in parse_log(text)]
    evidence = tuple(fatal_lines(records))
    if cluster is not None:
        ready = cluster_ready_state(cluster)
        if ready.state != "waiting":
            return WaitState(ready.state, ready.summary, evidence if ready.state == "failed" else ())
        summary = ready.summary
    else:
        summary = "cluster not created yet"
    if job is not None:
        job_status = JobStatus.from_object(job)
        if job_status.failed_reason:
            return WaitState("failed", f"Job {job_status.name} failed: {job_status.failed_reason} "
                           f"({job_status.failed} failed pods) {job_status.failed_message}".rstrip(), evidence)
        failed = failed_pods(pods)
        if len(failed) >= failed_pod_limit and evidence:
            return WaitState("failed", f"{len(failed)} {FULL_RECOVERY} pods failed ({', '.join(failed)})", evidence)
        state = "restore finished" if job_status.complete else (
            f"restoring ({job_status.active} active, {job_status.failed} failed pods)")
        summary = f"{summary}; {job_status.name}: {state}"
    return WaitState("waiting", summary)


@dataclass
class Waiter:
    """Poll ``check`` until it is not ``waiting`` or ``timeout`` seconds have passed.

    Progress goes to ``progress`` when the summary changes and at least every
    ``heartbeat`` seconds, so a long recovery never looks hung.
    """

    what: str
    timeout: float
    interval: float = 5.0
    heartbeat: float = 30.0
    progress: Callable[[str], None] | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    history: list[tuple[float, str]] = field(default_factory=list)

    def wait(self, check: Callable[[], WaitState]) -> WaitState:
        start = self.clock()
        last_summary, last_report = None, start
        while True:
            verdict = check()
            now = self.clock()
            elapsed = now - start
            if verdict.summary != last_summary:
                self.history.append((elapsed, verdict.summary))
            if verdict.summary != last_summary or now - last_report >= self.heartbeat:
                self._say(f"{self.what}: {verdict.summary} [{elapsed:.0f}s]")
                last_summary, last_report = verdict.summary, now
            if verdict.state != "waiting":
                return verdict
            if elapsed >= self.timeout:
                return WaitState("timeout", f"{self.what}: no result after {self.timeout:.0f}s "
                               f"(last state: {verdict.summary})", verdict.evidence)
            self.sleep(min(self.interval, max(0.0, self.timeout - elapsed)))

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)
