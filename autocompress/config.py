"""Strict construction of frozen config dataclasses from YAML-like dicts.

Unknown keys and values of the wrong type are ConfigErrors naming the dotted field, the bad
value and what is allowed. The field's type hint drives the check: a ``float`` is a finite
number (no nan, inf or overflow), an ``int`` a whole number (never a bool), a ``str`` a string,
a ``dict[str, ...]`` a mapping with string keys. Choices and ranges are declared once, on the
field, with :func:`choice` and :func:`bounded`, so every field added later is checked too::

    threads: int = bounded(1, ge=1)
    lr: float = bounded(1e-3, gt=0)
    optimizer: str = choice("adam", ("adam", "sgd"))
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from autocompress.errors import ConfigError, invalid, unknown_key

T = TypeVar("T")
_NUMBER = "a finite number"


def load_yaml(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}: file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path}: invalid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path}: expected a mapping at the top level")
    return raw


@dataclass(frozen=True)
class Bounds:
    """An interval a numeric field must lie in; a None end is open-ended."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        """True when ``value`` lies in the interval."""
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self, kind: str) -> str:
        """``kind`` ("an integer", "a number") with the interval, e.g. ``a number > 0``."""
        parts = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                             ("<", self.lt)) if v is not None]
        return " and ".join([f"{kind} {parts[0]}", *parts[1:]]) if parts else kind


def choice(default: Any, options: tuple[Any, ...]) -> Any:
    """A dataclass field whose value must be one of ``options``."""
    return dataclasses.field(default=default, metadata={"choices": options})


def bounded(default: Any = MISSING, *, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, **kwargs: Any) -> Any:
    """A numeric dataclass field that must lie in a range (None always passes when allowed).

    Args:
        default: The field's default.
        ge: Inclusive lower bound.
        gt: Exclusive lower bound.
        le: Inclusive upper bound.
        lt: Exclusive upper bound.
        **kwargs: Further ``dataclasses.field`` arguments (``metadata`` is merged).

    Returns:
        The field, for a dataclass body.
    """
    metadata = {**kwargs.pop("metadata", {}), "bounds": Bounds(ge, gt, le, lt)}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def build(cls: type[T], raw: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``raw`` (a mapping), recursively and strictly."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise invalid(where or _label(cls), raw, "a mapping with keys " + ", ".join(_names(cls)))
    check_keys(cls, raw, where)
    _check_required(cls, raw, where)
    fields, hints = {f.name: f for f in dataclasses.fields(cls)}, _hints(cls)
    values = {}
    for name, value in raw.items():
        path = f"{where}.{name}" if where else name
        values[name] = _convert(value, hints[name], path, fields[name].metadata.get("bounds"))
        _check_declared(fields[name], values[name], hints[name], path)
    try:
        return cls(**values)
    except ConfigError as exc:  # from __post_init__, which knows its own name, not ``where``
        if not where or str(exc).startswith(where):
            raise
        raise _relocate(exc, where) from None
    except (TypeError, ValueError, ArithmeticError) as exc:  # a __post_init__ that trusted input
        raise ConfigError(f"{where or _label(cls)}: {exc}") from None


def check_fields(obj: Any, where: str = "") -> None:
    """Check every field of a built dataclass against its type, choices and bounds, recursively.

    This re-checks values set without :func:`build`, e.g. by ``dataclasses.replace``.

    Raises:
        ConfigError: naming the dotted field, the value and what is allowed.
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        path = f"{where}.{f.name}" if where else f.name
        value = getattr(obj, f.name)
        _convert(value, hints[f.name], path, f.metadata.get("bounds"))
        _check_declared(f, value, hints[f.name], path)


