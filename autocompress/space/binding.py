"""Bind a SearchSpace to a model's layers, and sample CompressionPlans define-by-run."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autocompress.errors import ConfigError
from autocompress.methods import CompressionPlan, LayerInfo, get_method
from autocompress.methods.base import SPARSIFY
from autocompress.methods.plan import CHOOSE, DEFAULTS, SEP, TRAINING
from autocompress.space.distributions import Choice, Constant, Distribution, TrialLike
from autocompress.space.fitting import fit_to_layers
from autocompress.space.schema import NONE, Rule, SearchSpace


@dataclass(frozen=True)
class Knob:
    """A searched or fixed value keyed ``layers/<layer>/<method>/<field>``, or distillation.

    A choice knob (``layers/<layer>/choose/<stage>``) picks one of alternative methods; the
    knobs of the methods it did not pick are not sampled (a conditional, define-by-run space).
    """

    key: str
    distribution: Distribution
    layer: str = ""
    method: str = ""  # the method this knob configures; "choose" for a choice knob
    stage: str = ""  # the choice group the method (or choice knob) belongs to


@dataclass(frozen=True)
class BoundSpace:
    """A search space resolved against one model's compressible layers."""

    layers: tuple[LayerInfo, ...]
    knobs: tuple[Knob, ...]

    def sample(self, trial: TrialLike) -> dict[str, Any]:
        """Define-by-run sampling: suggest every active knob on ``trial``; return the constants.

        Keys use ``/`` so Ray Tune nests them (``.`` would not nest); the nested config is the
        plan's dict form. Searched values are recorded by the trial; constants are returned.
        """
        constants, picked, replaced = {}, {}, set()
        for knob in self.knobs:  # a layer's knobs are in stage order, choice knobs first
            if knob.stage and knob.method != CHOOSE and picked[(knob.layer, knob.stage)] != (
                    knob.method):
                continue
            if knob.method not in ("", CHOOSE):
                method = get_method(knob.method)
                if knob.layer in replaced and method.config.stage >= SPARSIFY:
                    continue  # a circulant / hashed layer has no weights left to quantize
                if method.replaces_weights:
                    replaced.add(knob.layer)
            value = knob.distribution.suggest(trial, knob.key)
            if knob.method == CHOOSE:
                picked[(knob.layer, knob.stage)] = value
            if isinstance(knob.distribution, Constant):
                constants[knob.key] = value
        return constants

    def plan(self, config: Mapping[str, Any]) -> CompressionPlan:
        """The CompressionPlan of a (nested or flat) trial config."""
        if any(isinstance(k, str) and SEP in k for k in config):
            return CompressionPlan.from_params(config)
        return CompressionPlan.from_dict({k: v for k, v in config.items()
                                          if k in ("layers", *TRAINING)})

    def searched(self) -> list[str]:
        """Keys of the knobs that are really searched (not constants)."""
        return [k.key for k in self.knobs if not isinstance(k.distribution, Constant)]


def bind(space: SearchSpace, layers: Sequence[LayerInfo]) -> BoundSpace:
    """Resolve the space's rules against ``layers`` (from ``compressible_layers``).

    Raises:
        ConfigError: a rule selects no layer, or selects a layer its method does not apply to.
    """
    chosen: dict[tuple[str, str, str], Distribution] = {}
    groups: dict[tuple[str, str], tuple[str, ...]] = {}
    for index, rule in enumerate(space.rules):
        selected = [layer for layer in layers if _selects(rule, layer)]
        if not selected:
            names = ", ".join(f"{lay.name} ({lay.type})" for lay in layers)
            raise ConfigError(f"space.layers[{index}]: selects no layer; layers are: {names}")
        for layer in selected:
            applicable = {m for m in rule.knobs if _applies(m, layer, index)}
            for method in applicable:
                for field_name, dist in rule.knobs[method].items():
                    chosen[(layer.name, method, field_name)] = dist
                if not rule.knobs[method]:  # no knobs: the method with its defaults
                    chosen.setdefault((layer.name, method, ""), Constant(True))
            for stage, names in rule.choices.items():
                names = tuple(n for n in names if n == NONE or n in applicable)
                if len(names) > 1:
                    groups[(layer.name, stage)] = names
    chosen, groups = fit_to_layers(chosen, groups, layers)  # no value that cannot compress
    return BoundSpace(tuple(layers), _knobs(chosen, groups, space))


def _knobs(chosen, groups, space: SearchSpace) -> tuple[Knob, ...]:
    stage_of = {(layer, m): stage for (layer, stage), names in groups.items() for m in names}
    knobs = [Knob(SEP.join(("layers", layer, CHOOSE, stage)), Choice(names), layer, CHOOSE, stage)
             for (layer, stage), names in groups.items()]
    for (layer, method, field_name), dist in chosen.items():
        key = SEP.join(("layers", layer, method, field_name)) if field_name else ""
        knobs.append(Knob(key, dist, layer, method, stage_of.get((layer, method), "")))
    knobs = [k if k.key else Knob(SEP.join(("layers", k.layer, k.method, DEFAULTS)),
                                  Constant(True), k.layer, k.method, k.stage) for k in knobs]
    order = {layer: i for i, layer in enumerate(dict.fromkeys(k.layer for k in knobs))}
    knobs.sort(key=lambda k: (order[k.layer], k.method != CHOOSE, _stage(k.method)))
    for key, fields in space.training.items():
        knobs.extend(Knob(f"{key}{SEP}{name}", dist) for name, dist in fields.items())
    return tuple(knobs)


def _stage(method: str) -> int:
    return get_method(method).config.stage if method not in ("", CHOOSE) else -1


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
    if layer.custom_forward and not spec.in_place:
        return False  # replacing a subclass that overrides forward() would change the model
    # Output widths are the task's; a coupled group gets one knob, on its first layer.
    return not spec.prunes_outputs or layer.prunable
