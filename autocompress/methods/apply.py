"""apply_plan: build the compressed student from a model and a CompressionPlan."""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.errors import PlanError
from autocompress.methods.base import FACTORIZE, PRUNE, ApplyContext, MethodConfig, get_method
from autocompress.methods.layers import WEIGHTED, overrides_forward
from autocompress.methods.plan import CompressionPlan
from autocompress.methods.pruning import coupled_layers

COMPRESSIBLE = WEIGHTED  # Linear, Conv2d, Embedding (and their subclasses)


@dataclass(frozen=True)
class LayerInfo:
    """A compressible layer of a model, as the search space sees it.

    Attributes:
        name: The module's qualified name.
        type: Its family, ``Linear``, ``Conv2d`` or ``Embedding`` (what spaces select on).
        shape: Its weight's shape.
        is_output: Its output width is the model's.
        coupled: The layers pruned together with it (residual / concat groups).
        prunable: It carries its coupled group's prune ratio.
        cls: Its own class name when it subclasses the family (e.g. a TF-padding conv).
        custom_forward: The subclass computes differently from the family: only in-place
            methods (pruning) apply; a replacement would change what the model computes.
    """

    name: str
    type: str
    shape: tuple[int, ...]
    is_output: bool
    coupled: tuple[str, ...] = ()
    prunable: bool = True
    cls: str = ""
    custom_forward: bool = False


def _family(module: nn.Module) -> type[nn.Module]:
    return next(f for f in COMPRESSIBLE if isinstance(module, f))


def _prunable(name: str, coupled: tuple[str, ...], outputs: frozenset[str]) -> bool:
    """Only the first layer of a coupled group carries its ratio; no output group is pruned."""
    return coupled[0] == name and not any(c in outputs for c in coupled)


def compressible_layers(model: nn.Module, example_inputs: Any) -> list[LayerInfo]:
    """Enumerate the model's Linear and Conv2d layers: shapes, outputs and prune coupling."""
    outputs = find_output_layers(model, example_inputs)
    coupled = coupled_layers(model, example_inputs)
    layers = []
    for name, m in model.named_modules():
        if not isinstance(m, COMPRESSIBLE):
            continue
        family = _family(m)
        group = coupled.get(name, (name,))
        layers.append(LayerInfo(
            name, family.__name__, tuple(m.weight.shape), name in outputs, group,
            family is not nn.Embedding and _prunable(name, group, outputs),
            type(m).__name__ if type(m) is not family else "", overrides_forward(m)))
    return layers


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
    outs = output_tensors(out)
    found = {produced[id(o)] for o in outs if id(o) in produced}
    return frozenset(found | _last_layers(outs, produced))


def output_tensors(out: Any) -> tuple[torch.Tensor, ...]:
    """The tensors of a model's output: a tensor, a tuple / list, or a mapping of them.

    Mappings include ``transformers``' ``ModelOutput`` (``logits``, hidden states, ...).
    """
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, Mapping):
        out = tuple(out.values())
    if isinstance(out, (tuple, list)):
        return tuple(t for item in out for t in output_tensors(item))
    return ()


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

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from autocompress.methods import CompressionPlan
        >>> model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> plan = CompressionPlan.from_dict({"layers": {"0": {"prune": {"ratio": 0.5}}}})
        >>> student = apply_plan(model, plan, example_inputs=torch.randn(2, 16))
        >>> student[0].out_features, student[2].in_features, model[0].out_features
        (16, 16, 32)
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
            before = {n: weight_count(student.get_submodule(n)) for n in targets}
            get_method(method).apply(student, targets, ctx)
            if stage == FACTORIZE:
                check_smaller(student, method, before)
        if stage == PRUNE:
            _check_runs(student, example_inputs, by_stage[stage])
    return student


def _check_runs(model: nn.Module, example_inputs: Any, targets) -> None:
    """Pruning custom modules Torch-Pruning cannot see leaves widths that disagree: say so."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(*_as_tuple(example_inputs))
    except RuntimeError as exc:
        names = ", ".join(sorted({n for t in targets.values() for n in t}))
        raise PlanError(f"{names}: after pruning, the model no longer runs ({exc}); a module "
                        "that holds per-channel state of its own is not resized with them"
                        ) from None
    finally:
        model.train(was_training)


def weight_count(module: nn.Module) -> int:
    """Parameters of ``module`` and its children."""
    return sum(p.numel() for p in module.parameters())


def check_smaller(student: nn.Module, method: str, before: dict[str, int]) -> None:
    """A factorization or filter replacement must not store more weights than the layer."""
    for name, count in before.items():
        after = weight_count(student.get_submodule(name))
        if after > count:
            raise PlanError(f"{name}: {method} would store {after:,} weights, more than the "
                            f"layer's {count:,}; choose a smaller rank or structure")


def _as_tuple(inputs: Any) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)
