"""Low-rank factorization of linear layers and embedding tables by truncated SVD."""

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
from autocompress.methods.layers import LowRankEmbedding, LowRankLinear


@dataclass(frozen=True)
class SVDConfig(MethodConfig):
    """Factorize ``W (out x in)`` into ``(out x r)(r x in)`` with the top singular values.

    An embedding table ``(num x dim)`` becomes a ``(num x r)`` table and an ``(r x dim)``
    projection. A rank at which the factors hold as many values as the layer is refused: the
    factorization would not make the layer smaller.

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

    def rank_for(self, layer: nn.Module, name: str = "layer") -> int:
        """The rank this config gives ``layer``.

        Raises:
            PlanError: The rank is above the layer's, or the factors would hold at least as
                many values as the layer (the factorization would not compress it).
        """
        rows, cols = _matrix_shape(layer)
        full = min(rows, cols)
        rank = self.rank if self.rank is not None else max(1, round(self.rank_ratio * full))
        if rank > full:
            raise PlanError(f"{name}: svd rank {rank} exceeds the layer's full rank {full}")
        if rank * (rows + cols) >= rows * cols:
            raise PlanError(
                f"{name}: svd rank {rank} of a {rows}x{cols} layer stores "
                f"{rank * (rows + cols):,} values, not fewer than the layer's {rows * cols:,}; "
                f"use a rank below {max_useful_rank(rows, cols) + 1}")
        return rank


def _matrix_shape(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Embedding):
        return layer.num_embeddings, layer.embedding_dim
    return layer.out_features, layer.in_features


def svd_fits(config: SVDConfig, shape: tuple[int, ...]) -> bool:
    """True when ``config`` gives a ``rows x cols`` weight factors smaller than itself."""
    rows, cols = shape[0], shape[1]
    full = min(rows, cols)
    rank = config.rank if config.rank is not None else max(1, round(config.rank_ratio * full))
    return rank <= max_useful_rank(rows, cols)


def max_useful_rank(rows: int, cols: int) -> int:
    """The largest rank whose two factors hold fewer values than the ``rows x cols`` matrix."""
    return (rows * cols - 1) // (rows + cols)


def low_rank_like(layer: nn.Module, rank: int) -> nn.Module:
    """The rank-``rank`` factorized module of a Linear or Embedding's shape, unfitted."""
    if isinstance(layer, nn.Embedding):
        return LowRankEmbedding(layer.num_embeddings, rank, layer.embedding_dim,
                                layer.padding_idx)
    return LowRankLinear(layer.in_features, rank, layer.out_features, layer.bias is not None)


def _factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(left, right)`` with ``left @ right`` the best rank-``rank`` approximation of ``weight``.

    Each factor carries the square roots of the singular values (balanced scales); both are in
    ``weight``'s dtype.
    """
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root[None, :]).to(weight.dtype), (root[:, None] * vh[:rank]).to(
        weight.dtype)


def factorize_linear(layer: nn.Linear, rank: int) -> LowRankLinear:
    """Return the best rank-``rank`` factorization of ``layer`` (exact at full rank)."""
    new = low_rank_like(layer, rank)
    left, right = _factors(layer.weight, rank)
    new.u.weight.data, new.v.weight.data = right, left
    if layer.bias is not None:
        new.v.bias.data = layer.bias.detach().clone()
    return new.to(layer.weight.device).train(layer.training)


def factorize_embedding(layer: nn.Embedding, rank: int) -> LowRankEmbedding:
    """Return the best rank-``rank`` factorization of an embedding table."""
    new = low_rank_like(layer, rank)
    left, right = _factors(layer.weight, rank)
    new.embed.weight.data, new.proj.weight.data = left, right.T.contiguous()
    return new.to(layer.weight.device).train(layer.training)


def _factorize(layer: nn.Module, config: SVDConfig, name: str) -> nn.Module:
    rank = config.rank_for(layer, name)
    if isinstance(layer, nn.Embedding):
        return factorize_embedding(layer, rank)
    return factorize_linear(layer, rank)


def apply_svd(model: nn.Module, targets: Mapping[str, SVDConfig], ctx: ApplyContext) -> None:
    """Replace each target Linear / Embedding by its low-rank factorization."""
    replace_each(model, targets, lambda layer, c, name: _factorize(layer, c, name))


def svd_structure(layer: nn.Module, config: SVDConfig, name: str) -> nn.Module:
    """The factorized module ``apply_svd`` builds, unfitted."""
    return low_rank_like(layer, config.rank_for(layer, name))


SVD_METHOD = register(Method(SVDConfig, (nn.Linear, nn.Embedding), apply_svd, fits=svd_fits,
                             structure=svd_structure))
