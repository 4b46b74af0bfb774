"""Seed data sets (``fixtures/<name>.yaml``): schema, owner, and the ledger's write statements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pgdrill import strict
from pgdrill.errors import ConfigError


@dataclass(frozen=True)
class TableSpec:
    insert: str
    """One ledger write: a new row; ``%(id)s`` is bound to the key, ``%(version)s`` to the version."""
    update: str = ""
    """Optional: change one existing row (``%(id)s``) and set its version (``%(version)s``)."""
    delete: str = ""
    """Optional: remove one existing row (``%(id)s``)."""
    version_column: str = ""
    """Column holding the version each write sets (the write's ledger sequence number); it lets a
    detector tell whether an update's effect survived.  Required when ``update`` is set."""


@dataclass(frozen=True)
class Fixture:
    database: str
    owner: str
    setup: str
    schema: str
    tables: dict[str, TableSpec] = field(default_factory=dict)


def load_fixture(name: str, directory: Path) -> Fixture:
    path = directory / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in directory.glob("*.yaml"))) or "none"
        raise ConfigError(f"fixture {name!r} not found in {directory} (available: {available})")
    fixture = strict.load(Fixture, yaml.safe_load(path.read_text()), str(path))
    for table, spec in fixture.tables.items():
        where = f"{path}: tables.{table}"
        if spec.update and not spec.version_column:
            raise ConfigError(f"{where}.version_column is required with an update statement "
                              "(without it no detector can tell whether an update survived)")
        if spec.version_column:
            for op in ("insert", "update"):
                statement = getattr(spec, op)
                if statement and "%(version)s" not in statement:
                    raise ConfigError(f"{where}.{op} must set {spec.version_column} = %(version)s")
    return fixture
