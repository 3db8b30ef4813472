"""Per-layer weight quantization to any bit width, trained with a straight-through estimator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.errors import invalid
from autocompress.methods.base import (
    QUANTIZE,
    ApplyContext,
    Method,
    MethodConfig,
    register,
)
from autocompress.methods.layers import ALLOWED_BITS, QuantConv2d, QuantLinear


@dataclass(frozen=True)
class QuantizeConfig(MethodConfig):
    """Quantize a layer's weights.

    Attributes:
        bits: 1 (binary), 2..8 (integer codes), 16 (float16) or 32 (unchanged).
        per_channel: One scale per output channel instead of one per tensor.
    """

    method = "quantize"
    stage = QUANTIZE
    bits: int = 8
    per_channel: bool = True

    def __post_init__(self):
        if self.bits not in ALLOWED_BITS:
            raise invalid("quantize.bits", self.bits, ALLOWED_BITS)

    def is_identity(self) -> bool:
        return self.bits == 32


def quantize_module(module: nn.Module, config: QuantizeConfig) -> nn.Module:
    """Return a quantized copy of a Linear / Conv2d; other modules get their children quantized."""
    kw = {"bits": config.bits, "per_channel": config.per_channel}
    if isinstance(module, nn.Linear):
        new = QuantLinear(module.in_features, module.out_features, module.bias is not None, **kw)
    elif isinstance(module, nn.Conv2d):
        new = QuantConv2d(
            module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
            padding=module.padding, dilation=module.dilation, groups=module.groups,
            bias=module.bias is not None, padding_mode=module.padding_mode, **kw,
        )
    else:
        for name, child in module.named_children():
            setattr(module, name, quantize_module(child, config))
        return module
    new.load_state_dict(module.state_dict())
    return new.to(module.weight.device).train(module.training)


def apply_quantize(model: nn.Module, targets: Mapping[str, QuantizeConfig], ctx: ApplyContext):
    """Replace each target layer (or every Linear/Conv2d inside it) by its quantized version."""
    with torch.no_grad():
        for name, config in targets.items():
            model.set_submodule(name, quantize_module(model.get_submodule(name), config))


QUANTIZE_METHOD = register(Method(QuantizeConfig, (nn.Linear, nn.Conv2d), apply_quantize))
