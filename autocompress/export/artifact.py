"""The compressed artifact: the model exactly as compressed, in one safetensors file.

Layout: a safetensors file whose metadata holds a JSON spec (format version, the base model's
factory, every parameterised module's constructor arguments, how each tensor is encoded, and a
checksum of the tensor data). Pruned layers are stored at their pruned shapes, low-rank layers as
their factors, quantized weights as packed integer codes plus per-channel scales. Loading builds
the base model from its factory, swaps in the described modules and fills the tensors: nothing
is unpickled. Size budgets are the bytes of this file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from autocompress.errors import ArtifactError
from autocompress.export.modules import build, describe
from autocompress.export.weights import ENCODED, compressed_layers, decode_layer, encode_layer

FORMAT, VERSION = "autocompress-artifact", 2
BASE_ATTR = "_autocompress_base"


def model_ref(model: nn.Module) -> dict[str, Any]:
    """The factory reference (``{"model": name, "kwargs": {...}}``) a zoo model was built from."""
    ref = getattr(model, BASE_ATTR, None)
    if ref is None:
        raise ArtifactError(
            "model has no base reference: build it with autocompress.zoo.build_model or pass "
            "base={'model': 'package.module:factory', 'kwargs': {...}}"
        )
    return ref


def to_bytes(model: nn.Module, base: dict | None = None, extra: dict | None = None) -> bytes:
    """Serialise ``model`` as a compressed artifact and return the file's bytes."""
    base = base or model_ref(model)
    tensors, encodings = _encode_tensors(model)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "base": base,
        "modules": describe(model),
        "encodings": encodings,
        "extra": extra or {},
    }
    spec["checksum"] = _checksum(tensors, spec)
    return st_save(tensors, metadata={"autocompress": _pack_spec(spec)})


def save_compressed(model: nn.Module, path: str | os.PathLike, base: dict | None = None,
                    extra: dict | None = None) -> int:
    """Write the artifact to ``path`` and return its size in bytes."""
    data = to_bytes(model, base, extra)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def load_compressed(path: str | os.PathLike) -> nn.Module:
    """Rebuild the compressed model from an artifact file (in eval mode)."""
    return from_bytes(_read(path), str(path))


def read_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The artifact's JSON spec (base model, modules, encodings, extra info)."""
    return _parse(_read(path), str(path))[1]


def size_breakdown(source: bytes | str | os.PathLike) -> dict[str, int]:
    """Bytes of an artifact (file or bytes) per layer, plus ``(header)`` for spec and index.

    The values add up to the file's size: the header is everything that is not tensor data.
    """
    data = source if isinstance(source, bytes) else _read(source)
    tensors, _ = _parse(data, str(source)[:80] if not isinstance(source, bytes) else "artifact")
    sizes: dict[str, int] = {}
    for key, tensor in tensors.items():
        layer = key.rsplit(".", 1)[0]  # "fc.weight", "fc.values", "fc.positions" -> "fc"
        sizes[layer] = sizes.get(layer, 0) + tensor.numel() * tensor.element_size()
    sizes["(header)"] = len(data) - sum(sizes.values())
    return sizes


def _read(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read artifact: {exc.strerror or exc}") from None


def from_bytes(data: bytes, where: str = "artifact") -> nn.Module:
    """Rebuild a model from artifact bytes."""
    from autocompress.zoo import build_model

    tensors, spec = _parse(data, where)
    model = build_model(spec["base"]["model"], **spec["base"].get("kwargs", {}))
    for entry in sorted(spec["modules"], key=lambda e: e["name"].count(".")):
        if entry["name"]:
            model.set_submodule(entry["name"], build(entry))
    state = _decode_tensors(tensors, spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{where}: tensors do not match the described model: {exc}") from None
    setattr(model, BASE_ATTR, spec["base"])
    return model.eval()


def _pack_spec(spec: dict[str, Any]) -> str:
    """The spec as compact JSON, deflated and base64-encoded (it is most of a tiny file)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(text, 9)).decode("ascii")


def _unpack_spec(packed: str) -> dict[str, Any]:
    return json.loads(zlib.decompress(base64.b64decode(packed, validate=True)))


def _parse(data: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        spec = _unpack_spec(header["__metadata__"]["autocompress"])
        tensors = st_load(data)
    except (SafetensorError, ValueError, KeyError, TypeError, zlib.error) as exc:
        raise ArtifactError(f"{where}: not a valid autocompress artifact ({exc})") from None
    if not isinstance(spec, dict):
        raise ArtifactError(f"{where}: not a valid autocompress artifact (spec is not a mapping)")
    if spec.get("format") != FORMAT or spec.get("version") != VERSION:
        raise ArtifactError(
            f"{where}: unsupported artifact {spec.get('format')!r} v{spec.get('version')}; "
            f"this autocompress reads {FORMAT} v{VERSION}"
        )
    if _checksum(tensors, spec) != spec.get("checksum"):
        raise ArtifactError(f"{where}: artifact is damaged (checksum mismatch)")
    return tensors, spec


def _checksum(tensors: dict[str, torch.Tensor], spec: dict[str, Any]) -> str:
    """SHA-256 of the spec (less the checksum) and the tensors: damage anywhere is detected."""
    digest = hashlib.sha256()
    described = {k: v for k, v in spec.items() if k != "checksum"}
    digest.update(json.dumps(described, sort_keys=True).encode())
    for key in sorted(tensors):
        digest.update(key.encode())
        digest.update(tensors[key].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _encode_tensors(model: nn.Module):
    tensors: dict[str, torch.Tensor] = {}
    encodings: dict[str, dict[str, Any]] = {}
    layers = compressed_layers(model)
    skip = {f"{n}.{entry}" for n in layers for entry in ENCODED}
    for key, value in model.state_dict().items():
        if key not in skip:
            tensors[key] = value.detach().cpu().contiguous().clone()
    for name, layer in layers.items():
        layer_tensors, encodings[name] = encode_layer(name, layer)
        tensors.update(layer_tensors)
    return tensors, encodings


def _decode_tensors(tensors: dict[str, torch.Tensor], spec: dict[str, Any]):
    modules = {m["name"]: m["args"] for m in spec["modules"]}
    encoded = {f"{n}.{suffix}" for n in spec["encodings"] for suffix in ("positions", "values")}
    state = {k: v for k, v in tensors.items() if k not in encoded}
    for name, enc in spec["encodings"].items():
        if name not in modules:
            raise ArtifactError(f"artifact: encoding for {name!r}, which no module describes")
        state.update(decode_layer(name, enc, tensors, modules[name]))
    return state
