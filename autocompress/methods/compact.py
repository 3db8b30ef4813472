"""Compact convolutional filters: a k x k conv becomes a cheap spatial conv plus a 1x1 conv.

Two methods, both at the factorize stage and both for ``nn.Conv2d`` with ``groups == 1``:

* ``depthwise``: a depthwise k x k conv (``depth_multiplier`` filters per input channel) then a
  1x1 pointwise conv (MobileNet's depthwise-separable convolution).
* ``grouped``: a grouped k x k conv (``groups`` groups, as many channels out as the layer) then a
  1x1 pointwise conv that mixes the groups.

Both are "one spatial conv of ``g`` groups, then a pointwise conv": group ``i`` sees the input
channels ``I_i`` and owns ``r`` middle channels, so the layer computes, per group, a rank-``r``
factorization of the original weight restricted to ``I_i`` (a ``C_out x |I_i| k^2`` matrix).
The data-free initialisation is that factorization's truncated SVD, the best one in Frobenius
norm (Eckart-Young). With a calibration batch the pointwise weights (and bias) are then refitted
by least squares so that the layer's outputs match the original layer's on real inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import FACTORIZE, ApplyContext, Method, MethodConfig, register
from autocompress.methods.layers import exportable

INITS = ("svd", "lstsq")


def _check_init(method: str, init: str) -> None:
    if init not in INITS:
        raise invalid(f"{method}.init", init, INITS)


@dataclass(frozen=True)
class DepthwiseSeparableConfig(MethodConfig):
    """Replace a k x k conv by a depthwise k x k conv and a 1x1 pointwise conv.

    Attributes:
        depth_multiplier: Depthwise filters per input channel, at most ``kh * kw``.
        init: ``"svd"`` (data-free, best weight approximation) or ``"lstsq"`` (SVD, then the
            pointwise weights refitted on the calibration batch; SVD alone without one).
    """

    method = "depthwise"
    stage = FACTORIZE
    depth_multiplier: int = 1
    init: str = "lstsq"

    def __post_init__(self):
        if self.depth_multiplier < 1:
            raise invalid("depthwise.depth_multiplier", self.depth_multiplier, "an integer >= 1")
        _check_init(self.method, self.init)


@dataclass(frozen=True)
class GroupedPointwiseConfig(MethodConfig):
    """Replace a k x k conv by a grouped k x k conv (``groups`` groups) and a 1x1 pointwise conv.

    Attributes:
        groups: Groups of the spatial conv; must divide the layer's input and output channels.
            1 leaves the layer unchanged (one group plus a pointwise conv only adds parameters).
        init: ``"svd"`` or ``"lstsq"``, as for :class:`DepthwiseSeparableConfig`.
    """

    method = "grouped"
    stage = FACTORIZE
    groups: int = 2
    init: str = "lstsq"

    def __post_init__(self):
        if self.groups < 1:
            raise invalid("grouped.groups", self.groups, "an integer >= 1")
        _check_init(self.method, self.init)

    def is_identity(self) -> bool:
        return self.groups == 1


def _geometry(conv: nn.Conv2d) -> dict[str, Any]:
    """JSON-able kernel size, stride, padding, dilation and padding mode of ``conv``."""
    padding = conv.padding if isinstance(conv.padding, str) else list(conv.padding)
    return {"kernel_size": list(conv.kernel_size), "stride": list(conv.stride),
            "padding": padding, "dilation": list(conv.dilation),
            "padding_mode": conv.padding_mode}


class _SpatialPointwise(nn.Module):
    """``x -> pointwise(spatial(x))``; subclasses name the spatial child."""

    spatial_name: ClassVar[str]
    pointwise: nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding,
                 dilation, groups: int, middle: int, bias: bool, padding_mode: str):
        super().__init__()
        spatial = nn.Conv2d(in_channels, middle, kernel_size, stride, padding, dilation,
                            groups=groups, bias=False, padding_mode=padding_mode)
        setattr(self, self.spatial_name, spatial)
        self.pointwise = nn.Conv2d(middle, out_channels, 1, bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels

    @property
    def spatial(self) -> nn.Conv2d:
        """The k x k conv (``depthwise`` or ``grouped``)."""
        return getattr(self, self.spatial_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.spatial(x))

    def _export_args(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                **_geometry(self.spatial), "bias": self.pointwise.bias is not None}


@exportable("DepthwiseSeparableConv2d")
class DepthwiseSeparableConv2d(_SpatialPointwise):
    """A depthwise k x k conv (``depth_multiplier`` filters per channel), then a 1x1 conv."""

    spatial_name = "depthwise"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, depth_multiplier: int = 1, bias: bool = True,
                 padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         in_channels, in_channels * depth_multiplier, bias, padding_mode)
        self.depth_multiplier = depth_multiplier

    def export_args(self) -> dict[str, Any]:
        return {**self._export_args(), "depth_multiplier": self.depth_multiplier}


@exportable("GroupedPointwiseConv2d")
class GroupedPointwiseConv2d(_SpatialPointwise):
    """A grouped k x k conv to ``out_channels`` channels, then a 1x1 conv mixing the groups."""

    spatial_name = "grouped"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 2, bias: bool = True, padding_mode: str = "zeros"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, out_channels, bias, padding_mode)
        self.groups = groups

    def export_args(self) -> dict[str, Any]:
        return {**self._export_args(), "groups": self.groups}


# --- initialisation -------------------------------------------------------------------------


def factor_weight(weight: torch.Tensor, groups: int, rank: int):
    """Best per-group rank-``rank`` factorization of a conv weight (truncated SVD).

    Args:
        weight: The original ``(C_out, C_in, kh, kw)`` weight.
        groups: Groups of the spatial conv; group ``i`` sees input channels
            ``i * C_in/groups ... (i+1) * C_in/groups - 1``.
        rank: Middle channels per group, at most ``C_in/groups * kh * kw``.

    Returns:
        ``(spatial, pointwise)``: the spatial weight ``(groups * rank, C_in/groups, kh, kw)``
        (orthonormal filters: the top right singular vectors) and the pointwise weight
        ``(C_out, groups * rank)`` (left singular vectors times singular values; zero beyond
        the group's matrix rank).
    """
    c_out, c_in, kh, kw = weight.shape
    per_group = c_in // groups
    blocks = weight.detach().double().reshape(c_out, groups, per_group * kh * kw).transpose(0, 1)
    full = rank > min(blocks.shape[1:])  # only then are the zero-value filters needed
    u, s, vh = torch.linalg.svd(blocks, full_matrices=full)
    spatial = vh[:, :rank].reshape(groups * rank, per_group, kh, kw)
    kept = min(rank, s.shape[1])
    pointwise = weight.new_zeros(groups, c_out, rank, dtype=torch.float64)
    pointwise[..., :kept] = u[..., :kept] * s[:, None, :kept]
    return spatial.to(weight.dtype), pointwise.permute(1, 0, 2).reshape(c_out, -1).to(weight.dtype)


class _Captured(Exception):
    """Stops the calibration forward pass once the layer's input is recorded."""


def layer_input(model: nn.Module, name: str, inputs: Any) -> torch.Tensor:
    """The input the layer ``name`` receives when ``model`` (in eval mode) runs on ``inputs``.

    The forward pass stops at the layer, so the rest of the model is not computed.

    Raises:
        PlanError: The forward pass never reaches the layer.
    """
    captured: list[torch.Tensor] = []

    def hook(_module, args):
        captured.append(args[0].detach())
        raise _Captured

    handle = model.get_submodule(name).register_forward_pre_hook(hook)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*(inputs if isinstance(inputs, tuple) else (inputs,)))
    except _Captured:
        pass
    finally:
        handle.remove()
        model.train(was_training)
    if not captured:
        raise PlanError(f"{name}: the calibration batch never reaches this layer")
    return captured[0]


