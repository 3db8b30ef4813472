"""Tensor decompositions of convolutions: Tucker-2 and CP.

Two methods, both at the factorize stage and both for ``nn.Conv2d`` with ``groups == 1``. The
weight ``W`` of shape ``(C_out, C_in, kh, kw)`` is decomposed with TensorLy (numpy backend,
float64) and the layer becomes a chain of smaller convolutions:

* ``tucker`` (Kim et al., 2016): Tucker-2 on the channel modes,
  ``W = core x_0 U_out x_1 U_in``, computed by HOOI from an SVD start. The layer becomes a 1x1
  conv ``C_in -> r_in``, the ``kh x kw`` core conv ``r_in -> r_out`` (the original stride,
  padding and dilation) and a 1x1 conv ``r_out -> C_out`` with the bias. At full ranks it is
  exact. Parameters: ``r_in C_in + r_in r_out kh kw + r_out C_out`` (+ bias).
* ``cp`` (Lebedev et al., 2015): a rank-``R`` CP decomposition
  ``W = sum_r a_r (x) b_r (x) c_r (x) d_r``, computed by ALS from an SVD start with a fixed
  seed (deterministic). The layer becomes a 1x1 conv ``C_in -> R``, a depthwise ``kh x 1`` conv,
  a depthwise ``1 x kw`` conv (stride, padding and dilation split per axis) and a 1x1 conv
  ``R -> C_out`` with the bias. Parameters: ``R (C_in + kh + kw + C_out)`` (+ bias). CP is lossy
  at any rank; it is the cheapest of the factorizations and is meant to be fine-tuned.

Both replacements are data-free (the weights alone). Ranks above what a layer allows are a
PlanError naming the layer; they are checked before anything is decomposed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
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
from autocompress.methods.layers import conv_geometry, exportable

SEED = 0
TUCKER_ITERS, TUCKER_TOL = 100, 1e-6
# ALS is the cost of CP and grows with the rank: on two busy cores a 32x32x3x3 kernel took
# 0.4 s at rank 33 and 12 s at its break-even rank 131. The error still falls slowly after 100
# iterations; fine-tuning recovers more than further iterations would.
CP_ITERS, CP_TOL = 100, 1e-8


def _check_rank(where: str, rank: int | None) -> None:
    if rank is not None and rank < 1:
        raise invalid(where, rank, "an integer >= 1")


def _ratio_rank(ratio: float, full: int) -> int:
    return max(1, round(ratio * full))


@dataclass(frozen=True)
class TuckerConfig(MethodConfig):
    """Tucker-2 factorization of a conv on its input and output channel modes.

    Attributes:
        rank_ratio: Both ranks as a fraction of the layer's channels (``r_in`` of ``C_in``,
            ``r_out`` of ``C_out``), rounded, at least 1. 1.0 = full rank (no change).
        in_rank: An absolute input rank; overrides ``rank_ratio`` for ``r_in`` when set.
        out_rank: An absolute output rank; overrides ``rank_ratio`` for ``r_out`` when set.
    """

    method = "tucker"
    stage = FACTORIZE
    rank_ratio: float = 1.0
    in_rank: int | None = None
    out_rank: int | None = None

    def __post_init__(self):
        check_range("tucker.rank_ratio", self.rank_ratio, 0.0, 1.0)
        _check_rank("tucker.in_rank", self.in_rank)
        _check_rank("tucker.out_rank", self.out_rank)

    def is_identity(self) -> bool:
        return self.rank_ratio >= 1.0 and self.in_rank is None and self.out_rank is None

    def ranks_for(self, layer: nn.Module, name: str = "layer") -> tuple[int, int]:
        """``(r_in, r_out)`` for ``layer``; a rank above its channel count is a PlanError."""
        _check_conv(layer, name, self.method)
        ranks = []
        for side, rank, channels in (("in", self.in_rank, layer.in_channels),
                                     ("out", self.out_rank, layer.out_channels)):
            rank = rank if rank is not None else _ratio_rank(self.rank_ratio, channels)
            if rank > channels:
                raise PlanError(f"{name}: tucker {side}_rank {rank} exceeds the layer's "
                                f"{channels} {side}put channels")
            ranks.append(rank)
        _check_smaller(layer, name, tucker_weights(layer, ranks[0], ranks[1]),
                       f"tucker ranks ({ranks[0]}, {ranks[1]})")
        return ranks[0], ranks[1]


def tucker_weights(conv: nn.Conv2d, in_rank: int, out_rank: int) -> int:
    """Weights of the Tucker-2 factors of ``conv`` (1x1 in, kxk core, 1x1 out)."""
    return _tucker_weights(tuple(conv.weight.shape), in_rank, out_rank)


def _tucker_weights(shape: tuple[int, ...], in_rank: int, out_rank: int) -> int:
    c_out, c_in, kh, kw = shape
    return c_in * in_rank + in_rank * out_rank * kh * kw + out_rank * c_out


def tucker_fits(config: TuckerConfig, shape: tuple[int, ...]) -> bool:
    """True when ``config``'s ranks give a conv weight of ``shape`` smaller factors."""
    if len(shape) != 4:
        return True
    c_out, c_in = shape[0], shape[1]
    in_rank = min(c_in, config.in_rank or _ratio_rank(config.rank_ratio, c_in))
    out_rank = min(c_out, config.out_rank or _ratio_rank(config.rank_ratio, c_out))
    return _tucker_weights(shape, in_rank, out_rank) < math.prod(shape)


