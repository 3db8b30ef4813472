"""Kernels: the keys of a latency lookup table, read off a model or derived from a plan.

A :class:`Kernel` is one leaf module's call as a runtime sees it: the operator, its input shape
(batch included), its shape parameters, its weight bit width and its sparsity. The kernels of a
*built* model are traced with forward hooks. The kernels of a *plan* are derived without building
it: the prune stage runs on a copy (Torch-Pruning, with the data-free ``l2`` scorer: how many
channels are kept does not depend on which), and every later stage swaps in the replacement's
*structure* only, as each method declares it (``Method.structure``: the same constructors,
never fitted; see :mod:`autocompress.methods.skeleton`). Tracing that skeleton gives the kernels
of ``apply_plan(model, plan)``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autocompress.errors import PlanError
from autocompress.export.deploy import plain_structure
from autocompress.hardware.analytic import hooked_forward
from autocompress.methods import CompressionPlan, find_output_layers, get_method
from autocompress.methods.apply import check_smaller, weight_count
from autocompress.methods.base import FACTORIZE, PRUNE, ApplyContext, MethodConfig
from autocompress.methods.layers import (
    COMPRESSED,
    CompressedConv2d,
    CompressedEmbedding,
    CompressedLinear,
    deploys,
)
from autocompress.methods.structured import CirculantLinear, HashedLinear

SPARSITY_STEP = 0.05  # sparsity is keyed in buckets of this width
CALL, EMPTY = "call", "empty"  # a module call's overhead; the runtime's per-inference overhead


def bucket(sparsity: float) -> float:
    """``sparsity`` rounded to the table's bucket width (0.05)."""
    return round(round(sparsity / SPARSITY_STEP) * SPARSITY_STEP, 2)


@dataclass(frozen=True)
class Kernel:
    """The key of one table entry: an operator call and everything its latency depends on.

    Attributes:
        op: Operator kind: ``linear``, ``conv2d``, ``compressed_linear``,
            ``compressed_conv2d``, ``hashed_linear``, ``circulant_linear``, ``embedding``, or
            the module's qualified class name for other leaf modules (their ``extra_repr`` is
            then the shape parameter ``repr``).
        inputs: Shape and dtype of each positional tensor input, batch dimension included.
        params: Sorted ``(name, value)`` shape parameters (features, channels, kernel...).
        bits: Weight bit width (the code width of shared weights; 32 for float).
        sparsity: Fraction of zero weights, bucketed to 0.05.
    """

    op: str
    inputs: tuple[tuple[tuple[int, ...], str], ...] = ()
    params: tuple[tuple[str, Any], ...] = ()
    bits: int = 32
    sparsity: float = 0.0
    # the deployed form's kernel (eager, exported), None where the layer runs as it is
    deployed: tuple[Kernel | None, Kernel | None] = field(default=(None, None), compare=False,
                                                          repr=False)

    @property
    def key(self) -> str:
        """A stable string form (the table's JSON key)."""
        shapes = ";".join(f"{'x'.join(map(str, s))}:{d}" for s, d in self.inputs)
        params = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.op}|{shapes}|{params}|b{self.bits}|s{self.sparsity:.2f}"

    def example(self) -> tuple[torch.Tensor, ...]:
        """Inputs of this kernel's shapes and dtypes (values do not change the latency)."""
        generator = torch.Generator().manual_seed(0)
        out = []
        for shape, dtype in self.inputs:
            if dtype.startswith("torch.int"):
                high = max(1, dict(self.params).get("num", 2))
                out.append(torch.randint(0, high, shape, generator=generator,
                                         dtype=getattr(torch, dtype[6:])))
            else:
                out.append(torch.randn(shape, generator=generator, dtype=getattr(torch, dtype[6:])))
        return tuple(out)

    def deployed_as(self, exported: bool) -> Kernel:
        """The kernel the deployed model runs in its place (on an exported runtime or not).

        The layer's own declaration decides (:class:`~autocompress.methods.layers.Deployable`,
        read by :func:`kernel_of`): compressed and hashed layers run as the dense layer they
        decode to, circulant ones too when exported.
        """
        return self.deployed[exported] or self


@dataclass(frozen=True)
class LayerKernel:
    """A traced call: the module's name, its kernel and the module (to time it in isolation)."""

    name: str
    kernel: Kernel
    module: nn.Module = field(compare=False, repr=False)


@dataclass(frozen=True)
class Trace:
    """Every leaf call of one forward pass, and how many module calls it made (root excluded)."""

    layers: tuple[LayerKernel, ...]
    calls: int

    @property
    def kernels(self) -> list[tuple[str, Kernel]]:
        """``(name, kernel)`` per leaf call, in call order."""
        return [(lk.name, lk.kernel) for lk in self.layers]


# --- kernels of modules ------------------------------------------------------------------------

def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _linear(m: nn.Linear) -> dict[str, Any]:
    return {"in": m.in_features, "out": m.out_features, "bias": m.bias is not None}


def _conv(m: nn.Conv2d) -> dict[str, Any]:
    return {"in": m.in_channels, "out": m.out_channels, "kernel": tuple(m.kernel_size),
            "stride": tuple(m.stride), "padding": m.padding if isinstance(m.padding, str)
            else tuple(m.padding), "dilation": tuple(m.dilation), "groups": m.groups,
            "bias": m.bias is not None, "mode": m.padding_mode}


def _compression(m: nn.Module) -> dict[str, Any]:
    return {"share": bool(m.share_bits), "per_channel": m.per_channel,
            "symmetric": m.symmetric, "sparse": m.sparse}