def refit_pointwise(new: _SpatialPointwise, original: nn.Conv2d, x: torch.Tensor) -> None:
    """Refit ``new.pointwise`` by least squares so ``new(x)`` matches ``original(x)``.

    Every output pixel is one equation: the spatial conv's outputs there (and a 1 for the bias)
    against the original layer's output. The fit solves for the change from the current (SVD)
    pointwise weights through the normal equations (small: one row per middle channel) with the
    minimum-norm solution, so directions the batch does not excite keep their SVD values.
    """
    with torch.no_grad():
        features = new.spatial(x)
        residual = original(x) - new.pointwise(features)
    a = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).double()
    r = residual.permute(0, 2, 3, 1).reshape(-1, residual.shape[1]).double()
    bias = new.pointwise.bias
    if bias is not None:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    gram, rhs = (a.T @ a).cpu(), (a.T @ r).cpu()  # gelsd (min-norm, rank-revealing) is CPU-only
    delta = torch.linalg.lstsq(gram, rhs, driver="gelsd").solution  # (middle [+ 1], C_out)
    weight = new.pointwise.weight
    with torch.no_grad():
        weight += delta[: features.shape[1]].T.reshape(weight.shape).to(weight)
        if bias is not None:
            bias += delta[-1].to(bias)


def depthwise_separable(conv: nn.Conv2d, depth_multiplier: int = 1,
                        name: str = "layer") -> DepthwiseSeparableConv2d:
    """The depthwise-separable replacement of ``conv``, initialised by per-channel SVD."""
    new = depthwise_structure(conv, depth_multiplier, name)
    return _init_from(conv, new, conv.in_channels, depth_multiplier)


def depthwise_structure(conv: nn.Conv2d, depth_multiplier: int = 1,
                        name: str = "layer") -> DepthwiseSeparableConv2d:
    """The depthwise-separable replacement of ``conv``, unfitted (after the plan's checks)."""
    _check_conv(conv, conv.in_channels, depth_multiplier, name)
    return DepthwiseSeparableConv2d(conv.in_channels, conv.out_channels,
                                    depth_multiplier=depth_multiplier,
                                    bias=conv.bias is not None, **_geometry(conv))


