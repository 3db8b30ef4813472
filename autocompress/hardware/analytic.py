"""Analytic costs: parameters, MACs and weight bytes at the planned bit widths."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autocompress.methods.layers import CODED_STATE, COMPRESSED


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates per sample, counted on a real forward.

    Linear and Conv layers are counted from their shapes; a module that knows its own cost
    (``macs_per_sample(output)``, e.g. FFT-based circulant layers) reports it.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        batch = output.shape[0] if output.dim() > 1 else 1
        if hasattr(module, "macs_per_sample"):
            total += int(module.macs_per_sample(output))
        elif isinstance(module, nn.Linear):
            total += output.numel() // batch * module.in_features
        else:
            kernel = module.weight[0].numel()  # in_channels/groups * kh * kw
            total += output.numel() // batch * kernel

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
        or hasattr(m, "macs_per_sample")
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*(example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return int(total)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers at their stored precision (an estimate of the payload).

    Compressed layers count their kept weights at the code width (quantized or shared), not
    their float master copy; masks and codebook indices are counted as codes, not as tensors.
    The artifact's bytes remain the measured size.
    """
    total_bits = 0
    encoded = set()
    for layer in (m for m in model.modules() if isinstance(m, COMPRESSED)):
        kept = int(layer.mask.sum()) if layer.sparse else layer.weight.numel()
        total_bits += kept * (layer.share_bits or layer.bits)
        encoded.update(id(getattr(layer, n)) for n in CODED_STATE if hasattr(layer, n))
    for tensor in model.state_dict(keep_vars=True).values():  # persistent state only
        if id(tensor) not in encoded:
            total_bits += tensor.numel() * tensor.element_size() * 8
    return (total_bits + 7) // 8
