"""Plans for people: ``prune 50% · 8-bit`` per layer, and the per-layer table of a plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_PERCENT = ("ratio", "rank_ratio", "sparsity", "amount")
_SEP = " · "


def config_text(method: str, fields: Mapping[str, Any]) -> str:
    """One method's choice in words: ``prune 50%``, ``8-bit``, ``share 4-bit``, ``svd 25%``.

    The method's first numeric knob tells its size; quantization is just its bit width.
    """
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key == "bits":
            return f"{value:g}-bit" if method == "quantize" else f"{method} {value:g}-bit"
        if key in _PERCENT:
            return f"{method} {100 * value:.0f}%"
        return f"{method} {key} {value:g}"
    return method


def layer_choices(plan: Any) -> dict[str, str]:
    """What each layer got: ``{"conv1": "prune 50% · 8-bit", ...}`` for a CompressionPlan."""
    return {name: _SEP.join(config_text(c.method, c.to_dict()) for c in configs)
            for name, configs in plan.layers.items() if configs}


def plan_text(plan: Any, limit: int = 3) -> str:
    """A whole plan on one line: the first ``limit`` layers' choices, then how many more."""
    choices = layer_choices(plan)
    if not choices:
        return "uncompressed"
    shown = [f"{name}: {text}" for name, text in list(choices.items())[:limit]]
    more = len(choices) - limit
    return "; ".join(shown) + (f"; +{more} more" if more > 0 else "")


def plan_from_params(params: Mapping[str, str]) -> Any:
    """A CompressionPlan from MLflow params, or None when they are not a plan's."""
    from autocompress.methods import CompressionPlan

    try:
        return CompressionPlan.from_params(dict(params))
    except Exception:  # noqa: BLE001  (display only: an old or foreign run)
        return None


def layer_rows(plan: Any, shapes: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """Rows ``layer, shape, got`` for a table of one plan (shape when known)."""
    shapes = shapes or {}
    return [{"layer": name, "shape": shapes.get(name, ""), "got": text}
            for name, text in layer_choices(plan).items()]


def plan_from_dict(data: Any) -> Any:
    """A CompressionPlan from its dict form (an artifact's ``extra.plan``), or None."""
    if not isinstance(data, Mapping):
        return None
    from autocompress.methods import CompressionPlan

    try:
        return CompressionPlan.from_dict(dict(data))
    except Exception:  # noqa: BLE001  (display only)
        return None
