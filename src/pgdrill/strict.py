"""Strict loading of plain mappings (TOML/YAML) into frozen dataclasses.

An unknown key, a wrong type or a value outside a ``Literal`` is a ``ConfigError`` naming
the file, the dotted key and what is allowed.  Shared by config and scenario loading.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from pgdrill.errors import ConfigError

T = TypeVar("T")


def load(cls: type[T], data: Any, where: str, path: str = "") -> T:
    """Build ``cls`` from ``data``; ``where`` names the source (a file) for messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path or 'top level'} must be a table/mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        dotted = ", ".join(_join(path, k) for k in unknown)
        raise ConfigError(f"{where}: unknown key {dotted} (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], where, _join(path, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {_join(path, name)}")
    return cls(**kwargs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else str(key)


def _convert(hint: Any, value: Any, where: str, path: str) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(
                f"{where}: {path} = {value!r} is not allowed (allowed: {', '.join(map(repr, allowed))})"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {path} has an invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {path} must be a list, got {type(value).__name__}")
        (item,) = get_args(hint)[:1]
        converted = [_convert(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {path} must be a mapping, got {type(value).__name__}")
        _, item = get_args(hint)
        return {str(k): _convert(item, v, where, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return load(hint, value, where, path)  # type: ignore[arg-type]
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {path} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {path} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {path} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {path} must be a string, got {value!r}")
        return value
    raise TypeError(f"strict loader cannot handle type {hint!r} at {path}")
