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
from autocompress.methods.pruning import coupled_layers

COMPRESSIBLE = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class LayerInfo:
    """A compressible layer of a model, as the search space sees it."""

    name: str
    type: str
    shape: tuple[int, ...]
    is_output: bool
    coupled: tuple[str, ...] = ()
    prunable: bool = True


def _prunable(name: str, coupled: tuple[str, ...], outputs: frozenset[str]) -> bool:
    """Only the first layer of a coupled group carries its ratio; no output group is pruned."""
    return coupled[0] == name and not any(c in outputs for c in coupled)


def compressible_layers(model: nn.Module, example_inputs: Any) -> list[LayerInfo]:
    """Enumerate the model's Linear and Conv2d layers: shapes, outputs and prune coupling."""
    outputs = find_output_layers(model, example_inputs)
    coupled = coupled_layers(model, example_inputs)
    return [
        LayerInfo(name, type(m).__name__, tuple(m.weight.shape), name in outputs,
                  coupled[name], _prunable(name, coupled[name], outputs))
        for name, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    ]


def find_output_layers(model: nn.Module, example_inputs: Any) -> frozenset[str]:
    """Names of the layers whose output width is the model's output width.

    That is the last compressible layer on every path to an output, including paths through
    parameter-free ops after it (``log_softmax``, a reshape, a pooling): the autograd graph is
    walked back from each output and stops at the first layer it meets.
    """
    produced: dict[Any, str] = {}  # a layer's output tensor id and its autograd node -> name

    def record(_module, _inputs, out, name):
        produced[id(out)] = name
        if getattr(out, "grad_fn", None) is not None:
            produced[out.grad_fn] = name

    hooks = [
        m.register_forward_hook(lambda m_, i, out, n=name: record(m_, i, out, n))
        for name, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():
            out = model(*_as_tuple(example_inputs))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    found = {produced[id(o)] for o in outs if id(o) in produced}
    return frozenset(found | _last_layers(outs, produced))


def _last_layers(outs, produced: dict[Any, str]) -> set[str]:
    """Layers first met walking the autograd graph back from each output tensor."""
    found: set[str] = set()
    stack = [o.grad_fn for o in outs if isinstance(o, torch.Tensor) and o.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node in produced:
            found.add(produced[node])
        else:
            stack.extend(fn for fn, _ in node.next_functions)
    return found


def apply_plan(
    model: nn.Module,
    plan: CompressionPlan,
    example_inputs: Any,
    output_layers: frozenset[str] | None = None,
    calibration: tuple[Any, Any] | None = None,
) -> nn.Module:
    """Return a compressed copy of ``model``; ``model`` itself is never modified.

    Methods run stage by stage over the whole model (all pruning first, so the dependency graph
    sees the original topology, then factorization, then quantization).

    Args:
        model: The trained, uncompressed model.
        plan: Per-layer choices; layer names refer to ``model``.
        example_inputs: A tensor (or tuple) the model accepts; traced by dependency-aware methods.
        output_layers: Layers whose width is fixed; found by tracing when None.
        calibration: ``(inputs, targets)`` of real data for data-aware methods (optional).
    """
    plan.check(model)
    if output_layers is None:
        output_layers = find_output_layers(model, example_inputs)
    student = copy.deepcopy(model)
    ctx = ApplyContext(example_inputs, frozenset(output_layers), calibration)
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
