"""Bind a SearchSpace to a model's layers, and sample CompressionPlans define-by-run."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autocompress.errors import ConfigError
from autocompress.methods import CompressionPlan, LayerInfo, get_method
from autocompress.methods.plan import SEP
from autocompress.space.distributions import Constant, Distribution, TrialLike
from autocompress.space.schema import Rule, SearchSpace


@dataclass(frozen=True)
class Knob:
    """A searched or fixed value keyed ``layers/<layer>/<method>/<field>``, or distillation."""

    key: str
    distribution: Distribution


@dataclass(frozen=True)
class BoundSpace:
    """A search space resolved against one model's compressible layers."""

    layers: tuple[LayerInfo, ...]
    knobs: tuple[Knob, ...]

    def sample(self, trial: TrialLike) -> dict[str, Any]:
        """Define-by-run sampling: suggest every knob on ``trial``; return the constants.

        Keys use ``/`` so Ray Tune nests them (``.`` would not nest); the nested config is the
        plan's dict form. Searched values are recorded by the trial; constants are returned.
        """
        constants = {}
        for knob in self.knobs:
            value = knob.distribution.suggest(trial, knob.key)
            if isinstance(knob.distribution, Constant):
                constants[knob.key] = value
        return constants

    def plan(self, config: Mapping[str, Any]) -> CompressionPlan:
        """The CompressionPlan of a (nested or flat) trial config."""
        if any(SEP in k for k in config):
            return CompressionPlan.from_params(config)
        return CompressionPlan.from_dict({k: v for k, v in config.items()
                                          if k in ("layers", "distillation")})

    def searched(self) -> list[str]:
        """Keys of the knobs that are really searched (not constants)."""
        return [k.key for k in self.knobs if not isinstance(k.distribution, Constant)]


def bind(space: SearchSpace, layers: Sequence[LayerInfo]) -> BoundSpace:
    """Resolve the space's rules against ``layers`` (from ``compressible_layers``).

    Raises:
        ConfigError: a rule selects no layer, or selects a layer its method does not apply to.
    """
    chosen: dict[tuple[str, str, str], Distribution] = {}
    for index, rule in enumerate(space.rules):
        selected = [layer for layer in layers if _selects(rule, layer)]
        if not selected:
            names = ", ".join(f"{lay.name} ({lay.type})" for lay in layers)
            raise ConfigError(f"space.layers[{index}]: selects no layer; layers are: {names}")
        for layer in selected:
            for method, fields in rule.knobs.items():
                if not _applies(method, layer, index):
                    continue
                for field_name, dist in fields.items():
                    chosen[(layer.name, method, field_name)] = dist
    knobs = [Knob(SEP.join(("layers", *key)), dist) for key, dist in chosen.items()]
    for field_name, dist in (space.distillation or {}).items():
        knobs.append(Knob(f"distillation{SEP}{field_name}", dist))
    return BoundSpace(tuple(layers), tuple(knobs))


def _selects(rule: Rule, layer: LayerInfo) -> bool:
    by_name = not rule.names or any(_match(p, layer.name) for p in rule.names)
    by_type = not rule.types or layer.type in rule.types
    return by_name and by_type


def _match(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def _applies(method: str, layer: LayerInfo, index: int) -> bool:
    spec = get_method(method)
    types = {t.__name__ for t in spec.layer_types}
    if layer.type not in types:
        raise ConfigError(
            f"space.layers[{index}]: {method} applies to {', '.join(sorted(types))}; "
            f"selected layer {layer.name} is {layer.type}"
        )
    # Output widths are the task's; a coupled group gets one knob, on its first layer.
    return not spec.prunes_outputs or layer.prunable