def _check_smaller(conv: nn.Conv2d, name: str, weights: int, what: str) -> None:
    """Refuse a factorization that does not store fewer weights than the layer."""
    own = conv.weight.numel()
    if weights >= own:
        raise PlanError(f"{name}: {what} store {weights:,} weights, not fewer than the layer's "
                        f"{own:,} ({tuple(conv.weight.shape)}); use smaller ranks")


@dataclass(frozen=True)
class CPConfig(MethodConfig):
    """CP factorization of a conv into four thin convs (Lebedev et al., 2015).

    CP has no "full rank", so ratios are taken of the *break-even rank*
    ``R_max = C_in C_out kh kw // (C_in + C_out + kh + kw)``, the largest rank whose layers
    have no more weights than the original: ``rank_ratio`` is then about the fraction of the
    layer's weights kept, and 1.0 (no saving) means "leave the layer as it is".

    Attributes:
        rank_ratio: Rank as a fraction of ``R_max``, rounded, at least 1.
        rank: An absolute rank, at most ``R_max``; overrides ``rank_ratio`` when set.
    """

    method = "cp"
    stage = FACTORIZE
    rank_ratio: float = 1.0
    rank: int | None = None

    def __post_init__(self):
        check_range("cp.rank_ratio", self.rank_ratio, 0.0, 1.0)
        _check_rank("cp.rank", self.rank)

    def is_identity(self) -> bool:
        return self.rank is None and self.rank_ratio >= 1.0

    def rank_for(self, layer: nn.Module, name: str = "layer") -> int:
        """The CP rank for ``layer``; a rank above its break-even rank is a PlanError."""
        _check_conv(layer, name, self.method)
        full = cp_max_rank(layer)
        rank = self.rank if self.rank is not None else _ratio_rank(self.rank_ratio, full)
        if rank > full:
            raise PlanError(f"{name}: cp rank {rank} exceeds the layer's break-even rank {full} "
                            "(beyond it the factorized layer has more weights than the layer)")
        return rank


