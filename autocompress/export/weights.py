"""How a compressed layer's weight is written: positions, codes or indices, never the floats.

For a CompressedLinear / CompressedConv2d the artifact stores, instead of the float weight:
the positions of the kept weights when it is sparse (bitmap or coded index gaps), then the kept
values as uniform codes, codebook indices (both packed or Huffman-coded), float16 or float32.
The layer's other state (bias, step sizes, zero points, codebook) is stored as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.errors import ArtifactError
from autocompress.export.streams import (
    decode_positions,
    decode_stream,
    encode_positions,
    encode_stream,
)
from autocompress.methods.layers import CODED_STATE, COMPRESSED
from autocompress.methods.quantizers import dequantize, weight_codes

ENCODED = CODED_STATE  # state entries replaced by the encoding


def compressed_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Name -> compressed layer, for every CompressedLinear / CompressedConv2d."""
    return {n: m for n, m in model.named_modules() if isinstance(m, COMPRESSED)}


def encode_layer(prefix: str, layer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the JSON encoding of one compressed layer's weight."""
    tensors: dict[str, torch.Tensor] = {}
    enc: dict[str, Any] = {"shape": list(layer.weight.shape)}
    mask = layer.mask.cpu().numpy().reshape(-1) if layer.sparse else None
    if mask is not None:
        payload, enc["positions"] = encode_positions(mask)
        tensors[f"{prefix}.positions"] = torch.from_numpy(payload)
    keep = (lambda a: a[mask]) if mask is not None else (lambda a: a)
    w = layer.masked_weight().detach().cpu()
    if layer.share_bits:
        symbols = keep(layer.indices.cpu().numpy().reshape(-1))
        payload, enc["values"] = encode_stream(symbols, layer.share_bits)
        enc["bits"] = layer.share_bits
    elif layer.uniform:
        scale, zp = (t.detach().cpu() if t is not None else None for t in layer.quantizer_state())
        codes = weight_codes(w, scale, zp, layer.bits).numpy().reshape(-1)
        payload, enc["values"] = encode_stream(keep(codes), layer.bits)
        enc["bits"] = layer.bits
    else:
        dtype = torch.float16 if layer.bits == 16 else torch.float32
        tensors[f"{prefix}.values"] = torch.from_numpy(keep(w.numpy().reshape(-1))).to(dtype)
        enc["values"] = {"coding": "raw"}
        enc["bits"] = layer.bits
        return tensors, enc
    tensors[f"{prefix}.values"] = torch.from_numpy(payload)
    return tensors, enc


def check_encoding(prefix: str, enc: dict[str, Any], args: dict[str, Any],
                   tensors: dict[str, torch.Tensor], where: str = "artifact") -> None:
    """Refuse an encoding that disagrees with its module's spec or its own tensors.

    The checksum detects damage; this detects a spec edited consistently with a recomputed
    checksum but not with the data (a layer's ``bits`` changed, a shape altered...).
    """
    try:
        _check_encoding(prefix, enc, args, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: {prefix}: inconsistent encoding ({exc})") from None


def _check_encoding(prefix, enc, args, tensors) -> None:
    shape = tuple(enc["shape"])
    expected = _weight_shape(args)
    if shape != expected:
        raise ValueError(f"weight shape {shape} but the module's is {expected}")
    bits = int(args.get("share_bits") or args.get("bits", 32))
    if int(enc["bits"]) != bits:
        raise ValueError(f"values coded at {enc['bits']} bits but the module says {bits}")
    values = enc["values"]
    if values["coding"] == "fixed" and int(values["bits"]) != bits:
        raise ValueError(f"codes packed at {values['bits']} bits but the module says {bits}")
    if values["coding"] == "huffman" and max(values["symbols"], default=0) >= 2**bits:
        raise ValueError(f"codes up to {max(values['symbols'])} do not fit {bits} bits")
    if args.get("share_bits"):
        size = tensors[f"{prefix}.codebook"].numel()
        if size != 2**bits:
            raise ValueError(f"codebook of {size} values for {bits}-bit indices")
    elif values["coding"] != "raw":
        scale = tensors[f"{prefix}.weight_scale"].numel()
        channels = shape[0] if args.get("per_channel") else 1
        if scale != channels:
            raise ValueError(f"{scale} quantizer steps for {channels} channel(s)")


def _weight_shape(args: dict[str, Any]) -> tuple[int, ...]:
    if "embedding_dim" in args:
        return args["num_embeddings"], args["embedding_dim"]
    if "in_features" in args:
        return args["out_features"], args["in_features"]
    kernel = args["kernel_size"]
    kernel = tuple(kernel) if isinstance(kernel, (list, tuple)) else (kernel, kernel)
    return (args["out_channels"], args["in_channels"] // args["groups"], *kernel)


def decode_layer(prefix: str, enc: dict[str, Any], tensors: dict[str, torch.Tensor],
                 args: dict[str, Any]) -> dict[str, torch.Tensor]:
    """State entries (weight, mask, indices) of one compressed layer."""
    shape = tuple(enc["shape"])
    size = int(np.prod(shape))
    try:
        mask = (decode_positions(tensors[f"{prefix}.positions"].numpy(), enc["positions"])
                if args.get("sparse") else np.ones(size, dtype=bool))
        values = tensors[f"{prefix}.values"]
        state = _decode_values(prefix, enc, values, mask, shape, tensors, args)
    except (KeyError, ValueError, IndexError) as exc:
        raise ArtifactError(f"artifact: cannot decode {prefix}: {exc}") from None
    if args.get("sparse"):
        state[f"{prefix}.mask"] = torch.from_numpy(mask.reshape(shape))
    return state


def _decode_values(prefix, enc, values, mask, shape, tensors, args):
    state: dict[str, torch.Tensor] = {}
    flat = torch.zeros(mask.size, dtype=torch.float32)
    where = torch.from_numpy(mask)
    if enc["values"]["coding"] == "raw":
        flat[where] = values.float()
    elif args.get("share_bits"):
        indices = torch.zeros(mask.size, dtype=torch.long)
        indices[where] = torch.from_numpy(decode_stream(values.numpy(), enc["values"]))
        state[f"{prefix}.indices"] = indices.reshape(shape)
        flat[where] = tensors[f"{prefix}.codebook"][indices[where]]
    else:
        codes = torch.from_numpy(decode_stream(values.numpy(), enc["values"]))
        scale = _per_entry(tensors[f"{prefix}.weight_scale"], shape, args["per_channel"])
        zp = tensors.get(f"{prefix}.weight_zero_point")
        zp = _per_entry(zp, shape, args["per_channel"]) if zp is not None else None
        flat[where] = dequantize(codes, scale[where], zp[where] if zp is not None else None,
                                 args["bits"])
    state[f"{prefix}.weight"] = flat.reshape(shape)
    return state


def _per_entry(values: torch.Tensor, shape: tuple[int, ...], per_channel: bool) -> torch.Tensor:
    """A per-channel (or scalar) tensor expanded to one value per weight entry, flattened."""
    view = values.reshape((-1,) + (1,) * (len(shape) - 1)) if per_channel else values.reshape(
        (1,) * len(shape))
    return view.expand(shape).reshape(-1)
