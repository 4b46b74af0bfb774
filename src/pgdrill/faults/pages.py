"""Page damage inside the newest base backup object, which only the integrity detectors catch."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
from dataclasses import dataclass

from pgdrill.archive.catalog import BaseBackup, read_server_archive
from pgdrill.errors import UsageError
from pgdrill.faults.base import FaultContext, FaultRecord
from pgdrill.postgres import pages

_COMPRESSIONS = {".tar": None, ".tar.gz": "gzip", ".tar.bz2": "bzip2"}


@dataclass(frozen=True)
class CorruptHeapPageParams:
    database: str
    table: str
    """Table to damage (``name`` or ``schema.name``); pick one the workload does not write after the backup."""
    fix_checksum: bool = False
    """Recompute the page checksum after the flip: only amcheck (not pg_checksums) can then notice."""


@dataclass(frozen=True)
class CorruptIndexPageParams:
    database: str
    index: str
    """A B-tree index (``name`` or ``schema.name``)."""
    fix_checksum: bool = False


@dataclass(frozen=True)
class _Target:
    relation: str
    filepath: str
    """``pg_relation_filepath``, e.g. ``base/16384/16390``."""
    database_oid: int
    relfilenode: int
    blocks: int
    kind: str
    access_method: str | None


def _target(ctx: FaultContext, database: str, relation: str) -> _Target:
    rows = ctx.backend.sql(ctx.source, (
        "SELECT c.oid::regclass::text, pg_relation_filepath(c.oid), "
        "(SELECT oid FROM pg_database WHERE datname = current_database())::bigint, "
        "pg_relation_filenode(c.oid)::bigint, "
        "(pg_relation_size(c.oid) / current_setting('block_size')::int)::bigint, c.relkind::text, am.amname::text "
        "FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam WHERE c.oid = to_regclass(%s)"), (relation,),
        dbname=database)
    if not rows:
        raise UsageError(f"relation {relation!r} does not exist in database {database!r} of {ctx.source.name}")
    name, path, dboid, node, blocks, kind, am = rows[0]
    if not path.startswith("base/"):
        raise UsageError(f"{relation}: only relations in the default tablespace can be damaged ({path})")
    return _Target(name, path, int(dboid), int(node), int(blocks), kind, am)


def _newest_backup(ctx: FaultContext) -> BaseBackup:
    _, backups, _ = read_server_archive(ctx.backend.store, ctx.backend.destination.key(ctx.source.server_name),
                                        ctx.source.server_name, ctx.segment_size)
    done = [b for b in backups if b.done and b.begin_lsn is not None]
    if not done:
        raise UsageError(f"no completed base backup of {ctx.source.server_name} to damage")
    return max(done, key=lambda b: b.backup_id)


def _blocks_touched_since(ctx: FaultContext, backup: BaseBackup, target: _Target) -> set[int]:
    """Main-fork blocks of ``target`` referenced by any WAL record from the backup's start to now."""
    ctx.backend.sql(ctx.source, "CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    rows = ctx.backend.sql(ctx.source, (
        "SELECT DISTINCT relblocknumber FROM pg_get_wal_block_info(%s::pg_lsn, pg_current_wal_insert_lsn(), false) "
        "WHERE reldatabase = %s AND relfilenode = %s AND relforknumber = 0"),
        (str(backup.begin_lsn), target.database_oid, target.relfilenode))
    return {int(r[0]) for r in rows}


@dataclass
class _TarObject:
    key: str
    compression: str | None
    data: bytearray
    member: str
    member_offset: int


def _find_member(ctx: FaultContext, backup: BaseBackup, member_path: str) -> _TarObject:
    prefix = ctx.backend.destination.key(ctx.source.server_name, "base", backup.backup_id) + "/"
    candidates = []
    for obj in ctx.backend.store.list(prefix):
        name = obj.key.rsplit("/", 1)[-1]
        suffix = next((s for s in _COMPRESSIONS if name.endswith(s)), None)
        if name.startswith("data") and suffix:
            candidates.append((obj.key, _COMPRESSIONS[suffix]))
        elif name.startswith("data") and ".tar." in name:
            raise UsageError(f"{obj.key}: only uncompressed, gzip and bzip2 base backups can be damaged")
    for key, compression in sorted(candidates):
        raw = ctx.backend.store.get(key)
        data = bytearray(gzip.decompress(raw) if compression == "gzip" else
                         bz2.decompress(raw) if compression == "bzip2" else raw)
        with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
            for member in tar.getmembers():
                if member.name.lstrip("./") == member_path and member.isfile():
                    return _TarObject(key, compression, data, member.name, member.offset_data)
    raise UsageError(f"{member_path} not found in the data tar object(s) of backup {backup.backup_id}")


