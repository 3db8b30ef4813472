"""Structured weight matrices for linear layers: block-circulant and hashed (HashedNets).

Both keep far fewer numbers than the dense ``out x in`` weight and are initialised by the
least-squares projection of the trained weight onto their structure, so a layer that already
has the structure is reproduced exactly.

* ``circulant`` (CirCNN, Ding et al. 2017): the weight is a grid of ``b x b`` circulant blocks,
  each defined by one ``b``-vector; the product runs through the FFT in ``O(b log b)`` per block.
* ``hashed`` (HashedNets, Chen et al. 2015): every virtual weight ``V[i, j]`` is
  ``sign(i, j) * w[h(i, j)]``, one of ``K`` shared real parameters picked by a fixed hash.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import (
    FACTORIZE,
    ApplyContext,
    Method,
    MethodConfig,
    register,
    replace_each,
)
from autocompress.methods.layers import Deployable, exportable

MAX_DEFAULT_BLOCK = 64


# --- block-circulant ------------------------------------------------------------------------


@dataclass(frozen=True)
class CirculantConfig(MethodConfig):
    """Replace ``Linear(in, out)`` by a block-circulant layer.

    Attributes:
        block: Block size ``b``; in and out are zero-padded to multiples of it and the layer
            keeps about ``in * out / b`` numbers. None picks the largest power of two not
            above ``min(in, out)``, capped at 64: powers of two are the FFT's fastest sizes,
            and beyond 64 (CirCNN's largest blocks) accuracy falls faster than size does.
            1 keeps the dense layer.
    """

    method = "circulant"
    stage = FACTORIZE
    block: int | None = None

    def __post_init__(self):
        if self.block is not None and self.block < 1:
            raise invalid("circulant.block", self.block, "an integer >= 1, or None")

    def is_identity(self) -> bool:
        return self.block == 1

    def block_for(self, layer: nn.Linear, name: str = "layer") -> int:
        """The block size for ``layer``; one larger than the layer is a PlanError."""
        if self.block is None:
            smaller = min(layer.in_features, layer.out_features)
            return min(MAX_DEFAULT_BLOCK, 2 ** int(math.log2(smaller)))
        if self.block > max(layer.in_features, layer.out_features):
            raise PlanError(f"{name}: circulant block {self.block} exceeds the layer's size "
                            f"{layer.out_features} x {layer.in_features}")
        return self.block


def _diagonals(block: int, device=None) -> torch.Tensor:
    """``d[i, j] = (i - j) mod b``: the vector entry at each cell of a circulant block."""
    rows = torch.arange(block, device=device)
    return (rows[:, None] - rows[None, :]) % block


@exportable("CirculantLinear")
class CirculantLinear(Deployable, nn.Module):
    """A linear layer whose weight is a grid of circulant ``b x b`` blocks.

    Block ``(p, q)`` maps input block ``q`` to output block ``p`` and is the matrix
    ``C[i, j] = weight[p, q, (i - j) mod b]``, so ``C x`` is the circular convolution of
    ``weight[p, q]`` with ``x``. Inputs are zero-padded to ``in_blocks * b`` and outputs
    truncated to ``out_features``.

    Attributes:
        weight: The defining vectors, shape ``(out_blocks, in_blocks, block)``.
        bias: Shape ``(out_features,)``, or None.
    """

    def __init__(self, in_features: int, out_features: int, block: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.block = in_features, out_features, block
        self.in_blocks = -(-in_features // block)
        self.out_blocks = -(-out_features // block)
        self.weight = nn.Parameter(torch.empty(self.out_blocks, self.in_blocks, block))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every entry like ``nn.Linear`` does: uniform in ``+-1/sqrt(in_features)``."""
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, b = x.shape[:-1], self.block
        x = F.pad(x, (0, self.in_blocks * b - self.in_features))
        spectrum = torch.fft.rfft(x.reshape(*lead, self.in_blocks, b), dim=-1)
        mixed = torch.einsum("...qf,pqf->...pf", spectrum, torch.fft.rfft(self.weight, dim=-1))
        y = torch.fft.irfft(mixed, n=b, dim=-1).reshape(*lead, self.out_blocks * b)
        y = y[..., : self.out_features]
        return y if self.bias is None else y + self.bias

    def macs_per_sample(self, output: torch.Tensor) -> int:
        """Real multiplies: two rFFTs and the spectral products (complex MAC = 4 real)."""
        b, freqs = self.block, self.block // 2 + 1
        fft = 2 * b * max(1, math.ceil(math.log2(b)))
        return self.in_blocks * fft + self.out_blocks * fft + 4 * (
            self.out_blocks * self.in_blocks * freqs)

    def dense_weight(self) -> torch.Tensor:
        """The ``(out_features, in_features)`` matrix this layer multiplies by."""
        blocks = self.weight[:, :, _diagonals(self.block, self.weight.device)]  # (P, Q, b, b)
        full = blocks.permute(0, 2, 1, 3).reshape(self.out_blocks * self.block, -1)
        return full[: self.out_features, : self.in_features]

    dense_in_eager = False  # deployed by exporters only: eager runtimes keep the FFT form

    def deployed_weight(self) -> torch.Tensor:  # noqa: D102
        return self.dense_weight()

    def export_args(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "block": self.block, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"block={self.block}, bias={self.bias is not None}")


def project_block_circulant(weight: torch.Tensor, block: int) -> torch.Tensor:
    """Least-squares block-circulant approximation of a dense ``(out, in)`` weight.

    Each vector entry is the mean of the real (unpadded) cells of its block diagonal; padded
    cells never meet a nonzero input or a kept output, so they do not count. Entries whose
    diagonal has no real cell are 0.

    Returns:
        The defining vectors, shape ``(out_blocks, in_blocks, block)``, in float64.
    """
    out, inp = weight.shape
    rows, cols = -(-out // block) * block, -(-inp // block) * block
    padded = weight.detach().double().new_zeros(2, rows, cols)
    padded[0, :out, :inp] = weight.detach()
    padded[1, :out, :inp] = 1.0  # which cells are real
    blocks = padded.reshape(2, rows // block, block, cols // block, block).permute(0, 1, 3, 2, 4)
    blocks = blocks.reshape(*blocks.shape[:3], block * block)
    index = _diagonals(block, weight.device).reshape(-1)
    sums = blocks.new_zeros(*blocks.shape[:3], block).index_add_(3, index, blocks)
    return sums[0] / sums[1].clamp_min(1.0)


def circulant_linear(layer: nn.Linear, block: int) -> CirculantLinear:
    """The block-circulant layer closest (in least squares) to ``layer``."""
    new = CirculantLinear(layer.in_features, layer.out_features, block, layer.bias is not None)
    return _filled(new.to(layer.weight), layer, project_block_circulant(layer.weight, block))


def _filled(new: nn.Module, layer: nn.Linear, weight: torch.Tensor) -> nn.Module:
    """``new`` (already on ``layer``'s device and dtype) with ``weight`` and ``layer``'s bias."""
    with torch.no_grad():
        new.weight.copy_(weight)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    return new.train(layer.training)


def apply_circulant(model: nn.Module, targets: Mapping[str, CirculantConfig],
                    ctx: ApplyContext) -> None:
    """Replace each target Linear by its block-circulant projection."""
    replace_each(model, targets,
                 lambda layer, c, name: circulant_linear(layer, c.block_for(layer, name)))


# --- hashed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HashedConfig(MethodConfig):
    """Replace ``Linear(in, out)`` by a HashedNets layer of ``K`` shared weights.

    Attributes:
        compression: ``K / (in * out)``, in (0, 1]; ``K = max(1, round(compression * in * out))``.
            1.0 keeps as many weights as the layer, still shared by hashing (collisions).
        seed: Seed of the hash, in ``[0, 2**32)``; fixes which cells share a weight.
    """

    method = "hashed"
    stage = FACTORIZE
    compression: float = 0.125
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.compression <= 1.0:
            raise invalid("hashed.compression", self.compression, "a number in (0, 1]")
        if not 0 <= self.seed < 2**32:
            raise invalid("hashed.seed", self.seed, "an integer in [0, 2**32)")

    def size_for(self, layer: nn.Linear) -> int:
        """The number ``K`` of real weights this config gives ``layer``."""
        return max(1, round(self.compression * layer.in_features * layer.out_features))


_MASK32 = 0xFFFFFFFF


def _mix32(x):
    """A 32-bit integer hash (two multiply-xorshift rounds) of ints or int64 tensors < 2**32.

    Every product stays below 2**59, so int64 arithmetic never overflows.
    """
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _MASK32
    return (x >> 16) ^ x


def hash_tables(in_features: int, out_features: int, size: int, seed: int):
    """Which real weight, and with which sign, each virtual cell ``(i, j)`` uses.

    Returns:
        ``(index, sign)``: int64 indices in ``[0, size)`` and float signs in ``{-1, +1}``, both
        of shape ``(out_features, in_features)``; a pure function of the four arguments.
    """
    cell = torch.arange(out_features * in_features, dtype=torch.int64)  # i * in + j
    key = _mix32((cell & _MASK32) ^ _mix32(seed & _MASK32))
    key = _mix32(key ^ (cell >> 32))  # cells past 2**32 differ here
    index = key % size
    sign = 1.0 - 2.0 * (_mix32(key ^ 0x9E3779B9) & 1).float()
    return index.reshape(out_features, in_features), sign.reshape(out_features, in_features)


@exportable("HashedLinear")
class HashedLinear(Deployable, nn.Module):
    """A linear layer whose ``out x in`` weight is hashed onto ``size`` real parameters.

    The hash tables are non-persistent buffers, rebuilt from the constructor arguments, so the
    state dict (and the artifact) holds only ``weight`` and ``bias``. In eval mode without
    gradients the virtual weight is cached, so inference costs the same as ``nn.Linear``.

    Attributes:
        weight: The real parameters, shape ``(size,)``.
        bias: Shape ``(out_features,)``, or None.
    """

    def __init__(self, in_features: int, out_features: int, size: int, seed: int = 0,
                 bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.size, self.seed = (
            in_features, out_features, size, seed)
        self.weight = nn.Parameter(torch.empty(size))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        index, sign = hash_tables(in_features, out_features, size, seed)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("sign", sign, persistent=False)
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every entry like ``nn.Linear`` does: uniform in ``+-1/sqrt(in_features)``."""
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def virtual_weight(self) -> torch.Tensor:
        """The ``(out_features, in_features)`` weight (cached in eval mode without grad)."""
        if self.training or torch.is_grad_enabled():
            return self.sign * self.weight[self.index]
        key = (self.weight.data_ptr(), self.weight._version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, (self.sign * self.weight[self.index]).detach())
        return self._cache[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.virtual_weight(), self.bias)

    def deployed_weight(self) -> torch.Tensor:  # noqa: D102  (hashing saves storage, not compute)
        return self.virtual_weight()

    def macs_per_sample(self, output: torch.Tensor) -> int:
        """The virtual weight is dense: a full ``in x out`` product per sample."""
        return self.in_features * self.out_features

    def export_args(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "size": self.size, "seed": self.seed, "bias": self.bias is not None}

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"size={self.size}, seed={self.seed}, bias={self.bias is not None}")


def hashed_linear(layer: nn.Linear, size: int, seed: int = 0) -> HashedLinear:
    """The hashed layer closest (in least squares) to ``layer``.

    Each real weight is the mean of ``sign * W`` over the cells hashed to it (0 if none are).
    """
    new = HashedLinear(layer.in_features, layer.out_features, size, seed, layer.bias is not None)
    new = new.to(layer.weight)  # its device and dtype
    signed = (new.sign * layer.weight.detach()).double().reshape(-1)
    index = new.index.reshape(-1)
    sums = signed.new_zeros(size).index_add_(0, index, signed)
    counts = signed.new_zeros(size).index_add_(0, index, torch.ones_like(signed))
    return _filled(new, layer, sums / counts.clamp_min(1.0))


def apply_hashed(model: nn.Module, targets: Mapping[str, HashedConfig],
                 ctx: ApplyContext) -> None:
    """Replace each target Linear by its hashed projection."""
    replace_each(model, targets,
                 lambda layer, c, _name: hashed_linear(layer, c.size_for(layer), c.seed))


def circulant_structure(layer: nn.Linear, c: CirculantConfig, name: str) -> CirculantLinear:
    """The block-circulant layer ``apply_circulant`` builds, unfitted."""
    return CirculantLinear(layer.in_features, layer.out_features, c.block_for(layer, name),
                           layer.bias is not None)


def hashed_structure(layer: nn.Linear, c: HashedConfig, _name: str) -> HashedLinear:
    """The hashed layer ``apply_hashed`` builds, unfitted."""
    return HashedLinear(layer.in_features, layer.out_features, c.size_for(layer), c.seed,
                        layer.bias is not None)


CIRCULANT_METHOD = register(Method(CirculantConfig, (nn.Linear,), apply_circulant,
                                   replaces_weights=True, structure=circulant_structure))
HASHED_METHOD = register(Method(HashedConfig, (nn.Linear,), apply_hashed, replaces_weights=True,
                                structure=hashed_structure))

__all__ = [
    "CirculantConfig",
    "CirculantLinear",
    "HashedConfig",
    "HashedLinear",
    "circulant_linear",
    "hash_tables",
    "hashed_linear",
    "project_block_circulant",
]
