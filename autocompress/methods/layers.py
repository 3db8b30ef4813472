"""Modules that compressed models are made of, and the registry of exportable module types."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.methods.quantizers import (
    ALLOWED_BITS,
    INT_BITS,
    SHARE_BITS,
    channel_view,
    fake_quantize,
    init_scale,
    kmeans_1d,
)

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


class Deployable:
    """A layer that deploys as the plain layer computing the same function, weight decoded once.

    The one declaration of a method's deployed form: :func:`autocompress.export.deployable`
    builds it, the ONNX export exports it, and the latency table keys and times it. The plain
    layer has the geometry of the Linear / Conv2d / Embedding this layer is (or, for layers of
    their own, of a Linear with its ``in_features`` / ``out_features`` and ``bias``).
    """

    # False: eager runtimes run the layer in its own form (a circulant layer's FFT is cheaper
    # than its dense matrix); exporters, which have no such layer, still materialise it
    dense_in_eager: bool = True

    def deployed_weight(self) -> torch.Tensor:
        """The plain layer's weight (decoded from codes, a hash or a structure)."""
        raise NotImplementedError


def deploys(module: nn.Module, exported: bool) -> bool:
    """Whether ``module`` is replaced by a plain layer when deployed (``exported``: to ONNX)."""
    return isinstance(module, Deployable) and (exported or module.dense_in_eager)


def conv_geometry(conv: nn.Conv2d) -> dict[str, Any]:
    """A dense conv's constructor arguments except ``groups`` (its replacements' geometry)."""
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels,
            "kernel_size": conv.kernel_size, "stride": conv.stride, "padding": conv.padding,
            "dilation": conv.dilation, "bias": conv.bias is not None,
            "padding_mode": conv.padding_mode}


class _CompressedWeight(Deployable):
    """The effective weight of a compressed Linear / Conv2d.

    ``weight -> (* mask) -> quantize (uniform, learned step) or share (k-means codebook) ->
    (* mask)``. Every stage is optional; the float ``weight`` stays the trainable master copy
    (for shared weights the codebook is trained instead: centroid fine-tuning). In eval mode
    without autograd the effective weight is cached, so inference costs what the float layer
    costs; the artifact stores the integer codes (packed or Huffman-coded), not the floats.
    """

    weight: nn.Parameter

    def _init_compression(self, bits: int, per_channel: bool, symmetric: bool, share_bits: int,
                          sparse: bool, calibrate: bool) -> None:
        if bits not in ALLOWED_BITS:
            raise ValueError(f"bits: invalid value {bits!r}; allowed: {ALLOWED_BITS}")
        if share_bits and share_bits not in SHARE_BITS:
            raise ValueError(f"share_bits: invalid value {share_bits!r}; allowed: {SHARE_BITS}")
        if share_bits and bits != 32:
            raise ValueError("a layer is either quantized (bits) or shared (share_bits), not both")
        self.bits, self.per_channel, self.symmetric = int(bits), bool(per_channel), bool(symmetric)
        self.share_bits, self.sparse = int(share_bits), bool(sparse)
        self._cache: tuple[tuple, torch.Tensor] | None = None
        if sparse:
            self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))
        if share_bits:
            self.codebook = nn.Parameter(torch.zeros(2**share_bits))
            self.register_buffer("indices", torch.zeros_like(self.weight, dtype=torch.long))
            self.weight.requires_grad_(False)  # the codebook is what fine-tuning moves
        elif bits in INT_BITS:
            channels = self.weight.shape[0] if per_channel else 1
            self.weight_scale = nn.Parameter(torch.ones(channels))
            if not symmetric and bits > 1:
                self.register_buffer("weight_zero_point", torch.zeros(channels))
        if calibrate:
            self.calibrate()

    @property
    def uniform(self) -> bool:
        """True when weights are uniformly quantized to 1..8 bits."""
        return not self.share_bits and self.bits in INT_BITS

    def masked_weight(self) -> torch.Tensor:
        """The float weight with pruned entries zeroed."""
        return self.weight * self.mask if self.sparse else self.weight

    def source_weight(self) -> torch.Tensor:
        """The float values a further transform starts from.

        A shared layer's are its centroids: its float weight stopped training when the codebook
        took over.
        """
        return self.effective_weight() if self.share_bits else self.masked_weight()

    @torch.no_grad()
    def calibrate(self) -> None:
        """Fit the quantizer (step, zero point) or the codebook to the current weights."""
        w = self.masked_weight()
        if self.share_bits:
            values = w[self.mask] if self.sparse else w.reshape(-1)
            centroids, assignment = kmeans_1d(values, 2**self.share_bits)
            self.codebook.data = centroids.to(w.dtype)
            indices = torch.zeros_like(self.indices)
            if self.sparse:
                indices[self.mask] = assignment
            else:
                indices = assignment.reshape(w.shape)
            self.indices = indices
        elif self.uniform:
            scale, zero_point = init_scale(w, self.bits, self.per_channel, self.symmetric)
            self.weight_scale.data = scale.to(w.dtype)
            if hasattr(self, "weight_zero_point"):
                self.weight_zero_point = zero_point.to(w.dtype)
        self._cache = None

    def quantizer_state(self):
        """``(scale, zero_point)`` broadcastable to the weight (zero point None if symmetric)."""
        w = self.weight
        scale = channel_view(self.weight_scale, w, self.per_channel)
        zp = getattr(self, "weight_zero_point", None)
        return scale, channel_view(zp, w, self.per_channel) if zp is not None else None

    def effective_weight(self) -> torch.Tensor:
        """The weight the deployed layer computes with."""
        if self.training or torch.is_grad_enabled():
            return self._effective_weight()
        key = tuple((t.data_ptr(), t._version) for t in self._state_tensors())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._effective_weight().detach())
        return self._cache[1]

    def deployed_weight(self) -> torch.Tensor:  # noqa: D102
        return self.effective_weight()

    def _state_tensors(self) -> list[torch.Tensor]:
        names = ("weight", "mask", "codebook", "indices", "weight_scale", "weight_zero_point")
        return [t for n in names if (t := getattr(self, n, None)) is not None]

    def _effective_weight(self) -> torch.Tensor:
        w = self.masked_weight()
        if self.share_bits:
            w = self.codebook[self.indices]
        elif self.uniform:
            w = fake_quantize(w, *self.quantizer_state(), self.bits)
        elif self.bits == 16:
            w = w.detach().half().to(w.dtype) + (w - w.detach())
        return w * self.mask if self.sparse else w

    def compression_args(self) -> dict:
        """Constructor arguments of the compression settings."""
        return {"bits": self.bits, "per_channel": self.per_channel, "symmetric": self.symmetric,
                "share_bits": self.share_bits, "sparse": self.sparse}

    def extra_repr(self) -> str:
        parts = [f"bits={self.bits}"] if self.bits != 32 else []
        parts += [f"share_bits={self.share_bits}"] if self.share_bits else []
        parts += ["sparse"] if self.sparse else []
        return ", ".join([super().extra_repr(), *parts])


