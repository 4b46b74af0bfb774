"""Public names of a package that load their module on first use (PEP 562).

A package's face lists its public API explicitly without importing it, so ``import pgdrill``
(or ``pgdrill.audit``) stays cheap and no module inside a package has to import its package's
face: the import graph stays free of circles (tests/test_architecture.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, public: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``public`` maps each name to its module."""
    def getattr_(name: str) -> Any:
        if name in public:
            return getattr(importlib.import_module(public[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted([*vars(importlib.import_module(package)), *public])

    return getattr_, dir_