def _put_back(ctx: FaultContext, obj: _TarObject) -> int:
    body = bytes(obj.data)
    if obj.compression == "gzip":
        body = gzip.compress(body, compresslevel=6)
    elif obj.compression == "bzip2":
        body = bz2.compress(body)
    ctx.backend.store.put(obj.key, body)
    return len(body)


def _damage(ctx: FaultContext, database: str, relation: str, want_index: bool, fix_checksum: bool) -> FaultRecord:
    target = _target(ctx, database, relation)
    if want_index and (target.kind != "i" or target.access_method != "btree"):
        raise UsageError(f"{relation} is not a B-tree index (relkind {target.kind}, access method {target.access_method})")
    if not want_index and target.kind not in ("r", "m", "t"):
        raise UsageError(f"{relation} is not a table (relkind {target.kind})")
    backup = _newest_backup(ctx)
    touched = _blocks_touched_since(ctx, backup, target)
    # Blocks in the backup's copy of the file; the tar holds the file as it was during the backup.
    untouched = [b for b in range(target.blocks) if b not in touched]
    if not untouched:
        raise UsageError(f"every block of {relation} is touched by WAL after backup {backup.backup_id}; "
                         "replay would repair any damage (use a table the workload does not write)")
    by_segment: dict[int, list[int]] = {}
    for block in untouched:
        by_segment.setdefault(block // pages.RELSEG_BLOCKS, []).append(block)
    segment, blocks = sorted(by_segment.items())[0]
    member_path = target.filepath + (f".{segment}" if segment else "")
    obj = _find_member(ctx, backup, member_path)
    # Prefer a block in the middle: not the index metapage, not the root, not block 0 of a heap.
    ordered = sorted(blocks, key=lambda b: abs(b - (blocks[0] + blocks[-1]) // 2))
    for block in ordered:
        start = obj.member_offset + (block % pages.RELSEG_BLOCKS) * pages.BLCKSZ
        page = bytes(obj.data[start:start + pages.BLCKSZ])
        if len(page) < pages.BLCKSZ or pages.header(page).is_new:
            continue
        items = [lp for lp in pages.line_pointers(page) if lp.flags == pages.LP_NORMAL and lp.length > 24]
        if want_index:
            flags = pages.btree_flags(page)
            if flags is None or not flags & pages.BTP_LEAF or flags & (pages.BTP_DELETED | pages.BTP_HALF_DEAD):
                continue
            # On a leaf that is not the rightmost, item 1 is the high key: damage a data item.
            items = [lp for lp in pages.line_pointers(page) if lp.flags == pages.LP_NORMAL and lp.number > 1]
            if not items:
                continue
            item = items[len(items) // 2]
            offset = item.offset + 8  # past IndexTupleData (t_tid, t_info): the first key bytes
        else:
            if not items:
                continue
            item = items[len(items) // 2]
            offset = item.offset + 24  # past the heap tuple header: user data
        damaged = pages.flip(page, offset, 4)
        if fix_checksum:
            damaged = pages.with_checksum(damaged, block)
        obj.data[start:start + pages.BLCKSZ] = damaged
        size = _put_back(ctx, obj)
        what = "index" if want_index else "table"
        return FaultRecord(
            "corrupt_index_page" if want_index else "corrupt_heap_page",
            f"flipped 4 bytes of {what} {target.relation} block {block} (item {item.number}) inside "
            f"{obj.key.rsplit('/', 3)[-2]}/{obj.key.rsplit('/', 1)[-1]} "
            + ("with a recomputed page checksum" if fix_checksum else "(page checksum now wrong)"),
            evidence={"database": database, "relation": target.relation, "kind": what, "block": block,
                      "item": item.number, "page_offset": offset, "file": member_path, "tar_member": obj.member,
                      "object_key": obj.key, "object_size": size, "compression": obj.compression or "none",
                      "backup_id": backup.backup_id, "backup_begin_lsn": str(backup.begin_lsn),
                      "checksum_before": pages.header(page).checksum,
                      "checksum_after": pages.header(damaged).checksum, "fix_checksum": fix_checksum,
                      "blocks_in_relation": target.blocks, "blocks_touched_by_later_wal": sorted(touched)})
    raise UsageError(f"no damageable {'B-tree leaf' if want_index else 'heap'} page of {relation} in the backup "
                     "outside the blocks later WAL touches")


def corrupt_heap_page(ctx: FaultContext, params: CorruptHeapPageParams) -> FaultRecord:
    return _damage(ctx, params.database, params.table, False, params.fix_checksum)


def corrupt_index_page(ctx: FaultContext, params: CorruptIndexPageParams) -> FaultRecord:
    return _damage(ctx, params.database, params.index, True, params.fix_checksum)
