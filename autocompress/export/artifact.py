"""The compressed artifact: the model exactly as compressed, in one safetensors file.

Layout: a safetensors file whose metadata holds a JSON spec (format version, the base model's
reference, the modules that methods replaced or reshaped, how each tensor is encoded, and a
checksum). Every other module is stored as its tensors only and rebuilt by the base model's
constructor, so any ``nn.Module`` can be saved. Pruned layers are stored at their pruned
shapes, low-rank layers as their factors, quantized weights as packed integer codes plus
per-channel scales; tensors tied to each other are stored once.

Loading runs no code named by the file unless the caller trusts it: the base model comes from
``base=`` (the model or its factory), a zoo name, or, only with ``trust_code=True``, the import
path the file names. The spec is cross-checked against the tensors (shapes, code widths), so
an edited spec is refused. Nothing is unpickled. Size budgets are the bytes of this file.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import zlib
from collections.abc import Callable
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from autocompress.errors import ArtifactError
from autocompress.export.modules import build, class_name, describe, reshape_kept
from autocompress.export.weights import (
    ENCODED,
    check_encoding,
    compressed_layers,
    decode_layer,
    encode_layer,
)

FORMAT, VERSION = "autocompress-artifact", 3
BASE_ATTR = "_autocompress_base"
# What load_compressed rebuilds on: a model, its factory, or a {"model", "kwargs"} reference.
Base = nn.Module | Callable[[], nn.Module] | dict | None


def model_ref(model: nn.Module) -> dict[str, Any]:
    """How the base architecture is rebuilt: ``{"model": name_or_path, "kwargs": {...}}``.

    A zoo model (or one built by ``build_model`` from an import path) carries its reference;
    any other model gets ``{"model": None, "class": "module.Class"}``, and its artifact is
    loaded by passing ``base=`` (the model or its factory) to :func:`load_compressed`.
    """
    ref = getattr(model, BASE_ATTR, None)
    if ref is None:
        return {"model": None, "class": class_name(model)}
    return ref


def to_bytes(model: nn.Module, base: dict | None = None, extra: dict | None = None) -> bytes:
    """Serialise ``model`` as a compressed artifact and return the file's bytes."""
    base = base or model_ref(model)
    tensors, encodings, aliases = _encode_tensors(model)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "base": base,
        "modules": describe(model),
        "encodings": encodings,
        "aliases": aliases,
        "extra": extra or {},
    }
    spec["checksum"] = _checksum(tensors, spec)
    return st_save(tensors, metadata={"autocompress": _pack_spec(spec)})


def save_compressed(model: nn.Module, path: str | os.PathLike, base: dict | None = None,
                    extra: dict | None = None) -> int:
    """Write the artifact to ``path`` and return its size in bytes.

    Examples:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from autocompress.methods import CompressionPlan, apply_plan
        >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> plan = CompressionPlan.from_dict({"layers": {"0": {"quantize": {"bits": 4}}}})
        >>> student = apply_plan(model, plan, torch.randn(2, 16)).eval()
        >>> folder = tempfile.mkdtemp()
        >>> save_compressed(student, f"{folder}/q4.acz") < save_compressed(model, f"{folder}/f.acz")
        True
    """
    data = to_bytes(model, base, extra)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def load_compressed(path: str | os.PathLike, base: Base = None, *,
                    trust_code: bool = False) -> nn.Module:
    """Rebuild the compressed model from an artifact file (in eval mode).

    Args:
        path: The ``.acz`` file.
        base: The uncompressed architecture to rebuild on: an ``nn.Module`` (copied, not
            modified; its weights are replaced), a callable returning one, or a reference
            ``{"model": ..., "kwargs": ...}``. Default: the reference the file records.
        trust_code: Allow importing and calling the import path (``package.module:factory``)
            that the file records as its base model. **This runs code named by the file**:
            only for files you trust. Zoo names and ``base=`` need no trust.

    Raises:
        ArtifactError: The file is damaged or inconsistent, or its base needs an import the
            caller did not allow.

    Examples:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from autocompress.methods import CompressionPlan, apply_plan
        >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> plan = CompressionPlan.from_dict({"layers": {"0": {"quantize": {"bits": 4}}}})
        >>> student = apply_plan(model, plan, torch.randn(2, 16)).eval()
        >>> path = f"{tempfile.mkdtemp()}/q4.acz"
        >>> size = save_compressed(student, path)
        >>> loaded = load_compressed(path, base=model)  # a plain Sequential: pass its base
        >>> x = torch.randn(3, 16)
        >>> torch.equal(loaded(x), student(x)), type(loaded[0]).__name__
        (True, 'CompressedLinear')
    """
    return from_bytes(_read(path), str(path), base, trust_code=trust_code)


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


