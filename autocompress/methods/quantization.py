"""Per-layer weight quantization (1..8 bits, float16) and k-means weight sharing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import QUANTIZE, ApplyContext, Method, MethodConfig, register
from autocompress.methods.layers import compress_layer, leaf_layers
from autocompress.methods.quantizers import ALLOWED_BITS, SHARE_BITS
from autocompress.methods.skeleton import each_leaf


@dataclass(frozen=True)
class QuantizeConfig(MethodConfig):
    """Quantize a layer's weights (quantization-aware fine-tuning, learned step size).

    Attributes:
        bits: 1 (binary: sign times a per-channel scale, XNOR-Net), 2..8 (integer codes),
            16 (float16) or 32 (unchanged).
        per_channel: One step per output channel instead of one per tensor.
        symmetric: Codes centred on zero; affine (False) adds a zero point per step.
    """

    method = "quantize"
    stage = QUANTIZE
    bits: int = 8
    per_channel: bool = True
    symmetric: bool = True

    def __post_init__(self):
        if self.bits not in ALLOWED_BITS:
            raise invalid("quantize.bits", self.bits, ALLOWED_BITS)

    def is_identity(self) -> bool:
        return self.bits == 32


@dataclass(frozen=True)
class ShareConfig(MethodConfig):
    """k-means weight sharing (Deep Compression): ``2**bits`` shared values per layer.

    The codebook is initialised linearly between the weights' extremes, fitted by Lloyd's
    algorithm on the (unpruned) weights, then fine-tuned by gradient (centroid fine-tuning).
    The artifact stores the codebook and the Huffman- or fixed-width-coded indices.

    Attributes:
        bits: Index width, 1..8 (2 to 256 shared values).
    """

    method = "share"
    stage = QUANTIZE
    bits: int = 4

    def __post_init__(self):
        if self.bits not in SHARE_BITS:
            raise invalid("share.bits", self.bits, SHARE_BITS)


def _replace_leaves(model: nn.Module, name: str, **settings) -> None:
    leaves = leaf_layers(model.get_submodule(name), name)
    if not leaves:
        kind = type(model.get_submodule(name)).__name__
        raise PlanError(f"{name}: is now a {kind} with no Linear / Conv2d / Embedding weights "
                        "to quantize or share (a structured replacement stores its own "
                        "parameters)")
    for leaf_name, leaf in leaves:
        model.set_submodule(leaf_name, compress_layer(leaf, **settings))


def apply_quantize(model: nn.Module, targets: Mapping[str, QuantizeConfig], ctx: ApplyContext):
    """Quantize each target layer (every Linear / Conv2d inside a replaced one)."""
    for name, c in targets.items():
        _replace_leaves(model, name, bits=c.bits, per_channel=c.per_channel,
                        symmetric=c.symmetric, share_bits=0)


def apply_share(model: nn.Module, targets: Mapping[str, ShareConfig], ctx: ApplyContext):
    """Share each target layer's weights through a k-means codebook."""
    for name, c in targets.items():
        _replace_leaves(model, name, share_bits=c.bits, bits=32)


WEIGHTED = (nn.Linear, nn.Conv2d, nn.Embedding)
def quantize_structure(layer: nn.Module, c: QuantizeConfig, name: str) -> nn.Module:
    """The quantized layer(s), unfitted (see :mod:`autocompress.methods.skeleton`)."""
    return each_leaf(layer, name, "quantize", bits=c.bits, per_channel=c.per_channel,
                     symmetric=c.symmetric, share_bits=0)


def share_structure(layer: nn.Module, c: ShareConfig, name: str) -> nn.Module:
    """The weight-shared layer(s), unfitted."""
    return each_leaf(layer, name, "share", share_bits=c.bits, bits=32)


QUANTIZE_METHOD = register(Method(QuantizeConfig, WEIGHTED, apply_quantize,
                                  structure=quantize_structure))
SHARE_METHOD = register(Method(ShareConfig, WEIGHTED, apply_share, structure=share_structure))
