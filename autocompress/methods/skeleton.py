"""Unfitted replacements: a method's *structure*, for costing a plan without building it.

Each method declares ``Method.structure(layer, config, name)``: the module its ``apply`` puts
in the layer's place, built by the same constructors and rank rules but never fitted (no SVD,
decomposition, k-means, least squares or calibration). The latency table traces a model made of
these (:func:`autocompress.hardware.lut.kernels.plan_skeleton`). The helpers here build the
compressed-weight layers of the quantize, share and sparsify stages.
"""

from __future__ import annotations

import torch
from torch import nn

from autocompress.errors import PlanError
from autocompress.methods.layers import COMPRESSED, WEIGHTED, compressed_like, leaf_layers


def unfitted_compressed(layer: nn.Module, sparsity: float | None = None,
                        **settings) -> nn.Module:
    """``compress_layer``'s module, unfitted; ``sparsity`` zeroes that share of the mask."""
    merged = {**(layer.compression_args() if isinstance(layer, COMPRESSED) else {}), **settings}
    new = compressed_like(layer, **merged)
    if getattr(layer, "sparse", False):
        new.mask = layer.mask.clone()
    if sparsity is not None:  # as many zeros as the magnitude threshold leaves
        mask = torch.ones_like(new.weight, dtype=torch.bool)
        mask.view(-1)[: int(round(sparsity * mask.numel()))] = False
        new.mask = mask
    return _plausible(new)


@torch.no_grad()
def _plausible(layer: nn.Module) -> nn.Module:
    """Give an unfitted compressed layer codes that are not all zero, without fitting.

    With its initial step (1.0) or codebook (zeros) every effective weight is 0, and ONNX
    Runtime ran MiniLM with all-zero weights a third faster than with real ones: the
    skeleton must compute with ordinary values. A uniform quantizer's step is set from the
    weights' range (``calibrate``, one pass); a codebook is spread over that range and the
    codes drawn at random (no k-means).
    """
    if layer.share_bits:
        w = layer.weight
        layer.codebook.copy_(torch.linspace(float(w.min()), float(w.max()), 2**layer.share_bits))
        generator = torch.Generator().manual_seed(0)
        layer.indices = torch.randint(0, 2**layer.share_bits, w.shape, generator=generator)
    elif layer.uniform:
        layer.calibrate()
    return layer


def each_leaf(module: nn.Module, name: str, method: str, **settings) -> nn.Module:
    """``module`` with every Linear / Conv2d / Embedding in it an unfitted compressed layer."""
    leaves = leaf_layers(module, name)
    if not leaves:
        raise PlanError(f"{name}: is now a {type(module).__name__} with no Linear / Conv2d "
                        f"weights to {method}")
    if isinstance(module, WEIGHTED):
        return unfitted_compressed(module, **settings)
    for leaf_name, leaf in leaves:
        module.set_submodule(leaf_name[len(name) + 1:], unfitted_compressed(leaf, **settings))
    return module


__all__ = ["each_leaf", "unfitted_compressed"]
