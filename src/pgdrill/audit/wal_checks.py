"""The audit's WAL judgement: gaps along every recovery chain (lost or still uploading),
the newest segment's age, and timelines without a history file."""

from __future__ import annotations

from pgdrill.archive.continuity import ChainLink, Gap, find_gaps
from pgdrill.audit import codes
from pgdrill.audit.context import DETECTOR, Context
from pgdrill.audit.formatting import human_duration
from pgdrill.audit.report import WalAudit
from pgdrill.findings import WAL_GAP, WAL_GAP_PENDING, Finding
from pgdrill.postgres.wal import SegmentName


def audit_wal(ctx: Context, location: str) -> tuple[WalAudit, list[Finding]]:
    """The WAL part of the report and its findings; sets ``ctx.uploading`` and ``ctx.checked_from``."""
    archive, index, now, thresholds = ctx.meta.archive, ctx.index, ctx.now, ctx.thresholds
    out: list[Finding] = []
    chains = chains_for_gap_check(ctx)
    gaps: dict[tuple[int, int], Gap] = {}
    for chain in chains:
        for gap in find_gaps(archive, chain):
            gaps.setdefault((gap.timeline, gap.first.number), gap)
    lost, uploading = [], []
    for gap in sorted(gaps.values(), key=lambda g: (g.first.number, g.timeline)):
        (uploading if is_uploading(ctx, gap, chains) else lost).append(gap)
    ctx.uploading = uploading
    newest = ctx.newest
    newest_wal = index.wal(*newest) if newest else None
    wal_age = (now - newest_wal.last_modified).total_seconds() if newest_wal else None
    wal = WalAudit(
        segments=index.count(),
        timelines=tuple(archive.timelines()),
        newest_segment=newest_wal.name.segment.name if newest_wal and newest_wal.name.segment else None,
        newest_modified=newest_wal.last_modified if newest_wal else None,
        age_seconds=wal_age,
        history_files=tuple(sorted(w.key.rsplit("/", 1)[-1] for w in archive.wal if w.name.kind == "history")),
        partial_files=tuple(sorted(w.key.rsplit("/", 1)[-1] for w in archive.partials())),
        checked_from=ctx.checked_from.name if ctx.checked_from else None,
        gaps=tuple(lost),
        uploading=tuple(uploading),
    )
    for gap in uploading:
        out.append(Finding(WAL_GAP_PENDING, (
            f"timeline {gap.timeline}: {gap.count} segment(s) {gap.first.name}..{gap.last.name} missing while "
            f"later WAL was uploaded less than {human_duration(thresholds.wal_gap_grace_seconds)} ago (an upload in "
            f"flight?); a disaster now recovers only up to before {gap.first.name}"),
            DETECTOR, {"gap": gap.to_dict(), "grace_seconds": thresholds.wal_gap_grace_seconds}))
    for gap in lost:
        out.append(Finding(WAL_GAP, (
            f"timeline {gap.timeline}: {gap.count} segment(s) {gap.first.name}..{gap.last.name} missing "
            f"with later WAL in the archive; recovery stops before {gap.first.name}"),
            DETECTOR, {"gap": gap.to_dict()}))
    if newest_wal is None:
        out.append(Finding(codes.WAL_STALE, f"no WAL segment archived under {location}", DETECTOR, {}))
    elif wal_age is not None and wal_age > thresholds.wal_max_age_seconds:
        out.append(Finding(codes.WAL_STALE, (
            f"newest WAL segment {wal.newest_segment} was archived {human_duration(wal_age)} ago "
            f"(limit {human_duration(thresholds.wal_max_age_seconds)})"), DETECTOR,
            {"newest_segment": wal.newest_segment, "age_seconds": round(wal_age, 1),
             "limit_seconds": thresholds.wal_max_age_seconds}))
    out.extend(missing_histories(ctx))
    return wal, out


def chains_for_gap_check(ctx: Context) -> list[list[ChainLink]]:
    """From the oldest completed backup to the newest WAL, per timeline a recovery can end on."""
    starts: dict[int, SegmentName] = {}
    for backup in ctx.completed():
        assert backup.begin_wal is not None
        chain = ctx.chain(backup.begin_wal)
        target = chain[-1].timeline
        if target not in starts or backup.begin_wal.number < starts[target].number:
            starts[target] = backup.begin_wal
    if not starts and ctx.index.numbers:
        # No usable backup: still check the WAL that is there, from its oldest segment.
        tli = min(ctx.index.numbers)
        starts[tli] = SegmentName(tli, ctx.index.numbers[tli][0], ctx.index.segment_size)
    firsts = list(starts.values())
    ctx.checked_from = min(firsts, key=lambda s: (s.number, s.timeline)) if firsts else None
    return [ctx.chain(s) for s in firsts]


def is_uploading(ctx: Context, gap: Gap, chains: list[list[ChainLink]]) -> bool:
    """WAL-G's missing-uploading: a hole near the head with freshly uploaded WAL after it."""
    for chain in chains:
        if not any(link.timeline == gap.timeline for link in chain):
            continue
        head = ctx.index.newest_on_chain(chain)
        after = ctx.index.next_on_chain(chain, gap.last.number)
        if head is None or after is None:
            continue
        if head[1] - gap.last.number > ctx.thresholds.wal_grace_segments:
            return False
        age = (ctx.now - ctx.index.wal(*after).last_modified).total_seconds()
        return age <= ctx.thresholds.wal_gap_grace_seconds
    return False


def missing_histories(ctx: Context) -> list[Finding]:
    completed = ctx.completed()
    base = min((b.begin_wal.timeline for b in completed if b.begin_wal),
               default=min(ctx.index.numbers, default=1))
    found = []
    for tli in sorted(ctx.index.numbers):
        if tli > base and tli not in ctx.meta.histories and tli not in ctx.meta.unreadable_histories:
            found.append(Finding(codes.TIMELINE_HISTORY_MISSING, (
                f"timeline {tli} has {len(ctx.index.numbers[tli])} archived segment(s) but no "
                f"{tli:08X}.history: recovery from timeline {base} cannot switch to it"), DETECTOR,
                {"timeline": tli}))
    return found
