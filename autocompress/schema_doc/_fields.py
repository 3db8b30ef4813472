"""Read a config dataclass's fields: type, default, allowed values and description."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING
from typing import Any

import yaml


def attributes(cls: type) -> dict[str, str]:
    """The ``Attributes:`` entries of a class's Google-style docstring, MRO included.

    Examples:
        >>> from autocompress.methods import PruneConfig
        >>> attributes(PruneConfig)["ratio"]
        'Fraction of output channels to remove, in [0, 1).'
    """
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        found.update(_docstring_attributes(inspect.getdoc(klass) or ""))
    return found


def _docstring_attributes(doc: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    inside, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break  # the next section (or prose) ends the list
        match = re.match(r"^ {4}(\w+)(?: \([^)]*\))?: ?(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2).strip()
        elif current and line.strip():
            entries[current] += " " + line.strip()
    return entries


def _comments(cls: type) -> dict[str, str]:
    """The ``#`` comment lines right above each field in the class body (and inline ones)."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass.__module__ == "builtins":
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("#").strip())
                continue
            match = re.match(r"^ {4}(\w+): [^=]+(?:=.*?)?(?:#\s*(.*))?$", line)
            if match and match.group(1) in klass.__dataclass_fields__:
                text = " ".join([*pending, match.group(2) or ""]).strip()
                if text:
                    found[match.group(1)] = text
            pending = []
    return found


def nested(hint: Any) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return inner[0] if inner else None
    return None


def _type_name(hint: Any) -> str:
    if hint is Any:
        return "any"
    if dataclasses.is_dataclass(hint):
        return "section"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}"
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return "mapping"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(hint, str(hint))


def _value(value: Any) -> str:
    """A default as it is written in YAML."""
    if dataclasses.is_dataclass(value):
        return "on (its defaults)"
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return f"`{text.removesuffix('...').strip()}`"


def _default(f: dataclasses.Field) -> str:
    if f.default is not MISSING:
        return _value(f.default)
    if f.default_factory is not MISSING:
        return _value(f.default_factory())
    return "required"


def _allowed(f: dataclasses.Field, hint: Any) -> str:
    options = f.metadata.get("choices")
    if options is not None:
        return "one of " + ", ".join(_value(o) for o in options)
    bounds = f.metadata.get("bounds")
    if bounds is not None:
        kinds = {hint, *typing.get_args(hint)}
        return bounds.describe("a number" if float in kinds else "an integer")
    return ""


def field_rows(cls: type, notes: Mapping[str, str] | None = None
               ) -> Iterator[tuple[str, str, str, str, str]]:
    """``(name, type, default, allowed, description)`` for each user-facing field of ``cls``.

    The description is the class's ``Attributes:`` entry, else the comment above the field,
    else ``notes[name]``, else, for a nested section, a pointer to it.

    Examples:
        >>> from autocompress.recipe import SearchConfig
        >>> next(row for row in field_rows(SearchConfig) if row[0] == "sampler")[:4]
        ('sampler', 'str', '`tpe`', 'one of `tpe`, `nsga2`, `random`')
    """
    hints, docs, comments = typing.get_type_hints(cls), attributes(cls), _comments(cls)
    notes = notes or {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        hint = hints[f.name]
        described = docs.get(f.name) or comments.get(f.name) or notes.get(f.name, "")
        if not described and nested(hint) is not None:
            described = "A section: see below."
        yield f.name, _type_name(hint), _default(f), _allowed(f, hint), markdown(described)


def markdown(text: str) -> str:
    """Docstring markup as Markdown: ````x```` -> ```x```, ``:class:`X``` -> ```X```.

    Examples:
        >>> markdown("``none`` or :class:`Foo`")
        '`none` or `Foo`'
    """
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(cls: type, allowed: bool = True, notes: Mapping[str, str] | None = None
          ) -> list[str]:
    """A Markdown table of ``cls``'s fields (``allowed=False`` drops that column)."""
    columns = ["field", "type", "default", "allowed", "description"]
    if not allowed:  # a method's knobs: their allowed values are in their descriptions
        columns[0:4] = ["knob", "type", "default"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, kind, default, values, described in field_rows(cls, notes):
        cells = [kind, default, *([values] if allowed else []), described]
        lines.append("| " + " | ".join([f"`{name}`", *(_cell(c) for c in cells)]) + " |")
    return lines


def summary(cls: type) -> str:
    """The first paragraph of a class's docstring, on one line."""
    doc = inspect.getdoc(cls) or ""
    return markdown(" ".join(doc.split("\n\n")[0].split()))


__all__ = ["attributes", "field_rows", "markdown", "nested", "summary", "table"]
