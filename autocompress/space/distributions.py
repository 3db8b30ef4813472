"""Knob distributions of a search space: constants, numeric ranges and categorical choices."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from autocompress.errors import ConfigError, invalid


class TrialLike(Protocol):
    """The part of ``optuna.Trial`` a define-by-run space uses."""

    def suggest_float(self, name, low, high, *, step=None, log=False): ...  # noqa: D102
    def suggest_int(self, name, low, high, *, step=1, log=False): ...  # noqa: D102
    def suggest_categorical(self, name, choices): ...  # noqa: D102


@dataclass(frozen=True)
class Constant:
    """A fixed value (not searched)."""

    value: Any

    def suggest(self, trial: TrialLike, name: str) -> Any:  # noqa: D102
        return self.value


@dataclass(frozen=True)
class Range:
    """A numeric range, integer when both bounds (and step) are integers."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def is_int(self) -> bool:  # noqa: D102
        values = (self.low, self.high) + ((self.step,) if self.step is not None else ())
        return all(isinstance(v, int) and not isinstance(v, bool) for v in values)

    def suggest(self, trial: TrialLike, name: str) -> Any:  # noqa: D102
        if self.is_int():
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class Choice:
    """One of a list of values."""

    choices: tuple[Any, ...]

    def suggest(self, trial: TrialLike, name: str) -> Any:  # noqa: D102
        return trial.suggest_categorical(name, list(self.choices))


Distribution = Constant | Range | Choice
_RANGE_KEYS = {"low", "high", "step", "log"}


def parse_distribution(raw: Any, where: str) -> Distribution:
    """Parse ``4``, ``{choices: [...]}`` or ``{low, high, step?, log?}``.

    Raises:
        ConfigError: naming ``where`` when the value is none of these forms.
    """
    if not isinstance(raw, dict):
        if isinstance(raw, (list, tuple)):
            raise invalid(where, raw, "a constant, {choices: [...]} or {low, high[, step][, log]}")
        return Constant(raw)
    if set(raw) == {"choices"}:
        return _parse_choice(raw["choices"], where)
    unknown = [k for k in raw if k not in _RANGE_KEYS]
    if unknown or not {"low", "high"} <= set(raw):
        raise ConfigError(
            f"{where}: invalid distribution keys {sorted(raw, key=repr)}; allowed: "
            "{choices: [...]} or {low, high[, step][, log]}"
        )
    return _parse_range(raw, where)


def _parse_choice(choices: Any, where: str) -> Choice:
    if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
        raise invalid(f"{where}.choices", choices, "a non-empty list")
    for i, value in enumerate(choices):  # what Optuna can store as a categorical value
        if not (value is None or isinstance(value, (bool, int, str))
                or isinstance(value, float) and math.isfinite(value)):
            raise invalid(f"{where}.choices[{i}]", value,
                          "a finite number, a string, true, false or null")
    return Choice(tuple(choices))


def _parse_range(raw: dict, where: str) -> Range:
    for key in ("low", "high", "step"):
        value = raw.get(key)
        if key == "step" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise invalid(f"{where}.{key}", value, "a finite number")
    if raw["low"] > raw["high"]:
        raise invalid(f"{where}.low", raw["low"], f"a number <= high ({raw['high']})")
    if raw.get("step") is not None and raw["step"] <= 0:
        raise invalid(f"{where}.step", raw["step"], "a number > 0")
    if not isinstance(raw.get("log", False), bool):
        raise invalid(f"{where}.log", raw["log"], "true or false")
    if raw.get("log") and raw["low"] <= 0:
        raise invalid(f"{where}.low", raw["low"], "a number > 0 when log is true")
    dist = Range(raw["low"], raw["high"], raw.get("step"), raw.get("log", False))
    if dist.log and dist.step is not None and not (dist.is_int() and dist.step == 1):
        raise invalid(f"{where}.step", dist.step, "no step when log is true (Optuna's rule)")
    return dist


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


MAX_CHECKED = 1024  # integer ranges up to this many values are validated value by value


def values_of(dist: Distribution) -> list[Any]:
    """The values of a distribution that validation tries against the method's config.

    Every value of a small integer range (e.g. ``bits: {low: 8, high: 16}`` reaches 12, which
    no quantizer takes), else the extremes: the configs' numeric rules are intervals.
    """
    if isinstance(dist, Constant):
        return [dist.value]
    if isinstance(dist, Choice):
        return list(dist.choices)
    if dist.is_int():
        step = 1 if dist.log else (dist.step or 1)  # Optuna: a log int range has step 1
        if (dist.high - dist.low) // step < MAX_CHECKED:
            return list(range(dist.low, dist.high + 1, step))
    return [dist.low, dist.high]
