"""apply_plan: build the compressed student from a model and a CompressionPlan."""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.methods.base import ApplyContext, MethodConfig, get_method
from autocompress.methods.plan import CompressionPlan

COMPRESSIBLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class LayerInfo:
    """A compressible layer of a model, as the search space sees it."""

    name: str
    type: str
    shape: tuple[int, ...]
    is_output: bool


def compressible_layers(model: nn.Module, example_inputs: Any) -> list[LayerInfo]:
    """Enumerate the model's Linear and Conv2d layers with their weight shapes."""
    outputs = find_output_layers(model, example_inputs)
    return [
        LayerInfo(name, type(m).__name__, tuple(m.weight.shape), name in outputs)
        for name, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    ]


def find_output_layers(model: nn.Module, example_inputs: Any) -> frozenset[str]:
    """Names of the layers whose output tensor is (part of) the model's output."""
    produced: dict[int, str] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, out, n=name: produced.__setitem__(id(out), n))
        for name, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(*_as_tuple(example_inputs))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return frozenset(produced[id(o)] for o in outs if id(o) in produced)


def apply_plan(
    model: nn.Module,
    plan: CompressionPlan,
    example_inputs: Any,
    output_layers: frozenset[str] | None = None,
) -> nn.Module:
    """Return a compressed copy of ``model``; ``model`` itself is never modified.

    Methods run stage by stage over the whole model (all pruning first, so the dependency graph
    sees the original topology, then factorization, then quantization).

    Args:
        model: The trained, uncompressed model.
        plan: Per-layer choices; layer names refer to ``model``.
        example_inputs: A tensor (or tuple) the model accepts; traced by dependency-aware methods.
        output_layers: Layers whose width is fixed; found by tracing when None.
    """
    plan.check(model)
    if output_layers is None:
        output_layers = find_output_layers(model, example_inputs)
    student = copy.deepcopy(model)
    ctx = ApplyContext(example_inputs, frozenset(output_layers))
    by_stage: dict[int, dict[str, dict[str, MethodConfig]]] = defaultdict(lambda: defaultdict(dict))
    for name, configs in plan.layers.items():
        for config in configs:
            by_stage[config.stage][config.method][name] = config
    for stage in sorted(by_stage):
        for method, targets in by_stage[stage].items():
            get_method(method).apply(student, targets, ctx)
    return student


def _as_tuple(inputs: Any) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)