def from_bytes(data: bytes, where: str = "artifact", base: Base = None, *,
               trust_code: bool = False) -> nn.Module:
    """Rebuild a model from artifact bytes (see :func:`load_compressed`)."""
    tensors, spec = _parse(data, where)
    model = _base_model(spec, base, trust_code, where)
    state = _decode_tensors(tensors, spec, where)
    modules = dict(model.named_modules())
    for entry in sorted(spec["modules"], key=lambda e: e["name"].count(".")):
        name = entry["name"]
        if "keep" in entry:
            _check_kept(modules, entry, where)
            reshape_kept(modules[name], entry, state, f"{name}." if name else "")
        elif name:
            model.set_submodule(name, build(entry))
            modules = dict(model.named_modules())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{where}: tensors do not match the described model: {exc}") from None
    setattr(model, BASE_ATTR, spec["base"])
    return model.eval()



def _base_model(spec: dict[str, Any], base: Base, trust_code: bool, where: str) -> nn.Module:
    """The uncompressed architecture the artifact's modules and tensors go into."""
    from autocompress.zoo import MODELS, build_model

    if isinstance(base, nn.Module):
        return copy.deepcopy(base)
    if callable(base):
        model = base()
        if not isinstance(model, nn.Module):
            raise ArtifactError(f"{where}: base() returned {type(model).__name__}, not a Module")
        return model
    ref = base if base is not None else spec["base"]
    if not isinstance(ref, dict) or "model" not in ref:
        raise ArtifactError(f"{where}: bad base reference {ref!r}")
    name, kwargs = ref["model"], ref.get("kwargs", {})
    if name is None:
        raise ArtifactError(
            f"{where}: saved from a model with no factory reference (class "
            f"{ref.get('class', '?')}); load it with base=<the model or its factory>")
    if base is None and name not in MODELS and not trust_code:
        raise ArtifactError(
            f"{where}: its base model is the import path {name!r}; importing it runs that "
            "module's code. Pass base=<the model or its factory>, or trust_code=True "
            "(CLI: --trust-code) if you trust this file")
    return build_model(name, **kwargs)


def _check_kept(modules: dict[str, nn.Module], entry: dict[str, Any], where: str) -> None:
    name, expected = entry["name"], entry["keep"]
    module = modules.get(name)
    found = class_name(module) if module is not None else "no module"
    if found != expected:
        raise ArtifactError(f"{where}: {name or '(model)'} was a {expected} when saved; the base "
                            f"model has {found} there (pass the base it was saved from)")


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
    """Tensors to store, the coded layers' encodings, and tied entries (stored once)."""
    tensors: dict[str, torch.Tensor] = {}
    encodings: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    layers = compressed_layers(model)
    skip = {f"{n}.{entry}" for n in layers for entry in ENCODED}
    seen: dict[tuple, str] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if key in skip:
            continue
        tie = (value.data_ptr(), value.dtype, tuple(value.shape), tuple(value.stride()))
        if value.numel() and tie in seen:
            aliases[key] = seen[tie]
            continue
        seen[tie] = key
        tensors[key] = value.detach().cpu().contiguous().clone()
    for name, layer in layers.items():
        layer_tensors, encodings[name] = encode_layer(name, layer)
        tensors.update(layer_tensors)
    return tensors, encodings, aliases


def _decode_tensors(tensors: dict[str, torch.Tensor], spec: dict[str, Any], where: str):
    modules = {m["name"]: m.get("args", {}) for m in spec["modules"]}
    encoded = {f"{n}.{suffix}" for n in spec["encodings"] for suffix in ("positions", "values")}
    state = {k: v for k, v in tensors.items() if k not in encoded}
    for name, enc in spec["encodings"].items():
        if name not in modules:
            raise ArtifactError(f"{where}: encoding for {name!r}, which no module describes")
        check_encoding(name, enc, modules[name], tensors, where)
        state.update(decode_layer(name, enc, tensors, modules[name]))
    for key, target in spec.get("aliases", {}).items():
        if target not in state:
            raise ArtifactError(f"{where}: {key} is tied to {target!r}, which is not stored")
        state[key] = state[target]
    return state