def check_choices(obj: Any, where: str) -> None:
    """Raise if a field declared with :func:`choice` holds a value outside its options."""
    for f in dataclasses.fields(obj):
        options = f.metadata.get("choices")
        if options is not None and getattr(obj, f.name) not in options:
            raise invalid(f"{where}.{f.name}", getattr(obj, f.name), options)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass (resolving them is slow; classes do not change)."""
    return typing.get_type_hints(cls)


def _label(cls: type) -> str:
    return cls.__name__.lower()


def _relocate(exc: ConfigError, where: str) -> ConfigError:
    """Re-root a message about ``section.field`` at ``where`` (e.g. ``training.distillation``)."""
    message, section = str(exc), where.rsplit(".", 1)[-1]
    if message.startswith(f"{section}."):
        return ConfigError(where + message[len(section):])
    return ConfigError(f"{where}: {message}")


def check_keys(cls: type, raw: Mapping, where: str) -> None:
    """Refuse the first key of ``raw`` that is not a field of ``cls``, suggesting a near one."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted((k for k in raw if not (isinstance(k, str) and k in names)), key=repr)
    if not unknown:
        return
    raise unknown_key(f"{where}.{unknown[0]}" if where else str(unknown[0]), _names(cls))


def _check_required(cls: type, raw: Mapping, where: str) -> None:
    for f in dataclasses.fields(cls):
        if f.default is MISSING and f.default_factory is MISSING and f.name not in raw:
            raise ConfigError(f"{where or _label(cls)}: missing required key {f.name!r}")


def _names(cls: type) -> list[str]:
    """The user-facing fields (``internal`` ones, set by the loader, are left out)."""
    return [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _check_declared(f: dataclasses.Field, value: Any, hint: Any, where: str) -> None:
    """The field's declared choices and bounds (None passes: its type allowed it)."""
    options = f.metadata.get("choices")
    if options is not None and value not in options:
        raise invalid(where, value, options)
    bounds = f.metadata.get("bounds")
    if bounds is not None and value is not None and not bounds.holds(value):
        kinds = {hint, *typing.get_args(hint)}
        raise invalid(where, value, bounds.describe("a number" if float in kinds else "an integer"))


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _convert(value: Any, hint: Any, where: str, bounds: Bounds | None = None) -> Any:
    """``value`` as a ``hint``; ``bounds`` only words the error of a wrong scalar."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        # ``int | float`` (e.g. Lightning's batch limits: a count or a fraction) keeps the kind
        hint = float if {int, float} <= set(typing.get_args(hint)) and isinstance(
            value, float) else _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            check_fields(value, where)
            return value
        return build(hint, value, where)
    if hint is Any:
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise invalid(where, value, "a list")
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _mapping(value, args, where)
    return scalar(value, hint, where, bounds)


def _mapping(value: Any, args: tuple[Any, ...], where: str) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise invalid(where, value, "a mapping")
    key_type, value_type = args if args else (Any, Any)
    out = {}
    for key, item in value.items():
        if key_type is str and not isinstance(key, str):
            raise invalid(f"{where} key", key, "a string")
        out[key] = _convert(item, value_type, f"{where}.{key}")
    return out


def scalar(value: Any, hint: Any, where: str, bounds: Bounds | None = None) -> Any:
    """``value`` as a ``hint`` (bool, int, float, str...), strictly; floats must be finite.

    Args:
        value: The value given.
        hint: The field's type (Optional already removed).
        where: Dotted field name, for the error.
        bounds: The field's range, only to word the error.

    Raises:
        ConfigError: naming the field, the value and the type (and range) allowed.
    """
    converted = _as(value, hint)
    if converted is _REFUSED:
        kind = _NUMBER if hint is float else _kind(hint)
        raise invalid(where, value, bounds.describe(kind) if bounds else kind)
    return converted


_REFUSED = object()


def _as(value: Any, hint: Any) -> Any:
    """``value`` as a ``hint``, or ``_REFUSED``.

    Floats are finite (numeric strings too: YAML reads 1e-3 as a string); ints never come from
    a bool or a fractional float; bools only from bools.
    """
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return _REFUSED
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return _REFUSED
        return number if math.isfinite(number) else _REFUSED
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        return _REFUSED
    if hint is bool:
        return value if isinstance(value, bool) else _REFUSED
    return value if isinstance(hint, type) and isinstance(value, hint) else _REFUSED


def _kind(hint: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, f"a value of type {getattr(hint, '__name__', hint)}")


def to_dict(obj: Any) -> Any:
    """A config dataclass as plain dicts/lists (YAML / JSON ready)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
