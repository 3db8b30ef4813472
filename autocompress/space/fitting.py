"""Keep a bound space's values to those that compress each layer.

A rank ratio that makes a small or square layer's factors larger than the layer is refused by
the method (``PlanError``); the binding narrows each such knob per layer instead, so a search
never samples a candidate that cannot be built. A method left with no useful value on a layer
is dropped from that layer (and from its ``choose`` group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autocompress.errors import ConfigError
from autocompress.methods import LayerInfo, get_method
from autocompress.space.distributions import Choice, Constant, Distribution, Range

GRID = 64  # values tried along a continuous range

Chosen = dict[tuple[str, str, str], Distribution]
Groups = dict[tuple[str, str], tuple[str, ...]]


def fit_to_layers(chosen: Chosen, groups: Groups,
                  layers: Sequence[LayerInfo]) -> tuple[Chosen, Groups]:
    """Narrow or drop the knobs whose values would not compress their layer."""
    shapes = {layer.name: layer.shape for layer in layers}
    chosen, dropped = dict(chosen), set()
    for (layer, method, field), dist in list(chosen.items()):
        spec = get_method(method)
        if spec.fits is None:
            continue
        if not field:  # the method with its defaults
            if not spec.fits(spec.config(), shapes[layer]):
                dropped.add((layer, method))
            continue
        narrowed = _narrow(dist, lambda v, m=method, f=field, s=shapes[layer]: _fits(m, f, v, s))
        if narrowed is None:
            dropped.add((layer, method))
        else:
            chosen[(layer, method, field)] = narrowed
    chosen = {k: v for k, v in chosen.items() if (k[0], k[1]) not in dropped}
    groups = {key: tuple(n for n in names if (key[0], n) not in dropped)
              for key, names in groups.items()}
    return chosen, {key: names for key, names in groups.items() if len(names) > 1}


def _fits(method: str, field: str, value: Any, shape: tuple[int, ...]) -> bool:
    spec = get_method(method)
    try:
        config = spec.config.from_dict({field: value})
    except ConfigError:
        return True  # not this module's to judge: validation reports it
    return spec.fits(config, shape)


def _narrow(dist: Distribution, fits) -> Distribution | None:
    """``dist`` without the values that do not fit; None when none is left."""
    if isinstance(dist, Constant):
        return dist if fits(dist.value) else None
    if isinstance(dist, Choice):
        kept = tuple(v for v in dist.choices if fits(v))
        return (Choice(kept) if len(kept) > 1 else Constant(kept[0])) if kept else None
    values = _grid(dist)
    kept = 0  # ranks grow with the value: keep the values below the first that does not fit
    while kept < len(values) and fits(values[kept]):
        kept += 1
    if kept == len(values):
        return dist
    if not kept:
        return None
    high = values[kept - 1]
    return Range(dist.low, high, dist.step, dist.log) if high > dist.low else Constant(dist.low)


def _grid(dist: Range) -> list[Any]:
    if dist.is_int():
        step = dist.step or 1
        return list(range(dist.low, dist.high + 1, step))
    if dist.step:
        count = int(math.floor((dist.high - dist.low) / dist.step + 1e-9))
        return [dist.low + i * dist.step for i in range(count + 1)]
    if dist.log:
        ratio = (dist.high / dist.low) ** (1 / GRID)
        return [dist.low * ratio**i for i in range(GRID + 1)]
    return [dist.low + (dist.high - dist.low) * i / GRID for i in range(GRID + 1)]
