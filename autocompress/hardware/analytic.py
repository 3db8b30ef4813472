"""Analytic costs: parameters, MACs and weight bytes at the planned bit widths."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autocompress.methods.layers import QuantConv2d, QuantLinear


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates per sample of Linear and Conv layers, counted on a real forward."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        batch = output.shape[0] if output.dim() > 1 else 1
        if isinstance(module, nn.Linear):
            total += output.numel() // batch * module.in_features
        else:
            kernel = module.weight[0].numel()  # in_channels/groups * kh * kw
            total += output.numel() // batch * kernel

    hooks = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
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
    """Bytes of all parameters and buffers at their stored precision (quantized weights packed)."""
    total_bits = 0
    quant = {
        id(m.weight): m.bits for m in model.modules() if isinstance(m, (QuantLinear, QuantConv2d))
    }
    for tensor in list(model.parameters()) + list(model.buffers()):
        bits = quant.get(id(tensor), tensor.element_size() * 8)
        total_bits += tensor.numel() * bits
    return (total_bits + 7) // 8
