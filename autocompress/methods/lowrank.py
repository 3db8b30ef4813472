"""Low-rank factorization of linear layers by truncated SVD."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import (
    FACTORIZE,
    ApplyContext,
    Method,
    MethodConfig,
    check_range,
    register,
    replace_each,
)
from autocompress.methods.layers import LowRankLinear


@dataclass(frozen=True)
class SVDConfig(MethodConfig):
    """Factorize ``W (out x in)`` into ``(out x r)(r x in)`` with the top singular values.

    Attributes:
        rank_ratio: Rank as a fraction of ``min(in, out)``, rounded, at least 1. 1.0 = full rank.
        rank: An absolute rank; overrides ``rank_ratio`` when set.
    """

    method = "svd"
    stage = FACTORIZE
    rank_ratio: float = 1.0
    rank: int | None = None

    def __post_init__(self):
        check_range("svd.rank_ratio", self.rank_ratio, 0.0, 1.0)
        if self.rank is not None and self.rank < 1:
            raise invalid("svd.rank", self.rank, "an integer >= 1")

    def is_identity(self) -> bool:
        return self.rank is None and self.rank_ratio >= 1.0

    def rank_for(self, layer: nn.Linear, name: str = "layer") -> int:
        """The rank this config gives ``layer``; a rank above the layer's is a PlanError."""
        full = min(layer.in_features, layer.out_features)
        rank = self.rank if self.rank is not None else max(1, round(self.rank_ratio * full))
        if rank > full:
            raise PlanError(f"{name}: svd rank {rank} exceeds the layer's full rank {full}")
        return rank


def factorize_linear(layer: nn.Linear, rank: int) -> LowRankLinear:
    """Return the best rank-``rank`` factorization of ``layer`` (exact at full rank)."""
    w = layer.weight.detach().double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    new = LowRankLinear(layer.in_features, rank, layer.out_features, layer.bias is not None)
    dtype = layer.weight.dtype
    new.u.weight.data = (root[:, None] * vh[:rank]).to(dtype)
    new.v.weight.data = (u[:, :rank] * root[None, :]).to(dtype)
    if layer.bias is not None:
        new.v.bias.data = layer.bias.detach().clone()
    return new.to(layer.weight.device).train(layer.training)


def apply_svd(model: nn.Module, targets: Mapping[str, SVDConfig], ctx: ApplyContext) -> None:
    """Replace each target Linear by its low-rank factorization."""
    replace_each(model, targets,
                 lambda layer, c, name: factorize_linear(layer, c.rank_for(layer, name)))


SVD_METHOD = register(Method(SVDConfig, (nn.Linear,), apply_svd))
