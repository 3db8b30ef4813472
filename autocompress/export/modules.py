"""Constructor specs of the module types an artifact can rebuild (no pickling involved)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from autocompress.errors import ArtifactError
from autocompress.methods.layers import EXPORTABLE, LowRankLinear


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
}
_BY_TYPE = {cls: name for name, (cls, _) in BUILDERS.items()}


def describe(model: nn.Module) -> list[dict[str, Any]]:
    """Spec of every module that holds parameters, parents before children.

    Raises:
        ArtifactError: A module with its own parameters is of a type that cannot be rebuilt.
    """
    specs = []
    for name, module in model.named_modules():
        kind = _BY_TYPE.get(type(module))
        if kind is not None:
            specs.append({"name": name, "type": kind, "args": BUILDERS[kind][1](module)})
        elif EXPORTABLE.get(getattr(module, "export_name", None)) is type(module):
            specs.append({"name": name, "type": module.export_name,
                          "args": module.export_args()})
        elif any(True for _ in module.parameters(recurse=False)):
            raise ArtifactError(
                f"{name}: cannot export module type {type(module).__name__}; "
                f"exportable: {', '.join([*BUILDERS, *EXPORTABLE])}"
            )
    return specs


def build(spec: dict[str, Any]) -> nn.Module:
    """Construct an (uninitialised) module from one entry of :func:`describe`."""
    try:
        if spec["type"] in EXPORTABLE:
            return EXPORTABLE[spec["type"]].from_export_args(dict(spec["args"]))
        cls, _ = BUILDERS[spec["type"]]
        args = dict(spec["args"])
        if cls is nn.Conv2d:
            for key in ("kernel_size", "stride", "padding", "dilation"):
                if isinstance(args[key], list):
                    args[key] = tuple(args[key])
        if cls is LowRankLinear:
            return cls(args["in_features"], args["rank"], args["out_features"], args["bias"])
        return cls(**args)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"artifact: bad module spec {spec!r}: {exc}") from None