@exportable("CompressedLinear")
class CompressedLinear(_CompressedWeight, nn.Linear):
    """``nn.Linear`` with optional unstructured sparsity and quantized or shared weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 bits: int = 32, per_channel: bool = True, symmetric: bool = True,
                 share_bits: int = 0, sparse: bool = False, calibrate: bool = True):
        super().__init__(in_features, out_features, bias)
        self._init_compression(bits, per_channel, symmetric, share_bits, sparse, calibrate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def export_args(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, **self.compression_args()}

    @classmethod
    def from_export_args(cls, args: dict) -> CompressedLinear:
        return cls(**args, calibrate=False)


@exportable("CompressedConv2d")
class CompressedConv2d(_CompressedWeight, nn.Conv2d):
    """``nn.Conv2d`` with optional unstructured sparsity and quantized or shared weights."""

    def __init__(self, *args, bits: int = 32, per_channel: bool = True, symmetric: bool = True,
                 share_bits: int = 0, sparse: bool = False, calibrate: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_compression(bits, per_channel, symmetric, share_bits, sparse, calibrate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def export_args(self) -> dict:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size), "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation": list(self.dilation), "groups": self.groups,
            "bias": self.bias is not None, "padding_mode": self.padding_mode,
            **self.compression_args(),
        }

    @classmethod
    def from_export_args(cls, args: dict) -> CompressedConv2d:
        args = dict(args)
        for key in ("kernel_size", "stride", "dilation", "padding"):
            if isinstance(args[key], list):
                args[key] = tuple(args[key])
        return cls(**args, calibrate=False)


@exportable("CompressedEmbedding")
class CompressedEmbedding(_CompressedWeight, nn.Embedding):
    """``nn.Embedding`` with quantized (one step per row) or shared table entries.

    Sparse gradients (``nn.Embedding(sparse=True)``) are not supported: ``sparse`` here is the
    unstructured-sparsity flag of the compressed weight.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, *, bits: int = 32, per_channel: bool = True,
                 symmetric: bool = True, share_bits: int = 0, sparse: bool = False,
                 calibrate: bool = True):
        super().__init__(num_embeddings, embedding_dim, padding_idx, max_norm, norm_type,
                         scale_grad_by_freq)
        self._init_compression(bits, per_channel, symmetric, share_bits, sparse, calibrate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(x, self.effective_weight(), self.padding_idx, None, self.norm_type,
                           self.scale_grad_by_freq, False)

    def export_args(self) -> dict:
        return {**embedding_args(self), **self.compression_args()}

    @classmethod
    def from_export_args(cls, args: dict) -> CompressedEmbedding:
        return cls(**args, calibrate=False)


def embedding_args(m: nn.Embedding) -> dict:
    """Constructor arguments of an embedding table (JSON-able)."""
    return {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim,
            "padding_idx": m.padding_idx, "max_norm": m.max_norm, "norm_type": m.norm_type,
            "scale_grad_by_freq": m.scale_grad_by_freq}


COMPRESSED = (CompressedLinear, CompressedConv2d, CompressedEmbedding)
# The layer families a compressed layer can stand in for (weight-holding leaves).
WEIGHTED = (nn.Linear, nn.Conv2d, nn.Embedding)
# State a compressed layer's artifact replaces by positions and codes (never stored as floats).
CODED_STATE = ("weight", "mask", "indices")


def overrides_forward(module: nn.Module) -> bool:
    """True when ``module`` subclasses Linear / Conv2d / Embedding and computes differently.

    Such a layer (a TF-"same"-padding conv, say) cannot be swapped for a compressed or
    factorized one without changing what the model computes; only in-place methods apply.
    """
    cls = type(module)
    for family in WEIGHTED:
        if isinstance(module, family) and not issubclass(cls, COMPRESSED):
            return cls.forward is not family.forward or (
                family is nn.Conv2d and cls._conv_forward is not nn.Conv2d._conv_forward)
    return False


def compressed_like(layer: nn.Module, **settings) -> nn.Module:
    """An unfitted compressed layer of ``layer``'s geometry (Linear, Conv2d or Embedding)."""
    if isinstance(layer, nn.Linear):
        return CompressedLinear(layer.in_features, layer.out_features, layer.bias is not None,
                                **settings, calibrate=False)
    if isinstance(layer, nn.Embedding):
        if layer.sparse and not isinstance(layer, CompressedEmbedding):
            raise ValueError("embeddings with sparse gradients cannot be compressed")
        return CompressedEmbedding(**embedding_args(layer), **settings, calibrate=False)
    return CompressedConv2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
        padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
        bias=layer.bias is not None, padding_mode=layer.padding_mode, **settings,
        calibrate=False,
    )