def _embedding(m: nn.Embedding) -> dict[str, Any]:
    return {"num": m.num_embeddings, "dim": m.embedding_dim, "padding_idx": m.padding_idx}


# Exact types first; other leaves are keyed by class name and extra_repr.
_SPECS: dict[type, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    CompressedLinear: ("compressed_linear", lambda m: {**_linear(m), **_compression(m)}),
    CompressedConv2d: ("compressed_conv2d", lambda m: {**_conv(m), **_compression(m)}),
    CompressedEmbedding: ("compressed_embedding",
                          lambda m: {**_embedding(m), **_compression(m)}),
    nn.Linear: ("linear", _linear),
    nn.Conv2d: ("conv2d", _conv),
    nn.Embedding: ("embedding", _embedding),
    HashedLinear: ("hashed_linear", lambda m: {**_linear(m), "size": m.size, "seed": m.seed}),
    CirculantLinear: ("circulant_linear", lambda m: {**_linear(m), "block": m.block}),
}


def kernel_of(module: nn.Module, inputs: tuple) -> Kernel:
    """The kernel of one call of a leaf module on ``inputs`` (its positional arguments)."""
    shapes = tuple((tuple(t.shape), str(t.dtype)) for t in inputs if isinstance(t, torch.Tensor))
    bits, sparsity = 32, 0.0
    if type(module) in _SPECS:
        op, spec = _SPECS[type(module)]
        params = spec(module)
    else:
        op, params = _qualname(type(module)), {"repr": module.extra_repr()}
    if isinstance(module, COMPRESSED):
        bits = int(module.share_bits or module.bits)
        if module.sparse:
            sparsity = bucket(1.0 - float(module.mask.float().mean()))
    deployed = tuple(_deployed_kernel(module, shapes, exported) for exported in (False, True))
    return Kernel(op, shapes, tuple(sorted(params.items())), bits, sparsity, deployed)


def _deployed_kernel(module: nn.Module, shapes: tuple, exported: bool) -> Kernel | None:
    """The kernel of ``module``'s deployed form (its structure only), or None if it has none."""
    if not deploys(module, exported):
        return None
    plain = plain_structure(module, device="meta")
    op, spec = _SPECS[type(plain)]
    return Kernel(op, shapes, tuple(sorted(spec(plain).items())))


def trace(model: nn.Module, example: Any) -> Trace:
    """The kernels of every leaf-module call of one forward pass of ``model`` on ``example``."""
    layers: list[LayerKernel] = []
    calls = 0

    def on_leaf(name):
        def hook(module, args, _output):
            layers.append(LayerKernel(name, kernel_of(module, args), module))
        return hook

    def on_call(_module, _args):
        nonlocal calls
        calls += 1

    hooks = []
    for name, module in model.named_modules():
        if module is model:
            continue
        hooks.append(module.register_forward_pre_hook(on_call))
        if not any(True for _ in module.children()):
            hooks.append(module.register_forward_hook(on_leaf(name)))
    hooked_forward(model, example, hooks)
    return Trace(tuple(layers), calls)


# --- kernels of a plan, without building it -------------------------------------------------------


def plan_skeleton(model: nn.Module, plan: CompressionPlan, example: Any) -> nn.Module:
    """A copy of ``model`` with the plan's shapes but unfitted weights (for latency only).

    The prune stage runs for real on the copy, with the ``l2`` scorer in place of data-aware
    ones (the kept widths depend on the ratio and rounding only); later stages swap in each
    replacement's structure, as each method declares it (``Method.structure``).

    Raises:
        PlanError: The plan does not apply to the model (as ``apply_plan`` would say).
    """
    plan.check(model)
    skeleton = copy.deepcopy(model)
    ctx = ApplyContext(example, find_output_layers(model, example))
    pruning: dict[str, dict[str, MethodConfig]] = {}
    for name, configs in plan.layers.items():
        for config in configs:
            if config.stage == PRUNE:
                pruning.setdefault(config.method, {})[name] = config
    for method, targets in pruning.items():
        for group in _passes(targets):
            get_method(method).apply(skeleton, group, ctx)
    for name, configs in plan.layers.items():
        for config in (c for c in configs if c.stage > PRUNE):
            structure = get_method(config.method).structure
            if structure is None:
                raise PlanError(f"{name}: latency prediction has no structure rule for "
                                f"{config.method!r}; build the plan and predict the model")
            layer = skeleton.get_submodule(name)
            before = {name: weight_count(layer)}
            skeleton.set_submodule(name, structure(layer, config, name))
            if config.stage == FACTORIZE:
                check_smaller(skeleton, config.method, before)  # as apply_plan refuses
    return skeleton


def _data_free(config: MethodConfig) -> MethodConfig:
    if getattr(config, "importance", "l2") in ("l1", "l2"):
        return config
    return dataclasses.replace(config, importance="l2")


def _passes(targets: Mapping[str, MethodConfig]) -> list[dict[str, MethodConfig]]:
    """The targets in the passes ``apply_prune`` makes, each now scored by ``l2``.

    One Torch-Pruning pass per (importance, round_to), in order: merging passes that differ in
    importance only could prune coupled layers differently.
    """
    passes: dict[tuple, dict[str, MethodConfig]] = {}
    for name, config in targets.items():
        key = (getattr(config, "importance", None), getattr(config, "round_to", None))
        passes.setdefault(key, {})[name] = _data_free(config)
    return list(passes.values())


def plan_kernels(model: nn.Module, plan: CompressionPlan, example: Any) -> Trace:
    """The trace ``apply_plan(model, plan, example)`` would give, without fitting anything."""
    return trace(plan_skeleton(model, plan, example), example)
