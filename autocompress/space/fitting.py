"""Keep a bound space's values to those that compress each layer.

A rank ratio that makes a small or square layer's factors larger than the layer is refused by
the method (``PlanError``); the binding narrows each such knob per layer instead, so a search
never samples a candidate that cannot be built. A method left with no useful value on a layer
is dropped from that layer (and from its ``choose`` group).

Pruning in the same plan shrinks a layer before it is factorized, so a value must fit the layer
at the widths pruning can leave too: its output channels pruned by up to its own prune knob's
largest ratio, its inputs by up to the largest ratio any prune knob of the space reaches.
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
    widest = _max_prune(chosen.items())
    shapes = {layer.name: _pruned_shapes(layer.shape, _max_prune(
        (k, d) for k, d in chosen.items() if k[0] == layer.name), widest) for layer in layers}
    chosen, dropped = dict(chosen), set()
    for (layer, method, field), dist in list(chosen.items()):
        spec = get_method(method)
        if spec.fits is None:
            continue
        if not field:  # the method with its defaults
            if not all(spec.fits(spec.config(), shape) for shape in shapes[layer]):
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


def _fits(method: str, field: str, value: Any, shapes: list[tuple[int, ...]]) -> bool:
    spec = get_method(method)
    try:
        config = spec.config.from_dict({field: value})
    except ConfigError:
        return True  # not this module's to judge: validation reports it
    return all(spec.fits(config, shape) for shape in shapes)


def _max_prune(items) -> float:
    """The largest prune ratio the given ``((layer, method, field), dist)`` knobs can sample."""
    ratios = [0.0]
    for (_, method, field), dist in items:
        if method == "prune" and field == "ratio":
            values = _grid(dist) if isinstance(dist, Range) else (
                dist.choices if isinstance(dist, Choice) else [dist.value])
            ratios += [v for v in values if isinstance(v, (int, float))]
    return max(ratios)


def _pruned_shapes(shape: tuple[int, ...], own: float, inputs: float) -> list[tuple[int, ...]]:
    """``shape`` and the shapes pruning may leave (outputs by ``own``, inputs by ``inputs``)."""
    if len(shape) < 2:
        return [shape]
    def widths(n: int, ratio: float) -> set[int]:  # every width when few, else 9 of them
        low = max(1, math.floor(n * (1 - ratio)))
        return {round(low + (n - low) * i / 8) for i in range(9)}

    return [(rows, cols, *shape[2:]) for rows in widths(shape[0], own)
            for cols in widths(shape[1], inputs)]


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
