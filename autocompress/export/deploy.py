"""The deployed form of a compressed model: plain PyTorch layers, weights decoded once.

A compressed layer keeps its codes, codebook, mask and step sizes so that it can be fine-tuned
and saved as codes; at inference it computes with its effective weight. Deployed, that weight
is decoded once (at load time) into a plain ``nn.Linear`` / ``nn.Conv2d``, so an inference
costs exactly what the layer's shape costs: this is what eager PyTorch and CUDA targets time,
and what ``export_onnx`` exports. The file on disk (the artifact) stays compressed.

Hashed layers are materialised too (hashing saves storage, not compute). Circulant layers
keep their FFT form unless ``dense_circulant`` (ONNX has no FFT-based layer, so the exporter
materialises them).

    model = deployable(load_compressed("model.acz"))
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from autocompress.methods.layers import deploys, embedding_args


def deployable(model: nn.Module, dense_circulant: bool = True) -> nn.Module:
    """A plain-PyTorch copy of ``model`` computing the same function (eval mode).

    Args:
        model: A (compressed) model; it is not modified.
        dense_circulant: Materialise circulant layers as dense ones too.
    """
    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        plain = deploy_layer(module, dense_circulant)
        if plain is not None and name:
            model.set_submodule(name, plain)
        elif plain is not None:
            return plain
    return model


def deploy_layer(module: nn.Module, dense_circulant: bool = True) -> nn.Module | None:
    """The plain layer computing what ``module`` computes, or None if it is plain already.

    Reads the layer's own declaration (:class:`~autocompress.methods.layers.Deployable`):
    whether it deploys on this kind of runtime and its decoded weight.
    """
    if not deploys(module, exported=dense_circulant):
        return None
    with torch.no_grad():
        weight = module.deployed_weight().detach()
        plain = plain_structure(module, device=weight.device, dtype=weight.dtype)
        plain.weight.copy_(weight)
        if getattr(module, "bias", None) is not None:
            plain.bias.copy_(module.bias)
    return plain.eval()


def plain_structure(module: nn.Module, **like) -> nn.Module:
    """The plain Linear / Conv2d / Embedding of ``module``'s geometry, weights not set.

    ``like`` are tensor options (``device="meta"`` gives the structure without memory, as the
    latency table reads it).
    """
    if isinstance(module, nn.Embedding):
        return nn.Embedding(**embedding_args(module), **like)
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation, module.groups,
                         module.bias is not None, module.padding_mode, **like)
    return nn.Linear(module.in_features, module.out_features, module.bias is not None, **like)
