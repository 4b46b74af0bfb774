"""Strict loading of plain mappings (TOML/YAML) into frozen dataclasses.

An unknown key, a wrong type or a value outside a ``Literal`` is a ``ConfigError`` naming
the file, the dotted key and what is allowed.  Shared by config and scenario loading; command
lines are checked as strictly (``ArgumentParser``: one line, no usage block).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin, get_type_hints

from pgdrill.errors import ConfigError, UsageError

T = TypeVar("T")


def load(cls: type[T], data: Any, where: str, path: str = "") -> T:
    """Build ``cls`` from ``data``; ``where`` names the source (a file) for messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {path or 'top level'} must be a table/mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields), key=str)  # YAML keys may be numbers or null
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


def read_text(file: Path, what: str, fix: str = "") -> str:
    """A config or scenario file as UTF-8 text; a one-line ``ConfigError`` naming the file otherwise."""
    hint = f": {fix}" if fix else ""
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {file} does not exist{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {file} is a directory, not a file{hint}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {file} cannot be read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}): "
                          "save it as UTF-8") from None


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` whose errors raise one ``UsageError`` line instead of printing the usage
    block and exiting: the caller prints it and exits 2, like any other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
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
