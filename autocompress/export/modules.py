"""Constructor specs of the modules an artifact rebuilds or reshapes (no pickling involved).

Three kinds of entry, one per module that holds parameters or buffers of its own:

- a module of a known type (``Linear``, ``Conv2d``, norms, ``Embedding``) or of a type a method
  registered as exportable (compressed and factorized layers) is *rebuilt* from its
  constructor arguments;
- a subclass of a known type (a TF-"same"-padding conv, say) is *kept*: the base model's own
  instance stays, its shape attributes are set from the entry and its tensors resized, so its
  ``forward`` is the one it had;
- any other module (attention blocks, custom layers with buffers) is *kept* as the base model
  built it, and only its tensors are loaded; its class name is recorded and checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from autocompress.errors import ArtifactError
from autocompress.methods.layers import EXPORTABLE, LowRankLinear, embedding_args


def _linear(m: nn.Linear) -> dict[str, Any]:
    return {"in_features": m.in_features, "out_features": m.out_features,
            "bias": m.bias is not None}


def _conv(m: nn.Conv2d) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels, "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size), "stride": list(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
        "padding_mode": m.padding_mode,
    }


def _norm(m: nn.Module) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
            "affine": m.affine, "track_running_stats": m.track_running_stats}


def _layer_norm(m: nn.LayerNorm) -> dict[str, Any]:
    return {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
            "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None}


def _embedding(m: nn.Embedding) -> dict[str, Any]:
    if m.sparse:
        raise ArtifactError("an Embedding with sparse gradients cannot be exported")
    return embedding_args(m)


def _low_rank(m: LowRankLinear) -> dict[str, Any]:
    return {"in_features": m.in_features, "rank": m.rank, "out_features": m.out_features,
            "bias": m.v.bias is not None}


# Subclasses first: lookup is by exact type.
BUILDERS: dict[str, tuple[type[nn.Module], Callable[[Any], dict[str, Any]]]] = {
    "LowRankLinear": (LowRankLinear, _low_rank),
    "Linear": (nn.Linear, _linear),
    "Conv2d": (nn.Conv2d, _conv),
    "BatchNorm1d": (nn.BatchNorm1d, _norm),
    "BatchNorm2d": (nn.BatchNorm2d, _norm),
    "LayerNorm": (nn.LayerNorm, _layer_norm),
    "Embedding": (nn.Embedding, _embedding),
}
_BY_TYPE = {cls: name for name, (cls, _) in BUILDERS.items()}


def class_name(module: nn.Module) -> str:
    """``module.qualname`` of a module's class (recorded, never imported)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _family(module: nn.Module) -> str | None:
    return next((kind for kind, (cls, _) in BUILDERS.items() if isinstance(module, cls)), None)


def _own_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False))


def describe(model: nn.Module) -> list[dict[str, Any]]:
    """One entry per module with state of its own (or a replaced type), parents first.

    Raises:
        ArtifactError: A known type's arguments cannot be described (sparse embeddings).
    """
    specs = []
    for name, module in model.named_modules():
        kind = _BY_TYPE.get(type(module))
        if kind is not None:
            specs.append({"name": name, "type": kind, "args": BUILDERS[kind][1](module)})
        elif EXPORTABLE.get(getattr(module, "export_name", None)) is type(module):
            specs.append({"name": name, "type": module.export_name,
                          "args": module.export_args()})
        elif (family := _family(module)) is not None:
            specs.append({"name": name, "type": family, "keep": class_name(module),
                          "args": BUILDERS[family][1](module)})
        elif _own_state(module):
            specs.append({"name": name, "keep": class_name(module)})
    return specs


def build(spec: dict[str, Any]) -> nn.Module:
    """Construct an (uninitialised) module from one rebuilt entry of :func:`describe`."""
    try:
        if spec["type"] in EXPORTABLE:
            return EXPORTABLE[spec["type"]].from_export_args(dict(spec["args"]))
        cls, _ = BUILDERS[spec["type"]]
        args = _tuples(cls, dict(spec["args"]))
        if cls is LowRankLinear:
            return cls(args["in_features"], args["rank"], args["out_features"], args["bias"])
        return cls(**args)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"artifact: bad module spec {spec!r}: {exc}") from None


def _tuples(cls: type[nn.Module], args: dict[str, Any]) -> dict[str, Any]:
    if issubclass(cls, nn.Conv2d):
        for key in ("kernel_size", "stride", "padding", "dilation"):
            if isinstance(args.get(key), list):
                args[key] = tuple(args[key])
    if issubclass(cls, nn.LayerNorm) and isinstance(args.get("normalized_shape"), list):
        args["normalized_shape"] = tuple(args["normalized_shape"])
    return args


def reshape_kept(module: nn.Module, spec: dict[str, Any], state: dict[str, Any],
                 prefix: str) -> None:
    """Give a kept module (the base model's own instance) the described shape.

    Its shape attributes (channels, features, groups...) are set from the entry, and each of
    its own parameters and buffers is resized to the stored tensor's shape, so a pruned
    subclass keeps its ``forward``.
    """
    if spec.get("args"):
        cls, _ = BUILDERS[spec["type"]]
        for key, value in _tuples(cls, dict(spec["args"])).items():
            if key in ("bias", "elementwise_affine", "affine", "track_running_stats"):
                continue  # presence of tensors, checked by the state itself
            if hasattr(module, key):
                setattr(module, key, value)
    for key, tensor in list(module.named_parameters(recurse=False)):
        stored = state.get(f"{prefix}{key}")
        if stored is not None and stored.shape != tensor.shape:
            setattr(module, key, nn.Parameter(tensor.new_empty(stored.shape),
                                              requires_grad=tensor.requires_grad))
    for key, tensor in list(module.named_buffers(recurse=False)):
        stored = state.get(f"{prefix}{key}")
        if tensor is not None and stored is not None and stored.shape != tensor.shape:
            module.register_buffer(key, tensor.new_empty(stored.shape))
