"""The search-space YAML: rules that select layers and give each method's knobs a distribution.

Example::

    layers:
      - select: {type: Conv2d}
        methods: {prune: {ratio: {low: 0.0, high: 0.5, step: 0.125}},
                  quantize: {bits: {choices: [2, 4, 8, 32]}}}
      - select: {name: "classifier.*"}
        methods: {svd: {rank_ratio: {low: 0.1, high: 1.0, step: 0.1}}}
    distillation:
      temperature: {low: 1.0, high: 8.0}
      alpha: {low: 0.1, high: 0.9}

Rules apply in order; a later rule overrides an earlier one for the same layer and knob.
Identity values (ratio 0, rank_ratio 1, 32 bits) mean "leave the layer as it is".
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autocompress.config import load_yaml
from autocompress.errors import invalid, unknown_key
from autocompress.methods import get_method
from autocompress.methods.base import FACTORIZE, PRUNE, QUANTIZE, SPARSIFY
from autocompress.methods.plan import TRAINING
from autocompress.space.distributions import (
    Constant,
    Distribution,
    Range,
    parse_distribution,
    values_of,
)

_RULE_KEYS = {"select", "methods", "choose"}
NONE = "none"
# A rule's ``choose`` groups alternative methods by stage: one of them (or none) per layer.
CHOICE_STAGES = {"prune": PRUNE, "factorize": FACTORIZE, "sparsify": SPARSIFY,
                 "quantize": QUANTIZE}
_SELECT_KEYS = {"name", "type"}
_TOP_KEYS = {"name", "description", "layers", *TRAINING}


@dataclass(frozen=True)
class Rule:
    """Layers selected by name pattern(s) and/or type(s), and the knobs they get."""

    names: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    knobs: dict[str, dict[str, Distribution]] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search-space file."""

    rules: tuple[Rule, ...]
    training: dict[str, dict[str, Distribution]] = field(default_factory=dict)
    name: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """Load and validate a search-space YAML file."""
        path = Path(path)
        raw = load_yaml(path, "search space")
        return cls.from_dict(raw, name=path.stem)

    @classmethod
    def from_dict(cls, raw: Any, name: str = "") -> SearchSpace:
        """Validate a search space given as a dict."""
        if not isinstance(raw, dict):
            raise invalid("space", raw, "a mapping with keys " + ", ".join(sorted(_TOP_KEYS)))
        _no_unknown(raw, _TOP_KEYS, "space")
        for key in ("name", "description"):
            if not isinstance(raw.get(key, ""), str):
                raise invalid(f"space.{key}", raw[key], "a string")
        rules = raw.get("layers") or []
        if not isinstance(rules, list):
            raise invalid("space.layers", rules, "a list of rules")
        parsed = tuple(_parse_rule(r, f"space.layers[{i}]") for i, r in enumerate(rules))
        training = {key: _parse_knobs(config_cls, raw[key], f"space.{key}")
                    for key, config_cls in TRAINING.items() if raw.get(key) is not None}
        return cls(parsed, training, raw.get("name", name), raw)


def _no_unknown(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted((k for k in raw if k not in allowed), key=repr)
    if unknown:
        raise unknown_key(f"{where}.{unknown[0]}", sorted(allowed))


def _parse_rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise invalid(where, raw, "a mapping with keys select, methods")
    _no_unknown(raw, _RULE_KEYS, where)
    select = raw.get("select") or {}
    if not isinstance(select, dict) or not select:
        raise invalid(f"{where}.select", select, "a mapping with name and/or type")
    _no_unknown(select, _SELECT_KEYS, f"{where}.select")
    methods = raw.get("methods") or {}
    if not isinstance(methods, dict):
        raise invalid(f"{where}.methods", methods, "a mapping of method name to knobs")
    knobs = {}
    for method, fields in methods.items():
        config_cls = get_method(method, f"{where}.methods").config
        knobs[method] = _parse_knobs(config_cls, fields or {}, f"{where}.methods.{method}")
    choices = _parse_choose(raw.get("choose") or {}, f"{where}.choose")
    for names in choices.values():  # a chosen method with no knobs runs with its defaults
        knobs.update({m: {} for m in names if m != NONE and m not in knobs})
    names = _strings(select.get("name"), f"{where}.select.name")
    for pattern in names:
        _check_pattern(pattern, f"{where}.select.name")
    return Rule(names, _strings(select.get("type"), f"{where}.select.type"), knobs, choices)


def _check_pattern(pattern: str, where: str) -> None:
    """A ``re:`` pattern must compile (a glob always does)."""
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as exc:
            raise invalid(where, pattern, f"a glob or re:REGEX ({exc})") from None


def _parse_choose(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    """``{stage: [none, method, ...]}``: which alternative a layer gets is searched."""
    if not isinstance(raw, dict):
        raise invalid(where, raw, f"a mapping of stage ({', '.join(CHOICE_STAGES)}) to methods")
    _no_unknown(raw, set(CHOICE_STAGES), where)
    choices = {}
    for stage, names in raw.items():
        names = _strings(names, f"{where}.{stage}")
        if len(names) < 2:
            raise invalid(f"{where}.{stage}", raw[stage], "a list of at least two alternatives")
        for name in names:
            if name != NONE and get_method(name, f"{where}.{stage}").config.stage != (
                    CHOICE_STAGES[stage]):
                raise invalid(f"{where}.{stage}", name, f"'{NONE}' or a {stage}-stage method")
        choices[stage] = names
    return choices


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise invalid(where, value, "a string or a list of strings")
    return tuple(values)


def _parse_knobs(config_cls, raw: Any, where: str) -> dict[str, Distribution]:
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if not isinstance(raw, dict):
        raise invalid(where, raw, f"a mapping of knobs {sorted(fields)}")
    _no_unknown(raw, fields, where)
    knobs = {k: parse_distribution(v, f"{where}.{k}") for k, v in raw.items()}
    hints = typing.get_type_hints(config_cls)
    for knob, dist in knobs.items():  # Optuna suggests floats from a range that is not integer
        kinds = {hints[knob], *typing.get_args(hints[knob])}
        if isinstance(dist, Range) and int in kinds and float not in kinds and not dist.is_int():
            raise invalid(f"{where}.{knob}", {"low": dist.low, "high": dist.high,
                                              "step": dist.step},
                          "an integer range (low, high and step integers) for an integer knob")
    fixed = {k: d.value for k, d in knobs.items() if isinstance(d, Constant)}
    for knob, dist in knobs.items():
        for value in values_of(dist):  # every reachable extreme must make a valid config
            config_cls.from_dict({**fixed, knob: value}, where)  # errors name where.knob
    return knobs
