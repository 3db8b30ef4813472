"""Unstructured magnitude pruning: per layer or with one global threshold.

Pruned weights are masked (the mask is kept through fine-tuning); the artifact stores only the
surviving weights and their positions (a bitmap or Huffman-coded index gaps, whichever is
smaller), so sparsity shows up in the file size. Dense kernels still run at full cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import (
    SPARSIFY,
    ApplyContext,
    Method,
    MethodConfig,
    check_range,
    register,
)
from autocompress.methods.layers import compress_layer, leaf_layers
from autocompress.methods.skeleton import each_leaf

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class SparsifyConfig(MethodConfig):
    """Zero the smallest-magnitude weights.

    Attributes:
        sparsity: Fraction of weights set to zero, in [0, 1).
        scope: ``layer`` ranks weights within each layer; ``global`` ranks all targets with
            scope global together under one threshold (they must ask for the same sparsity).
    """

    method = "sparsify"
    stage = SPARSIFY
    sparsity: float = 0.0
    scope: str = "layer"

    def __post_init__(self):
        check_range("sparsify.sparsity", self.sparsity, 0.0, 1.0, high_open=True)
        if self.scope not in SCOPES:
            raise invalid("sparsify.scope", self.scope, SCOPES)

    def is_identity(self) -> bool:
        return self.sparsity == 0.0


def _threshold(weights: list[torch.Tensor], sparsity: float) -> float:
    magnitudes = torch.cat([w.detach().abs().reshape(-1) for w in weights])
    count = int(round(sparsity * magnitudes.numel()))
    if count == 0:
        return -1.0
    return float(torch.kthvalue(magnitudes, count).values)


def _current(leaf: nn.Module) -> torch.Tensor:
    """The weights as they stand: already pruned entries count as zero (iterative pruning)."""
    return leaf.source_weight() if hasattr(leaf, "source_weight") else leaf.weight


def _mask_leaves(model: nn.Module, leaves: list[tuple[str, nn.Module]], threshold: float):
    for name, leaf in leaves:
        mask = _current(leaf).detach().abs() > threshold
        new = compress_layer(leaf, sparse=True)
        new.mask = mask
        new.calibrate()
        model.set_submodule(name, new)


def apply_sparsify(model: nn.Module, targets: Mapping[str, SparsifyConfig], ctx: ApplyContext):
    """Mask the smallest weights of each target (globally for scope ``global``)."""
    global_targets = {n: c for n, c in targets.items() if c.scope == "global"}
    if len({c.sparsity for c in global_targets.values()}) > 1:
        raise PlanError(
            f"{', '.join(global_targets)}: global sparsify targets share one threshold, so they "
            "need the same sparsity"
        )
    for name in targets:
        if not leaf_layers(model.get_submodule(name), name):
            kind = type(model.get_submodule(name)).__name__
            raise PlanError(f"{name}: is now a {kind} with no Linear / Conv2d weights to sparsify")
    for name, config in targets.items():
        if config.scope == "layer":
            leaves = leaf_layers(model.get_submodule(name), name)
            _mask_leaves(model, leaves, _threshold([_current(m) for _, m in leaves],
                                                   config.sparsity))
    if global_targets:
        leaves = [leaf for n in global_targets for leaf in leaf_layers(model.get_submodule(n), n)]
        sparsity = next(iter(global_targets.values())).sparsity
        _mask_leaves(model, leaves, _threshold([_current(m) for _, m in leaves], sparsity))


def sparsify_structure(layer: nn.Module, c: SparsifyConfig, name: str) -> nn.Module:
    """The masked layer(s), unfitted, with the configured share of zeros.

    Global scope ranks several layers under one threshold: each layer's own sparsity then
    depends on the weights; the configured sparsity stands in for it.
    """
    return each_leaf(layer, name, "sparsify", sparse=True, sparsity=c.sparsity)


SPARSIFY_METHOD = register(Method(SparsifyConfig, (nn.Linear, nn.Conv2d), apply_sparsify,
                                  structure=sparsify_structure))
