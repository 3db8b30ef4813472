"""Modules that compressed models are made of: low-rank linear layers and quantized layers.

Quantized layers keep float master weights for fine-tuning and quantize them in the forward pass
with a straight-through estimator. In eval mode the quantized weight is cached, so inference
costs the same as the float layer; the artifact writer stores the integer codes, packed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXPORTABLE: dict[str, type[nn.Module]] = {}


def exportable(name: str):
    """Class decorator: the artifact can describe and rebuild this module type.

    The class implements ``export_args(self) -> dict`` (JSON-able constructor arguments) and
    may override the classmethod ``from_export_args(args)`` (default ``cls(**args)``). Children
    that hold parameters are described and rebuilt on their own, after their parent.
    """

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        if name in EXPORTABLE and EXPORTABLE[name] is not cls:
            raise ValueError(f"exportable module name {name!r} is already taken")
        EXPORTABLE[name] = cls
        cls.export_name = name
        if "from_export_args" not in vars(cls):
            cls.from_export_args = classmethod(lambda c, args: c(**args))
        return cls

    return register


FLOAT_BITS = (16, 32)
INT_BITS = tuple(range(1, 9))
ALLOWED_BITS = INT_BITS + FLOAT_BITS


def _channel_reduce(w: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    """Reduce |w| per output channel (dim 0) or over the whole tensor (broadcastable result)."""
    a = w.detach().abs()
    if per_channel:
        return fn(a.reshape(a.shape[0], -1), dim=1).reshape(-1, *([1] * (w.dim() - 1)))
    return fn(a.reshape(1, -1), dim=1).reshape(*([1] * w.dim()))


def quantize_weight(w: torch.Tensor, bits: int, per_channel: bool = True):
    """Quantize ``w`` to ``bits`` (1..8) and return unsigned codes in [0, 2**bits) and scales.

    1 bit is binarization with a mean-magnitude scale (XNOR-Net); 2..8 bits are symmetric
    uniform with levels ``-2**(b-1) .. 2**(b-1)-1``, so a layer (or channel) holds at most
    ``2**bits`` distinct values.

    Returns:
        ``(codes, scale)``: codes as int64 of ``w``'s shape, scale broadcastable to ``w``.
    """
    if bits == 1:
        scale = _channel_reduce(w, per_channel, lambda a, dim: a.mean(dim=dim))
        return (w.detach() >= 0).long(), scale.clamp_min(1e-12)
    qmax = 2 ** (bits - 1) - 1
    scale = _channel_reduce(w, per_channel, lambda a, dim: a.amax(dim=dim)) / qmax
    scale = scale.clamp_min(1e-12)
    codes = torch.clamp(torch.round(w.detach() / scale), -(qmax + 1), qmax)
    return (codes + qmax + 1).long(), scale


def dequantize_codes(codes: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Inverse of :func:`quantize_weight`: map unsigned codes back to float values."""
    if bits == 1:
        return (codes.float() * 2 - 1) * scale
    return (codes.float() - 2 ** (bits - 1)) * scale


def fake_quantize(w: torch.Tensor, bits: int, per_channel: bool = True) -> torch.Tensor:
    """Quantize-dequantize ``w`` with a straight-through gradient (identity backward)."""
    if bits == 32:
        return w
    if bits == 16:
        q = w.detach().half().float()
    else:
        q = dequantize_codes(*quantize_weight(w, bits, per_channel), bits)
    return q + (w - w.detach())  # exactly q forward (w + (q - w) is off by ulps), identity grad


class _QuantMixin:
    """Weight quantization shared by QuantLinear and QuantConv2d."""

    bits: int
    per_channel: bool
    weight: nn.Parameter

    def _init_quant(self, bits: int, per_channel: bool) -> None:
        if bits not in ALLOWED_BITS:
            raise ValueError(f"bits: invalid value {bits!r}; allowed: {ALLOWED_BITS}")
        self.bits, self.per_channel = int(bits), bool(per_channel)
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    def quantized_weight(self) -> torch.Tensor:
        """The weight as the deployed layer sees it (cached in eval mode)."""
        if self.training or torch.is_grad_enabled():
            return fake_quantize(self.weight, self.bits, self.per_channel)
        key = (self.weight.data_ptr(), self.weight._version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, fake_quantize(self.weight, self.bits, self.per_channel).detach())
        return self._cache[1]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bits={self.bits}, per_channel={self.per_channel}"


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` whose weight is quantized to ``bits`` in the forward pass."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 bits: int = 8, per_channel: bool = True):
        super().__init__(in_features, out_features, bias)
        self._init_quant(bits, per_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` whose weight is quantized to ``bits`` in the forward pass."""

    def __init__(self, *args, bits: int = 8, per_channel: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(bits, per_channel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class LowRankLinear(nn.Module):
    """``x -> v(u(x))``: a linear layer factorized through ``rank`` hidden units."""

    def __init__(self, in_features: int, rank: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.rank, self.out_features = in_features, rank, out_features
        self.u = nn.Linear(in_features, rank, bias=False)
        self.v = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.v(self.u(x))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, rank={self.rank}, "
                f"out_features={self.out_features}")
