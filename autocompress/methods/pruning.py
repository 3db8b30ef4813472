"""Structured channel pruning through Torch-Pruning's dependency graph.

Channels are removed physically: the pruned model has smaller weight tensors, and layers coupled
through residual additions, concatenations or grouped convolutions are pruned together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import (
    PRUNE,
    ApplyContext,
    Method,
    MethodConfig,
    check_range,
    register,
)

IMPORTANCES = ("l1", "l2", "taylor", "hessian")
DATA_AWARE = ("taylor", "hessian")
HESSIAN_SAMPLES = 32


@dataclass(frozen=True)
class PruneConfig(MethodConfig):
    """Remove a fraction of a layer's output channels (filters / neurons).

    Attributes:
        ratio: Fraction of output channels to remove, in [0, 1).
        importance: Channel importance, summed over every layer coupled with the channel:
            ``l1`` / ``l2`` norm of its weights; ``taylor``, first-order Taylor expansion of
            the loss (|w * dL/dw|, Molchanov et al. 2019); ``hessian``, the diagonal-Hessian
            saliency of Optimal Brain Damage (w^2 * E[(dL/dw)^2], the Fisher approximation).
            The data-aware criteria need calibration data (a batch of inputs and targets).
        round_to: Keep a multiple of this many channels (hardware-friendly widths).
    """

    method = "prune"
    stage = PRUNE
    ratio: float = 0.0
    importance: str = "l2"
    round_to: int = 1

    def __post_init__(self):
        check_range("prune.ratio", self.ratio, 0.0, 1.0, high_open=True)
        if self.importance not in IMPORTANCES:
            raise invalid("prune.importance", self.importance, IMPORTANCES)
        if self.round_to < 1:
            raise invalid("prune.round_to", self.round_to, "an integer >= 1")

    def is_identity(self) -> bool:
        return self.ratio == 0.0


_OUT_HANDLERS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)


def _importance(name: str, model: nn.Module, ctx: ApplyContext, group):
    """The Torch-Pruning scorer; data-aware ones get gradients of the loss on calibration data."""
    if name in ("l1", "l2"):
        return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)
    if ctx.calibration is None:
        raise PlanError(f"{', '.join(group)}: prune importance {name!r} needs calibration data "
                        "(a batch of inputs and targets); use l1 or l2 without data")
    inputs, targets = ctx.calibration
    model.zero_grad()
    if name == "taylor":
        task_loss(_predict(model, inputs), targets).mean().backward()
        return tp.importance.GroupTaylorImportance()
    scorer = tp.importance.GroupHessianImportance()
    inputs = _first(inputs, HESSIAN_SAMPLES)
    losses = task_loss(_predict(model, inputs), targets[:HESSIAN_SAMPLES])
    for loss in losses:  # per-sample gradients: E[g^2] approximates the Hessian diagonal
        model.zero_grad()
        loss.backward(retain_graph=True)
        scorer.accumulate_grad(model)
    return scorer


def task_loss(prediction: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample loss of the task the targets imply: class ids -> cross-entropy, else MSE."""
    if not targets.is_floating_point() and prediction.dim() == targets.dim() + 1:
        return F.cross_entropy(prediction, targets, reduction="none")
    error = (prediction - targets.to(prediction.dtype).reshape(prediction.shape)) ** 2
    return error.reshape(len(error), -1).mean(dim=1)


def _predict(model: nn.Module, inputs) -> torch.Tensor:
    """The prediction tensor for inputs given as a tensor or a tuple of positional arguments."""
    out = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)  # transformers' ModelOutput
    if isinstance(logits, torch.Tensor):
        return logits
    return out[0]


def _first(inputs, n: int):
    if isinstance(inputs, tuple):
        return tuple(t[:n] if isinstance(t, torch.Tensor) else t for t in inputs)
    return inputs[:n]


