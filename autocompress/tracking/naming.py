"""Run names that say what a trial is: its number and a short summary of its plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["plan_summary", "trial_run_name"]

_MAX = 60  # characters of plan summary in a run name
_PERCENT = ("ratio", "rank_ratio", "sparsity", "amount")


def trial_run_name(number: int, params: Mapping[str, Any]) -> str:
    """``t007 prune 25-50% · quantize 4/8-bit`` for the 7th trial of a search."""
    summary = plan_summary(params)
    return f"t{number:03d} {summary}" if summary else f"t{number:03d}"


def plan_summary(params: Mapping[str, Any]) -> str:
    """What a plan's layers got, per method, from its flat params (``layers/L/M/knob``).

    Each method lists the values of its first knob over the layers: ratios as percents, bits
    as ``-bit``; methods with no knob just by name. Plans without layers give ``""``.
    """
    knobs: dict[str, tuple[str, set[float | str]]] = {}
    for key, value in params.items():
        parts = str(key).split("/")
        if parts[0] != "layers" or len(parts) < 3:
            continue
        method, knob = parts[2], parts[3] if len(parts) > 3 else ""
        name, values = knobs.setdefault(method, (knob, set()))
        if knob == name and knob:
            values.add(_number(value))
    text = " · ".join(_method(m, k, v) for m, (k, v) in knobs.items())
    return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


def _number(value: Any) -> float | str:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _method(method: str, knob: str, values: set[float | str]) -> str:
    numbers = sorted(v for v in values if isinstance(v, float))
    if not numbers:
        return method
    if knob == "bits":
        return f"{method} {'/'.join(f'{v:g}' for v in numbers)}-bit"
    if knob in _PERCENT:
        low, high = (round(100 * v) for v in (numbers[0], numbers[-1]))
        return f"{method} {low}%" if low == high else f"{method} {low}-{high}%"
    low, high = numbers[0], numbers[-1]
    return f"{method} {low:g}" if low == high else f"{method} {low:g}-{high:g}"
