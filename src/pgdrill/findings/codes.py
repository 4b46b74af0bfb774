"""Every finding code pgdrill can report: one static table (code, severity, title, remedy).

Codes are part of pgdrill's public contract (scenarios expect them, alert rules and reports key
on them): add new ones, never rename or reuse one.  Each code is defined here once; detectors,
the audit and reports import the constants.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class FindingCode:
    code: str
    severity: Severity
    title: str
    remedy: str


# -- Recovery drills -----------------------------------------------------------------

WAL_GAP = "WAL_GAP"
SILENT_DATA_LOSS = "SILENT_DATA_LOSS"
REPLAY_STOPPED_EARLY = "REPLAY_STOPPED_EARLY"
RECOVERY_TARGET_UNREACHED = "RECOVERY_TARGET_UNREACHED"
RECOVERY_FAILED = "RECOVERY_FAILED"
RPO_EXCEEDED = "RPO_EXCEEDED"
RTO_EXCEEDED = "RTO_EXCEEDED"
OWNERSHIP_MISMATCH = "OWNERSHIP_MISMATCH"
ARCHIVE_NOT_EMPTY = "ARCHIVE_NOT_EMPTY"
TARGET_OVERSHOT = "TARGET_OVERSHOT"
WAL_SEGMENT_UNREADABLE = "WAL_SEGMENT_UNREADABLE"
BACKUP_UNUSABLE = "BACKUP_UNUSABLE"
RETENTION_NOT_APPLIED = "RETENTION_NOT_APPLIED"
RECOVERY_WINDOW_BROKEN = "RECOVERY_WINDOW_BROKEN"
COULD_NOT_VERIFY = "COULD_NOT_VERIFY"

# -- Integrity of a recovered cluster ------------------------------------------------

DATA_CHECKSUM_FAILURE = "DATA_CHECKSUM_FAILURE"
HEAP_CORRUPTION = "HEAP_CORRUPTION"
INDEX_CORRUPTION = "INDEX_CORRUPTION"
CONTENT_MISMATCH = "CONTENT_MISMATCH"
DATABASE_UNREACHABLE = "DATABASE_UNREACHABLE"
USER_CHECK_FAILED = "USER_CHECK_FAILED"

# -- pgdrill audit (the archive's health) --------------------------------------------

BACKUP_STALE = "BACKUP_STALE"
BACKUP_FAILED = "BACKUP_FAILED"
BACKUP_CONSECUTIVE_FAILURES = "BACKUP_CONSECUTIVE_FAILURES"
BACKUP_SIZE_DROP = "BACKUP_SIZE_DROP"
BACKUP_NOT_CONSISTENT = "BACKUP_NOT_CONSISTENT"
BACKUP_WAL_PENDING = "BACKUP_WAL_PENDING"
WAL_GAP_PENDING = "WAL_GAP_PENDING"
WAL_STALE = "WAL_STALE"
TIMELINE_HISTORY_MISSING = "TIMELINE_HISTORY_MISSING"
RETENTION_NOT_COVERED = "RETENTION_NOT_COVERED"
S3_ACCESS_ERROR = "S3_ACCESS_ERROR"
METADATA_UNREADABLE = "METADATA_UNREADABLE"

# -- pgdrill audit --replica (the copy in another organisation's bucket) --------------

REPLICA_OBJECT_MISSING = "REPLICA_OBJECT_MISSING"
REPLICA_OBJECT_MISMATCH = "REPLICA_OBJECT_MISMATCH"
REPLICA_LAG = "REPLICA_LAG"
REPLICA_ACCESS_ERROR = "REPLICA_ACCESS_ERROR"

# -- Failover and crash restart ------------------------------------------------------

ARCHIVING_STALLED_AFTER_FAILOVER = "ARCHIVING_STALLED_AFTER_FAILOVER"
ARCHIVING_STALLED_AFTER_RESTART = "ARCHIVING_STALLED_AFTER_RESTART"
UNARCHIVED_WAL_LOST_AT_FAILOVER = "UNARCHIVED_WAL_LOST_AT_FAILOVER"
FAILOVER_COMMITS_LOST = "FAILOVER_COMMITS_LOST"

#: Every code, by name.
CODES: dict[str, FindingCode] = {c.code: c for c in (
    FindingCode(WAL_GAP, Severity.CRITICAL,
                'WAL segment(s) missing from the archive',
        'Recovery cannot replay past the first missing segment. Take a new base backup now, and find why '
        'the segment is missing (lifecycle rule, manual deletion, failed upload).'),
    FindingCode(SILENT_DATA_LOSS, Severity.CRITICAL,
                'Recovery reported success but committed writes are missing',
        'Do not trust this recovery. Compare the archive with the ledger; recover with '
        'recovery_target_lsn so PostgreSQL refuses an incomplete replay.'),
    FindingCode(REPLAY_STOPPED_EARLY, Severity.CRITICAL,
                'The archive holds WAL beyond the point where the recovered cluster stopped replaying',
        'Replay stopped at a gap or a damaged segment; the later WAL in the bucket was never applied.'),
    FindingCode(RECOVERY_TARGET_UNREACHED, Severity.CRITICAL,
                'PostgreSQL refused to finish recovery: the target LSN is not reachable from the archive',
        'The archive cannot reach the last committed write. Treat the newest data as lost until found.'),
    FindingCode(RECOVERY_FAILED, Severity.CRITICAL,
                'The recovered cluster did not come up',
        'Read the server log evidence; the backup or the archive is not usable as it is.'),
    FindingCode(RPO_EXCEEDED, Severity.CRITICAL,
                'Data loss window larger than the RPO target',
        'Shorten archive_timeout, fix archiving, or revise the RPO target.'),
    FindingCode(RTO_EXCEEDED, Severity.WARNING,
                'Recovery took longer than the RTO target',
        'Take base backups more often (less WAL to replay) or revise the RTO target.'),
    FindingCode(OWNERSHIP_MISMATCH, Severity.WARNING,
                'A table in the recovered cluster has a different owner than in the source',
        'Applications connecting as their own role will fail; check roles and grants after recovery.'),
    FindingCode(ARCHIVE_NOT_EMPTY, Severity.CRITICAL,
                'The serverName already has WAL in the bucket ("Expected empty archive")',
        'Use a new serverName for the new cluster (postgres-cluster-vN); never reuse one.'),
    FindingCode(TARGET_OVERSHOT, Severity.CRITICAL,
                'Point-in-time recovery went past its target: writes after the target are present',
        'The recovery target was not honoured; check recovery_target_* settings and the chosen backup.'),
    FindingCode(WAL_SEGMENT_UNREADABLE, Severity.CRITICAL,
                'Replay stopped inside a WAL segment that is in the archive: the segment is damaged',
        'Compare the object with its checksum at upload time; take a new base backup now.'),
    FindingCode(BACKUP_UNUSABLE, Severity.CRITICAL,
                'A base backup listed as completed could not be restored',
        'Remove or re-take the damaged backup; recovery needs an older backup and longer WAL replay.'),
    FindingCode(USER_CHECK_FAILED, Severity.CRITICAL,
                "A restore-test's own check of the restored data failed (SQL expectation or a table missing)",
        'Compare with production: the backup may predate the data, or the archive may end early.'),
    FindingCode(RETENTION_NOT_APPLIED, Severity.WARNING,
                'The retention policy left backups or WAL it should have removed',
        "Check the ObjectStore retentionPolicy and the plugin's retention logs; storage grows unbounded."),
    FindingCode(RECOVERY_WINDOW_BROKEN, Severity.CRITICAL,
                'A point inside the retention window cannot be recovered',
        'Retention removed WAL or a backup still needed; take a new base backup and fix the policy.'),
    FindingCode(COULD_NOT_VERIFY, Severity.CRITICAL,
                'A verification could not run, so nothing is known about what it checks',
        'Fix the cause in the evidence and run the drill again; this is not a pass.'),
    FindingCode(DATA_CHECKSUM_FAILURE, Severity.CRITICAL,
                'A data page of the recovered cluster fails its checksum',
        'The page was damaged in the base backup, in storage or in transit. Do not use this backup: '
        "recover from an older one, and check the object's integrity in the bucket."),
    FindingCode(HEAP_CORRUPTION, Severity.CRITICAL,
                'amcheck found a damaged table page in the recovered cluster',
        'Queries touching this block fail or return wrong rows. Recover from another backup; the evidence '
        "names the block and amcheck's message."),
    FindingCode(INDEX_CORRUPTION, Severity.CRITICAL,
                'amcheck found a B-tree index that does not match its structure or its table',
        'Index scans may miss or invent rows. REINDEX repairs the index if the table is sound; find why '
        'the backup held a damaged index page.'),
    FindingCode(CONTENT_MISMATCH, Severity.CRITICAL,
                'Rows in the recovered cluster differ from what the source held at the recovery point',
        'Row counts can match while content does not (lost UPDATEs, damaged pages). The evidence names '
        'the table and the key range that differ; compare the archive with the ledger.'),
    FindingCode(DATABASE_UNREACHABLE, Severity.CRITICAL,
                'A database of the recovered cluster cannot be connected to',
        'The database is missing or its catalog is damaged; the recovery is not usable for its '
        'applications.'),
    FindingCode(BACKUP_STALE, Severity.CRITICAL,
                'The newest completed base backup is older than the limit (or there is none)',
        'Check the ScheduledBackup and the latest Backup objects (kubectl get backup -n <ns>); take a '
        'manual backup. Recovery needs ever more WAL replay while no new base backup completes.'),
    FindingCode(BACKUP_FAILED, Severity.INFO,
                'A recent base backup did not complete',
        "Read the error in its backup.info and the Backup object's status.error."),
    FindingCode(BACKUP_CONSECUTIVE_FAILURES, Severity.CRITICAL,
                'The most recent base backups failed in a row',
        'Base backups are failing systematically: read status.error of the Backup objects and the plugin '
        'sidecar logs (credentials, bucket, disk, network).'),
    FindingCode(BACKUP_SIZE_DROP, Severity.WARNING,
                'The newest base backup is far smaller than its predecessors',
        'Check that it contains the whole cluster (tablespaces, data.tar size) and that nothing was '
        'dropped; a compression change also explains it.'),
    FindingCode(BACKUP_NOT_CONSISTENT, Severity.CRITICAL,
                'A completed base backup cannot be restored: WAL between its begin and end is missing',
        'A recovery from it fails before consistency. If the end WAL was never archived (idle database, '
        'plugin-barman-cloud#652) run SELECT pg_switch_wal() on the primary; otherwise take a new base '
        'backup.'),
    FindingCode(BACKUP_WAL_PENDING, Severity.WARNING,
                'The newest base backup cannot be restored yet: its WAL up to the end is not all archived',
        'Within the grace period this is an upload still running; if it stays, a disaster now could not use '
        'this backup at all. On an idle database run SELECT pg_switch_wal() on the primary.'),
    FindingCode(WAL_GAP_PENDING, Severity.WARNING,
                'A WAL segment is missing while later WAL was uploaded moments ago',
        'Parallel archiving (wal.maxParallel) keeps a hole open only for one upload; a disaster right now '
        'would recover only up to the hole. It becomes WAL_GAP once the grace period has passed.'),
    FindingCode(WAL_STALE, Severity.CRITICAL,
                'The newest archived WAL segment is older than the limit (or there is none)',
        'WAL archiving is failing or stuck: check the ContinuousArchiving condition of the Cluster and '
        'pg_stat_archiver (failed_count, last_failed_wal). Writes since then are not protected.'),
    FindingCode(TIMELINE_HISTORY_MISSING, Severity.CRITICAL,
                'WAL of a timeline is archived (or expected after a failover) but its .history file is not',
        "Without <timeline>.history a recovery with recovery_target_timeline = 'latest' cannot follow "
        "that timeline and ignores every later write. Copy it from the (new) primary's pg_wal into the "
        "archive's wals/ folder."),
    FindingCode(RETENTION_NOT_COVERED, Severity.WARNING,
                'Not every point of the retention window can be recovered',
        'Some part of the window has no consistent base backup with gap-free WAL after it; see the '
        'uncovered periods and the gaps.'),
    FindingCode(S3_ACCESS_ERROR, Severity.CRITICAL,
                'The object store could not be read (endpoint, bucket, credentials or permissions)',
        'Fix what the message names; until then nothing about the backups is known.'),
    FindingCode(METADATA_UNREADABLE, Severity.CRITICAL,
                'A backup.info or timeline history file could not be read or parsed',
        'Inspect the object named in the evidence; barman-cloud-restore cannot use it either.'),
    FindingCode(REPLICA_OBJECT_MISSING, Severity.CRITICAL,
                'The replica bucket lacks an object a recovery from it needs',
        'A recovery from the replica alone stops there (or cannot start). Check the replication job '
        '(its logs, its credentials, a lifecycle rule in the replica bucket) and copy the keys in the '
        'evidence from the primary while they still exist there.'),
    FindingCode(REPLICA_OBJECT_MISMATCH, Severity.CRITICAL,
                'An object in the replica bucket differs from the primary (size or MD5 ETag)',
        'The replica holds a damaged or different copy: a recovery from it fails or replays other WAL. '
        'Copy the object again from the primary and find what changed it (a partial copy, another '
        'writer in the replica bucket).'),
    FindingCode(REPLICA_LAG, Severity.WARNING,
                'The replica bucket is further behind the primary than the limit',
        'The newest WAL only exists in the primary: losing the primary organisation now loses that '
        'much more data. Check that the replication job runs and keeps up.'),
    FindingCode(REPLICA_ACCESS_ERROR, Severity.CRITICAL,
                'The replica bucket could not be read (endpoint, bucket, credentials or permissions)',
        "Fix what the message names (the replica's own credentials come from the variables named by "
        '--replica-access-key-env / --replica-secret-key-env); until then nothing about the replica is known.'),
    FindingCode(ARCHIVING_STALLED_AFTER_FAILOVER, Severity.CRITICAL,
                'WAL archiving did not resume on the new timeline after a failover',
        "The promoted primary is not archiving to the cluster's serverName: every write since the "
        "failover is unrecoverable from the bucket. Check the new primary's archive_command / plugin "
        'sidecar and pg_stat_archiver (plugin-barman-cloud#842), then take a new base backup.'),
    FindingCode(ARCHIVING_STALLED_AFTER_RESTART, Severity.CRITICAL,
                'WAL archiving did not resume after the primary restarted from a crash',
        'Segments written since the crash are not in the bucket. Check archive_command and '
        'pg_stat_archiver; segments marked .ready in pg_wal/archive_status are archived only while the '
        'server runs.'),
    FindingCode(UNARCHIVED_WAL_LOST_AT_FAILOVER, Severity.CRITICAL,
                'Old-timeline WAL the killed primary never archived is missing from the archive for good',
        'With archive_mode = on a standby marks streamed segments .done, and promotion archives only the '
        '.partial segment and the .history file, so segments the old primary completed but had not '
        'archived are never uploaded (see ubicloud/ubicloud#6279, #6450). Before promoting, re-queue the '
        "replica's complete received segments (.done -> .ready) or use archive_mode = always; take a new "
        'base backup right after every failover, since point-in-time recovery across the hole is '
        'impossible.'),
    FindingCode(FAILOVER_COMMITS_LOST, Severity.WARNING,
                'Commits acknowledged by the killed primary never reached the promoted replica',
        'Expected with asynchronous replication; the loss is measured as RPO. Use synchronous replication '
        '(CNPG postgresql.synchronous) if acknowledged commits must survive a failover.'),
)}