def compress_layer(layer: nn.Module, **settings) -> nn.Module:
    """A compressed copy of a Linear / Conv2d / Embedding with ``settings`` on its current ones.

    An already compressed layer keeps its mask and other settings unless overridden; the
    quantizer or codebook is then fitted to the (masked) weights.
    """
    current = layer.compression_args() if isinstance(layer, COMPRESSED) else {}
    new = compressed_like(layer, **{**current, **settings})
    with torch.no_grad():
        new.weight.copy_(layer.source_weight() if isinstance(layer, COMPRESSED) else layer.weight)
        if getattr(layer, "bias", None) is not None:
            new.bias.copy_(layer.bias)
        if new.sparse:
            new.mask = layer.mask.clone() if isinstance(layer, COMPRESSED) and layer.sparse else (
                layer.weight != 0)
    new.calibrate()
    return new.to(layer.weight.device).train(layer.training)


def leaf_layers(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The Linear / Conv2d / Embedding layers at or in ``module`` (replaced layers have several)."""
    if isinstance(module, WEIGHTED):
        return [(prefix, module)]
    return [(f"{prefix}.{n}" if prefix else n, m) for n, m in module.named_modules()
            if isinstance(m, WEIGHTED)]


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


@exportable("LowRankEmbedding")
class LowRankEmbedding(nn.Module):
    """``ids -> proj(embed(ids))``: an embedding table factorized through ``rank`` dimensions.

    ``embed`` is an ``(num_embeddings x rank)`` table and ``proj`` a bias-free
    ``Linear(rank, embedding_dim)``: the table costs ``rank * (num_embeddings + embedding_dim)``
    values instead of ``num_embeddings * embedding_dim``.
    """

    def __init__(self, num_embeddings: int, rank: int, embedding_dim: int,
                 padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.rank, self.embedding_dim = num_embeddings, rank, embedding_dim
        self.padding_idx = padding_idx
        self.embed = nn.Embedding(num_embeddings, rank, padding_idx)
        self.proj = nn.Linear(rank, embedding_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids))

    def export_args(self) -> dict:
        return {"num_embeddings": self.num_embeddings, "rank": self.rank,
                "embedding_dim": self.embedding_dim, "padding_idx": self.padding_idx}

    def extra_repr(self) -> str:
        return (f"num_embeddings={self.num_embeddings}, rank={self.rank}, "
                f"embedding_dim={self.embedding_dim}")