def coupled_layers(model: nn.Module, example_inputs) -> dict[str, tuple[str, ...]]:
    """For each Linear / Conv2d, the layers whose output channels are pruned with its own.

    Layers joined by a residual addition (or any op that needs equal widths) form one group;
    every member maps to the same tuple, in module order.
    """
    was_training = model.training
    model.eval()
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs)
    finally:
        model.train(was_training)
    names = {m: n for n, m in model.named_modules()}
    groups = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            handler = _OUT_HANDLERS[isinstance(module, nn.Linear)]
            group = graph.get_pruning_group(module, handler, idxs=[0])
            members = {names[d.target.module] for d, _ in group if d.handler in _OUT_HANDLERS}
            groups[name] = tuple(n for n in names.values() if n in members | {name})
    return groups


def _check_coupling(pruner, model: nn.Module, targets: Mapping[str, PruneConfig]) -> None:
    names = {m: n for n, m in model.named_modules()}
    for name, config in targets.items():
        module = model.get_submodule(name)
        handler = _OUT_HANDLERS[isinstance(module, nn.Linear)]
        for dep, _ in pruner.DG.get_pruning_group(module, handler, idxs=[0]):
            other = names.get(dep.target.module)
            if dep.handler not in _OUT_HANDLERS or other == name or other not in targets:
                continue
            if targets[other].ratio != config.ratio:
                ratios = f"{config.ratio} and {targets[other].ratio}"
                raise PlanError(
                    f"{name}: its output channels are pruned together with {other} (coupled by "
                    f"the graph); give them one ratio, not {ratios}"
                )


def apply_prune(model: nn.Module, targets: Mapping[str, PruneConfig], ctx: ApplyContext) -> None:
    """Prune every target layer's output channels, dependency-aware, in place.

    Layers that share importance and rounding are pruned in one pass of Torch-Pruning; the
    model's output layers are never pruned (their width is the task's).
    """
    for name in targets:
        if name in ctx.output_layers:
            raise PlanError(f"{name}: prune is not allowed on an output layer (its width is fixed)")
    groups: dict[tuple[str, int], dict[str, PruneConfig]] = defaultdict(dict)
    for name, config in targets.items():
        groups[(config.importance, config.round_to)][name] = config
    for (importance, round_to), group in groups.items():
        _prune_group(model, group, importance, round_to, ctx)


def _prune_group(model, group, importance, round_to, ctx) -> None:
    ratios = {}
    for name, config in group.items():
        module = model.get_submodule(name)
        ratios[module] = _rounded_ratio(config.ratio, module.weight.shape[0], round_to)
    ignored = [model.get_submodule(name) for name in ctx.output_layers]
    was_training = model.training
    model.eval()
    scorer = _importance(importance, model, ctx, group)
    pruner = tp.pruner.BasePruner(
        model,
        ctx.example_inputs,
        importance=scorer,
        pruning_ratio=0.0,
        pruning_ratio_dict=ratios,
        ignored_layers=ignored,
    )
    _check_coupling(pruner, model, group)
    with torch.no_grad():
        pruner.step()
    model.zero_grad(set_to_none=True)
    model.train(was_training)


def _rounded_ratio(ratio: float, channels: int, round_to: int) -> float:
    """The ratio that keeps the multiple of ``round_to`` nearest to ``channels * (1 - ratio)``.

    Torch-Pruning's own ``round_to`` rounds the kept width *down*, and prunes nothing when that
    reaches zero, so 16 channels at ratio 0.3 with ``round_to=4`` would keep 8, not 12. At least
    one multiple is kept; a layer narrower than ``round_to`` is left as it is.
    """
    if round_to == 1:
        return ratio
    keep = round(channels * (1 - ratio) / round_to) * round_to
    keep = min(max(keep, round_to), channels - channels % round_to)
    if keep <= 0 or keep >= channels:
        return 0.0
    return 1 - (keep + 0.5) / channels  # Torch-Pruning keeps int(channels * (1 - ratio))


PRUNE_METHOD = register(
    Method(PruneConfig, (nn.Linear, nn.Conv2d), apply_prune, prunes_outputs=True,
           in_place=True)
)