def cp_fits(config: CPConfig, shape: tuple[int, ...]) -> bool:
    """True when ``config``'s rank gives a conv weight of ``shape`` fewer weights."""
    if len(shape) != 4:
        return True
    c_out, c_in, kh, kw = shape
    full = max(1, c_in * c_out * kh * kw // (c_in + c_out + kh + kw))
    rank = config.rank if config.rank is not None else _ratio_rank(config.rank_ratio, full)
    return rank * (c_in + c_out + kh + kw) <= math.prod(shape)


def cp_max_rank(conv: nn.Conv2d) -> int:
    """The largest CP rank whose factors hold no more weights than ``conv`` (at least 1)."""
    c_out, c_in, kh, kw = conv.weight.shape
    return max(1, c_in * c_out * kh * kw // (c_in + c_out + kh + kw))


def _check_conv(layer: nn.Module, name: str, method: str) -> None:
    if not isinstance(layer, nn.Conv2d):
        raise PlanError(f"{name}: {method} applies to Conv2d, not {type(layer).__name__}")
    if layer.groups != 1:
        raise PlanError(f"{name}: {method} needs a dense conv (groups=1), "
                        f"not groups={layer.groups}")


# --- modules ----------------------------------------------------------------------------------


def _pair(value: Any) -> tuple[int, int] | str:
    if isinstance(value, str):
        return value
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _along(value: tuple[int, int] | str, axis: int, other: int) -> tuple[int, int] | str:
    """``value``'s entry for ``axis`` there and ``other`` on the other axis (strings as is)."""
    if isinstance(value, str):  # "same" / "valid" pad each axis as the 2-D conv would
        return value
    return (value[0], other) if axis == 0 else (other, value[1])


class _FactorizedConv(nn.Module):
    """Shared geometry and export of the factorized convs (the original layer's settings).

    The constructors accept lists for pairs, so the export arguments rebuild them as they are.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding,
                 dilation, padding_mode: str):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.padding_mode = padding_mode

    def _export_args(self) -> dict[str, Any]:
        padding = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": padding, "dilation": list(self.dilation),
                "padding_mode": self.padding_mode}


@exportable("TuckerConv2d")
class TuckerConv2d(_FactorizedConv):
    """``x -> last(core(first(x)))``: a conv factorized through ``in_rank`` / ``out_rank``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, in_rank: int,
                 out_rank: int, stride=1, padding=0, dilation=1, bias: bool = True,
                 padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         padding_mode)
        self.in_rank, self.out_rank = in_rank, out_rank
        self.first = nn.Conv2d(in_channels, in_rank, 1, bias=False)
        self.core = nn.Conv2d(in_rank, out_rank, self.kernel_size, self.stride, self.padding,
                              self.dilation, bias=False, padding_mode=padding_mode)
        self.last = nn.Conv2d(out_rank, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.core(self.first(x)))

    def export_args(self) -> dict[str, Any]:
        return {**self._export_args(), "in_rank": self.in_rank, "out_rank": self.out_rank,
                "bias": self.last.bias is not None}

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, in_rank={self.in_rank}, "
                f"out_rank={self.out_rank}, out_channels={self.out_channels}")


@exportable("CPConv2d")
class CPConv2d(_FactorizedConv):
    """``x -> last(horizontal(vertical(first(x))))`` through ``rank`` channels.

    ``vertical`` (``kh x 1``) and ``horizontal`` (``1 x kw``) are depthwise; each takes the
    original stride, padding and dilation along its own axis.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, rank: int, stride=1,
                 padding=0, dilation=1, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         padding_mode)
        self.rank = rank
        self.first = nn.Conv2d(in_channels, rank, 1, bias=False)
        self.vertical, self.horizontal = (self._depthwise(axis) for axis in (0, 1))
        self.last = nn.Conv2d(rank, out_channels, 1, bias=bias)

    def _depthwise(self, axis: int) -> nn.Conv2d:
        """The ``rank``-group conv along ``axis`` (0: height, 1: width)."""
        return nn.Conv2d(self.rank, self.rank, _along(self.kernel_size, axis, 1),
                         _along(self.stride, axis, 1), _along(self.padding, axis, 0),
                         _along(self.dilation, axis, 1), groups=self.rank, bias=False,
                         padding_mode=self.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.horizontal(self.vertical(self.first(x))))

    def export_args(self) -> dict[str, Any]:
        return {**self._export_args(), "rank": self.rank, "bias": self.last.bias is not None}

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, rank={self.rank}, "
                f"out_channels={self.out_channels}, kernel_size={self.kernel_size}")


# --- decompositions ---------------------------------------------------------------------------


@contextmanager
def _tensorly() -> Iterator[Any]:
    """``tensorly.decomposition`` on the numpy backend in this thread (imported lazily)."""
    import tensorly as tl
    from tensorly import decomposition

    with tl.backend_context("numpy", local_threadsafe=True), warnings.catch_warnings():
        # A CP rank above a mode's size: the SVD start is completed with seeded random columns.
        warnings.filterwarnings("ignore", "Trying to compute SVD with n_eigenvecs", UserWarning)
        yield decomposition


def _fill(new: nn.Module, conv: nn.Conv2d, weights: Mapping[str, np.ndarray]) -> nn.Module:
    """Load ``weights`` (child name -> array) and ``conv``'s bias into ``new``, on its device."""
    new = new.to(conv.weight)  # its device and dtype
    with torch.no_grad():
        for child, array in weights.items():
            param = new.get_submodule(child).weight
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)).reshape(param.shape))
        if conv.bias is not None:
            new.last.bias.copy_(conv.bias)
    return new.train(conv.training)