def grouped_pointwise(conv: nn.Conv2d, groups: int, name: str = "layer") -> GroupedPointwiseConv2d:
    """The grouped-plus-pointwise replacement of ``conv``, initialised by per-group SVD."""
    new = grouped_structure(conv, groups, name)
    return _init_from(conv, new, groups, conv.out_channels // groups)


def grouped_structure(conv: nn.Conv2d, groups: int, name: str = "layer") -> GroupedPointwiseConv2d:
    """The grouped-plus-pointwise replacement of ``conv``, unfitted (after the plan's checks)."""
    if conv.in_channels % groups or conv.out_channels % groups:
        raise PlanError(f"{name}: {groups} groups must divide the input channels "
                        f"({conv.in_channels}) and the output channels ({conv.out_channels})")
    _check_conv(conv, groups, conv.out_channels // groups, name)
    return GroupedPointwiseConv2d(conv.in_channels, conv.out_channels, groups=groups,
                                  bias=conv.bias is not None, **_geometry(conv))


def _init_from(conv: nn.Conv2d, new: _SpatialPointwise, groups: int, rank: int):
    new = new.to(conv.weight)  # its device and dtype
    spatial, pointwise = factor_weight(conv.weight, groups, rank)
    with torch.no_grad():
        new.spatial.weight.copy_(spatial)
        new.pointwise.weight.copy_(pointwise.reshape(new.pointwise.weight.shape))
        if conv.bias is not None:
            new.pointwise.bias.copy_(conv.bias)
    return new.train(conv.training)


def _check_conv(conv: nn.Conv2d, groups: int, rank: int, name: str) -> None:
    kh, kw = conv.kernel_size
    if conv.groups != 1:
        raise PlanError(f"{name}: compact filters need a dense conv (groups=1), "
                        f"not groups={conv.groups}")
    if kh * kw == 1:
        raise PlanError(f"{name}: compact filters need a kernel larger than 1x1")
    inputs = conv.in_channels // groups * kh * kw
    if rank > inputs:
        raise PlanError(f"{name}: {rank} filters per group exceed the {inputs} weights each "
                        "sees; the replacement would have more parameters than the layer")


# --- methods --------------------------------------------------------------------------------


def _replace(model: nn.Module, name: str, build: Callable[[nn.Conv2d], _SpatialPointwise],
             init: str, ctx: ApplyContext) -> None:
    """Swap in ``build(conv)``; refit its pointwise conv on the layer's calibration inputs."""
    conv = model.get_submodule(name)
    new = build(conv)
    if init == "lstsq" and ctx.calibration is not None:
        x = layer_input(model, name, ctx.calibration[0])
        refit_pointwise(new, conv, x.to(conv.weight))
    model.set_submodule(name, new)


def apply_depthwise(model: nn.Module, targets: Mapping[str, DepthwiseSeparableConfig],
                    ctx: ApplyContext) -> None:
    """Replace each target conv by a depthwise-separable conv, one layer at a time.

    With ``init="lstsq"`` each layer is fitted on the inputs it receives once the targets
    before it are replaced.
    """
    for name, config in targets.items():
        def build(conv, config=config, name=name):
            return depthwise_separable(conv, config.depth_multiplier, name)

        _replace(model, name, build, config.init, ctx)


def apply_grouped(model: nn.Module, targets: Mapping[str, GroupedPointwiseConfig],
                  ctx: ApplyContext) -> None:
    """Replace each target conv by a grouped conv plus a pointwise conv, one layer at a time."""
    for name, config in targets.items():
        def build(conv, config=config, name=name):
            return grouped_pointwise(conv, config.groups, name)

        _replace(model, name, build, config.init, ctx)


def depthwise_fits(config: DepthwiseSeparableConfig, shape: tuple[int, ...]) -> bool:
    """True when a depthwise-separable replacement of a ``shape`` conv has fewer weights."""
    c_out, c_in, kh, kw = shape
    wide = c_in * config.depth_multiplier
    return kh * kw > 1 and wide * kh * kw + wide * c_out < c_out * c_in * kh * kw


def grouped_fits(config: GroupedPointwiseConfig, shape: tuple[int, ...]) -> bool:
    """True when a grouped + pointwise replacement of a ``shape`` conv can apply."""
    c_out, c_in, kh, kw = shape
    return kh * kw > 1 and c_in % config.groups == 0 and c_out % config.groups == 0


DEPTHWISE_METHOD = register(Method(
    DepthwiseSeparableConfig, (nn.Conv2d,), apply_depthwise, fits=depthwise_fits,
    structure=lambda conv, c, name: depthwise_structure(conv, c.depth_multiplier, name)))
GROUPED_METHOD = register(Method(
    GroupedPointwiseConfig, (nn.Conv2d,), apply_grouped, fits=grouped_fits,
    structure=lambda conv, c, name: grouped_structure(conv, c.groups, name)))

__all__ = [
    "DepthwiseSeparableConfig",
    "DepthwiseSeparableConv2d",
    "GroupedPointwiseConfig",
    "GroupedPointwiseConv2d",
    "depthwise_separable",
    "factor_weight",
    "grouped_pointwise",
    "layer_input",
    "refit_pointwise",
]
