"""Strict construction of frozen config dataclasses from YAML-like dicts.

Unknown keys and values of the wrong type are ConfigErrors naming the dotted field, the bad
value and what is allowed. Field-level choices are declared with ``choice(...)`` metadata.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from autocompress.errors import ConfigError, invalid, unknown_key

T = TypeVar("T")


def load_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    return raw


def choice(default: Any, options: tuple[Any, ...]) -> Any:
    """A dataclass field whose value must be one of ``options``."""
    return dataclasses.field(default=default, metadata={"choices": options})


def build(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``raw`` (a mapping), recursively and strictly."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise invalid(where, raw, "a mapping with keys " + ", ".join(_names(cls)))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(cls, raw, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        path = f"{where}.{name}" if where else name
        values[name] = _convert(value, hints[name], path)
        options = fields[name].metadata.get("choices")
        if options is not None and values[name] not in options:
            raise invalid(path, value, options)
    try:
        return cls(**values)
    except ConfigError as exc:  # from __post_init__, which knows its own name, not ``where``
        if not where or str(exc).startswith(where):
            raise
        raise _relocate(exc, where) from None


def _relocate(exc: ConfigError, where: str) -> ConfigError:
    """Re-root a message about ``section.field`` at ``where`` (e.g. ``training.distillation``)."""
    message, section = str(exc), where.rsplit(".", 1)[-1]
    if message.startswith(f"{section}."):
        return ConfigError(where + message[len(section):])
    return ConfigError(f"{where}: {message}")


def check_keys(cls: type, raw: Mapping, where: str) -> None:
    """Refuse the first key of ``raw`` that is not a field of ``cls``, suggesting a near one."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if not unknown:
        return
    raise unknown_key(f"{where}.{unknown[0]}" if where else str(unknown[0]), _names(cls))


def _names(cls: type) -> list[str]:
    """The user-facing fields (``internal`` ones, set by the loader, are left out)."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise invalid(where, value, "a list")
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise invalid(where, value, "a mapping")
        return dict(value)
    return _scalar(value, hint, where)


def _scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-3 as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(hint, type) and isinstance(value, hint) and not (
        hint is int and isinstance(value, bool)
    ):
        return value
    raise invalid(where, value, f"a value of type {getattr(hint, '__name__', hint)}")


def check_choices(obj: Any, where: str) -> None:
    """Raise if a field declared with :func:`choice` holds a value outside its options."""
    for f in dataclasses.fields(obj):
        options = f.metadata.get("choices")
        if options is not None and getattr(obj, f.name) not in options:
            raise invalid(f"{where}.{f.name}", getattr(obj, f.name), options)


def to_dict(obj: Any) -> Any:
    """A config dataclass as plain dicts/lists (YAML / JSON ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