def tucker_conv(conv: nn.Conv2d, in_rank: int, out_rank: int) -> TuckerConv2d:
    """The Tucker-2 replacement of ``conv`` with ranks ``(in_rank, out_rank)``."""
    w = conv.weight.detach().cpu().double().numpy()
    with _tensorly() as decomposition:
        result = decomposition.partial_tucker(
            w, rank=[out_rank, in_rank], modes=[0, 1], n_iter_max=TUCKER_ITERS, init="svd",
            tol=TUCKER_TOL, random_state=SEED)
    # TensorLy 0.10 returns ((core, factors), errors); older versions (core, factors).
    core, (u_out, u_in) = result if isinstance(result[0], np.ndarray) else result[0]
    new = TuckerConv2d(**conv_geometry(conv), in_rank=in_rank, out_rank=out_rank)
    return _fill(new, conv, {"first": u_in.T, "core": core, "last": u_out})


def cp_conv(conv: nn.Conv2d, rank: int) -> CPConv2d:
    """The rank-``rank`` CP replacement of ``conv`` (deterministic: SVD start, fixed seed)."""
    w = conv.weight.detach().cpu().double().numpy()
    with _tensorly() as decomposition:
        weights, factors = decomposition.parafac(
            w, rank, n_iter_max=CP_ITERS, init="svd", tol=CP_TOL, random_state=SEED)
    a, b, c, d = _balance(weights, factors)
    new = CPConv2d(**conv_geometry(conv), rank=rank)
    return _fill(new, conv, {"first": b.T, "vertical": c.T, "horizontal": d.T, "last": a})


def _balance(weights: np.ndarray, factors: list[np.ndarray]) -> list[np.ndarray]:
    """Spread each component's magnitude evenly over its four factors.

    ALS leaves the scale of a component anywhere among its factors; equal column norms keep
    the four convs' weights on one scale, which suits quantizing them and fine-tuning.
    """
    norms = [np.linalg.norm(f, axis=0) for f in factors]
    magnitude = np.abs(weights) * np.prod(norms, axis=0)
    root = magnitude ** (1 / len(factors))
    units = [f / np.where(n > 0, n, 1.0) * root for f, n in zip(factors, norms, strict=True)]
    units[0] = units[0] * np.sign(weights)
    return units


# --- methods ----------------------------------------------------------------------------------


def apply_tucker(model: nn.Module, targets: Mapping[str, TuckerConfig],
                 ctx: ApplyContext) -> None:
    """Replace each target Conv2d by its Tucker-2 factorization."""
    replace_each(model, targets, lambda conv, c, name: tucker_conv(conv, *c.ranks_for(conv, name)))


def apply_cp(model: nn.Module, targets: Mapping[str, CPConfig], ctx: ApplyContext) -> None:
    """Replace each target Conv2d by its CP factorization."""
    replace_each(model, targets, lambda conv, c, name: cp_conv(conv, c.rank_for(conv, name)))


def tucker_structure(conv: nn.Conv2d, c: TuckerConfig, name: str) -> TuckerConv2d:
    """The Tucker-2 module ``apply_tucker`` builds, unfitted."""
    in_rank, out_rank = c.ranks_for(conv, name)
    return TuckerConv2d(**conv_geometry(conv), in_rank=in_rank, out_rank=out_rank)


def cp_structure(conv: nn.Conv2d, c: CPConfig, name: str) -> CPConv2d:
    """The CP module ``apply_cp`` builds, unfitted."""
    return CPConv2d(**conv_geometry(conv), rank=c.rank_for(conv, name))


TUCKER_METHOD = register(Method(TuckerConfig, (nn.Conv2d,), apply_tucker, fits=tucker_fits,
                                structure=tucker_structure))
CP_METHOD = register(Method(CPConfig, (nn.Conv2d,), apply_cp, fits=cp_fits,
                            structure=cp_structure))

__all__ = [
    "CPConfig",
    "CPConv2d",
    "TuckerConfig",
    "TuckerConv2d",
    "cp_conv",
    "cp_max_rank",
    "tucker_conv",
]
