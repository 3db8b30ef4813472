"""Analytic costs: parameters, MACs and weight bytes at the planned bit widths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.methods.layers import CODED_STATE, COMPRESSED


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class TracedCosts:
    """Costs counted on one real forward pass.

    Attributes:
        macs: Multiply-accumulates per sample.
        bops: Bit operations per sample (each MAC times weight bits times activation bits).
        peak_activation_bytes: The largest input + output of any leaf module for the traced
            batch: the activations that must be alive at once in a sequential runtime.
    """

    macs: int
    bops: int
    peak_activation_bytes: int


def weight_bits(module: nn.Module) -> int:
    """The stored bit width of ``module``'s weight.

    The code width of a compressed layer, else the weight tensor's own precision (16 for a
    half-precision layer, 32 for float32), as :func:`weight_bytes` counts it.
    """
    if isinstance(module, COMPRESSED):
        return int(module.share_bits or module.bits)
    weight = getattr(module, "weight", None)
    tensor = weight if isinstance(weight, torch.Tensor) else next(module.parameters(), None)
    return tensor.element_size() * 8 if tensor is not None else 32


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def module_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates per sample of one Linear/Conv (or self-costing) module's call."""
    batch = output.shape[0] if output.dim() > 1 else 1
    if hasattr(module, "macs_per_sample"):
        return int(module.macs_per_sample(output))
    if isinstance(module, nn.Linear):
        return output.numel() // batch * module.in_features
    return output.numel() // batch * module.weight[0].numel()  # in/groups * kernel


def trace_costs(model: nn.Module, example_inputs: Any, activation_bits: int = 32) -> TracedCosts:
    """Count MACs and bit operations per sample and the peak activations, on a real forward.

    Linear and Conv layers are counted from their shapes; a module that knows its own cost
    (``macs_per_sample(output)``, e.g. FFT-based circulant layers) reports it. Bit operations
    weight each layer's MACs by its stored weight bit width and ``activation_bits``.
    """
    macs = bops = peak = 0

    def counted(module, inputs, output):
        nonlocal macs, bops
        n = module_macs(module, output)
        macs += n
        bops += n * weight_bits(module) * activation_bits

    def live(module, inputs, output):
        nonlocal peak
        peak = max(peak, _tensor_bytes(inputs) + _tensor_bytes(output))

    hooks = [m.register_forward_hook(counted) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
             or hasattr(m, "macs_per_sample")]
    hooks += [m.register_forward_hook(live) for m in model.modules()
              if not list(m.children())]
    hooked_forward(model, example_inputs, hooks)
    return TracedCosts(int(macs), int(bops), int(peak))


def hooked_forward(model: nn.Module, example_inputs: Any, hooks: list) -> None:
    """One eval-mode, no-grad forward that fires ``hooks``; then removes them, restores the mode."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*(example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def count_macs(model: nn.Module, example_inputs: Any) -> int:
    """Multiply-accumulates per sample, counted on a real forward (see :func:`trace_costs`)."""
    return trace_costs(model, example_inputs).macs


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
