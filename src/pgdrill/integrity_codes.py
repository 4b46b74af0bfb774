"""Finding codes of the integrity detectors (issue 9), registered once on import."""

from __future__ import annotations

from .findings import Severity, catalogue, register_code


def _code(code: str, severity: Severity, title: str, remedy: str) -> str:
    # Idempotent, so importing this module twice (e.g. under two names in a test run) is harmless.
    return code if code in catalogue() else register_code(code, severity, title, remedy)


DATA_CHECKSUM_FAILURE = _code(
    "DATA_CHECKSUM_FAILURE", Severity.CRITICAL,
    "A data page of the recovered cluster fails its checksum",
    "The page was damaged in the base backup, in storage or in transit. Do not use this backup: "
    "recover from an older one, and check the object's integrity in the bucket.",
)
HEAP_CORRUPTION = _code(
    "HEAP_CORRUPTION", Severity.CRITICAL,
    "amcheck found a damaged table page in the recovered cluster",
    "Queries touching this block fail or return wrong rows. Recover from another backup; "
    "the evidence names the block and amcheck's message.",
)
INDEX_CORRUPTION = _code(
    "INDEX_CORRUPTION", Severity.CRITICAL,
    "amcheck found a B-tree index that does not match its structure or its table",
    "Index scans may miss or invent rows. REINDEX repairs the index if the table is sound; "
    "find why the backup held a damaged index page.",
)
CONTENT_MISMATCH = _code(
    "CONTENT_MISMATCH", Severity.CRITICAL,
    "Rows in the recovered cluster differ from what the source held at the recovery point",
    "Row counts can match while content does not (lost UPDATEs, damaged pages). The evidence names "
    "the table and the key range that differ; compare the archive with the ledger.",
)
DATABASE_UNREACHABLE = _code(
    "DATABASE_UNREACHABLE", Severity.CRITICAL,
    "A database of the recovered cluster cannot be connected to",
    "The database is missing or its catalog is damaged; the recovery is not usable for its applications.",
)
