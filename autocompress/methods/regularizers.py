"""Sparsity-inducing regularisation during fine-tuning (a training option, not a layer method).

Three kinds, chosen by :class:`SparsityConfig`:

* ``l1_weights``: L1 norm of the selected Linear / Conv2d weights.
* ``l1_bn``: L1 norm of the BatchNorm scales, as in Network Slimming (Liu et al., 2017); small
  scales mark channels to prune.
* ``l0``: relaxed L0 norm of hard-concrete gates on the selected layers' output channels
  (Louizos et al., 2018). The gates multiply layer outputs through forward hooks, so no module
  is replaced; after training, :func:`gate_keep_ratios` gives each layer's fraction of open
  channels, i.e. a structured prune ratio of ``1 - keep``, and :func:`fold_gates` bakes the
  gates into the weights (closed channels become all-zero) before the hooks go.

:class:`SparsityRegularizer` bundles the three behind one ``penalty()`` call.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from autocompress.errors import PlanError, invalid
from autocompress.methods.base import MethodConfig

KINDS = ("l1_weights", "l1_bn", "l0")
WEIGHTED = (nn.Linear, nn.Conv2d)


@dataclass(frozen=True)
class SparsityConfig(MethodConfig):
    """A sparsity penalty added to the fine-tuning loss.

    Attributes:
        kind: ``l1_weights``, ``l1_bn`` or ``l0``.
        strength: Multiplier of the penalty, >= 0 (0 disables it).
        layers: Comma-separated layer-name globs (``fnmatch``; ``re:`` for a regular
            expression). Empty selects every Linear / Conv2d (``l1_weights``, ``l0``) or every
            affine BatchNorm (``l1_bn``).
    """

    method = "sparsity"
    kind: str = "l1_weights"
    strength: float = 0.0
    layers: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise invalid("sparsity.kind", self.kind, KINDS)
        if not self.strength >= 0:
            raise invalid("sparsity.strength", self.strength, "a number >= 0")
        if not all(self.layer_patterns()):
            raise invalid("sparsity.layers", self.layers, "comma-separated layer-name globs")

    def is_identity(self) -> bool:
        return self.strength == 0.0

    def layer_patterns(self) -> tuple[str, ...]:
        """The globs of ``layers``; empty when every layer of the kind's type is selected."""
        return tuple(p.strip() for p in self.layers.split(",")) if self.layers.strip() else ()


def select_layers(model: nn.Module, config: SparsityConfig,
                  exclude: Iterable[str] = ()) -> dict[str, nn.Module]:
    """The layers ``config`` regularises, by name, in module order.

    BatchNorm layers for ``l1_bn`` (affine ones only), Linear / Conv2d otherwise; the globs
    keep the layers of that type they match. ``exclude`` drops names, e.g. the output layers.

    Raises:
        PlanError: A glob matches no layer of the right type; the message lists valid names.
    """
    types = _BatchNorm if config.kind == "l1_bn" else WEIGHTED
    candidates = {n: m for n, m in model.named_modules()
                  if isinstance(m, types) and getattr(m, "weight", None) is not None}
    patterns = config.layer_patterns()
    for pattern in patterns:
        if not any(_match(pattern, n) for n in candidates):
            shown = ", ".join(list(candidates)[:8]) + (", ..." if len(candidates) > 8 else "")
            raise PlanError(f"sparsity.layers: {pattern!r} matches no {config.kind} layer; "
                            f"valid names include {shown or 'none'}")
    excluded = set(exclude)
    return {n: m for n, m in candidates.items() if n not in excluded
            and (not patterns or any(_match(p, n) for p in patterns))}


def _match(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def l1_penalty(model: nn.Module, config: SparsityConfig, exclude: Iterable[str] = ()) -> Tensor:
    """``strength * sum |w|`` over the selected weights (BatchNorm scales for ``l1_bn``).

    Biases (and BatchNorm shifts) are not penalised.
    """
    if config.kind == "l0":
        raise ValueError("l1_penalty: an l0 config needs gates; use attach_l0_gates")
    layers = select_layers(model, config, exclude).values()
    return _l1(layers, config.strength, _device(model))


def _l1(layers: Iterable[nn.Module], strength: float, device: torch.device) -> Tensor:
    weights = [m.weight.abs().sum() for m in layers]
    return strength * torch.stack(weights).sum() if weights else torch.zeros((), device=device)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.zeros(())).device


class HardConcreteGate(nn.Module):
    """One stretched hard-concrete gate per output channel (Louizos et al., 2018).

    ``z = clamp(sigmoid((logit(u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1)`` with
    ``u ~ U(0, 1)`` while training; at evaluation the noise is dropped (:meth:`expected`).

    Args:
        channels: Number of gates.
        init_log_alpha: Initial ``log_alpha``; the default 3 starts every gate open
            (``expected() == 1``) so a pretrained student is unchanged at the start.
    """

    beta = 2.0 / 3.0
    gamma = -0.1
    zeta = 1.1

    def __init__(self, channels: int, init_log_alpha: float = 3.0) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((channels,), float(init_log_alpha)))

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A noisy gate vector (differentiable in ``log_alpha``), one draw for the whole batch."""
        u = torch.rand(self.log_alpha.shape, generator=generator, device=self.log_alpha.device)
        u = u.clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return self._stretch(s)

    def expected(self) -> Tensor:
        """The deterministic test-time gate ``clamp(sigmoid(log_alpha) * (zeta-gamma) + gamma)``."""
        return self._stretch(torch.sigmoid(self.log_alpha))

    def deterministic_mask(self, threshold: float = 0.0) -> Tensor:
        """Boolean mask of the channels whose test-time gate exceeds ``threshold``."""
        return self.expected() > threshold

    def l0_norm(self) -> Tensor:
        """Expected number of open gates: ``sum sigmoid(log_alpha - beta * log(-gamma / zeta))``."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        return torch.sigmoid(self.log_alpha - shift).sum()

    def forward(self) -> Tensor:
        """:meth:`sample` in training mode, :meth:`expected` in eval mode."""
        return self.sample() if self.training else self.expected()

    def _stretch(self, s: Tensor) -> Tensor:
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)


def _gate_hook(gate: HardConcreteGate):
    """A forward hook multiplying a layer's output channel-wise by ``gate``.

    It follows the *layer's* training flag, so the gates switch with the model wherever they
    live. Channels are dim 1 for convolutions and the last dim for Linear outputs.
    """

    def hook(module: nn.Module, _inputs, output: Tensor) -> Tensor:
        z = (gate.sample() if module.training else gate.expected()).to(output.dtype)
        if isinstance(module, nn.Conv2d):
            z = z.view(1, -1, *([1] * (output.dim() - 2)))
        return output * z

    return hook


def attach_l0_gates(model: nn.Module, config: SparsityConfig, exclude: Iterable[str] = (),
                    init_log_alpha: float = 3.0) -> dict[str, HardConcreteGate]:
    """Gate the output channels of the selected Linear / Conv2d layers of ``model``.

    The gates are not children of ``model`` (its state dict is unchanged): keep them in the
    training module, e.g. ``nn.ModuleList(gates.values())``, so they are optimised and moved
    with it, and pass them to :func:`remove_gates` when done. Pass the output layers in
    ``exclude``: gating the class logits would prune the task's outputs.
    """
    if config.kind != "l0":
        raise ValueError(f"attach_l0_gates: needs an l0 config, got kind {config.kind!r}")
    gates = {}
    for name, layer in select_layers(model, config, exclude).items():
        channels = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        gate = HardConcreteGate(channels, init_log_alpha).to(layer.weight.device)
        gate.handle = layer.register_forward_hook(_gate_hook(gate))
        gates[name] = gate
    return gates


def remove_gates(gates: Mapping[str, HardConcreteGate]) -> None:
    """Remove the gates' hooks: the model computes its ungated outputs again."""
    for gate in gates.values():
        gate.handle.remove()


def fold_gates(model: nn.Module, gates: Mapping[str, HardConcreteGate]) -> None:
    """Bake the eval-time gates into their layers' weights and biases, then remove the hooks.

    The model then computes, hook-free, what the gated model computed in eval mode, and the
    closed channels have all-zero weights, so a magnitude-based structured pruning at ratio
    ``1 - keep`` removes exactly them (unless coupled layers disagree).
    """
    with torch.no_grad():
        for name, gate in gates.items():
            layer = model.get_submodule(name)
            z = gate.expected().to(layer.weight.dtype)
            layer.weight.mul_(z.view(-1, *([1] * (layer.weight.dim() - 1))))
            if layer.bias is not None:
                layer.bias.mul_(z)
    remove_gates(gates)


def l0_penalty(gates: Mapping[str, HardConcreteGate], strength: float) -> Tensor:
    """``strength * sum of the gates' l0_norm()``: the expected number of open channels."""
    norms = [gate.l0_norm() for gate in gates.values()]
    return strength * torch.stack(norms).sum() if norms else torch.zeros(())


def gate_keep_ratios(gates: Mapping[str, HardConcreteGate],
                     threshold: float = 0.0) -> dict[str, float]:
    """Per layer, the fraction of channels the deterministic mask keeps (prune ratio = 1 - it)."""
    with torch.no_grad():
        return {n: g.deterministic_mask(threshold).float().mean().item() for n, g in gates.items()}


class SparsityRegularizer(nn.Module):
    """One object for every kind: ``penalty()`` to add to the loss, ``close()`` when done.

    Its parameters are the l0 gates (none for the L1 kinds): add ``parameters()`` to the
    optimizer and keep it a child of the training module. ``model`` does not become a child.

    Args:
        model: The model being fine-tuned.
        config: What to penalise and how strongly.
        exclude: Layer names never regularised, e.g. ``find_output_layers(model, inputs)``.
    """

    def __init__(self, model: nn.Module, config: SparsityConfig,
                 exclude: Iterable[str] = ()) -> None:
        super().__init__()
        self.config = config
        self._model = (model,)  # a tuple: the model must not become a child
        l0 = config.kind == "l0"
        self._layers = () if l0 else tuple(select_layers(model, config, exclude).values())
        gates = attach_l0_gates(model, config, exclude) if l0 else {}
        self.names = tuple(gates)
        self.gates = nn.ModuleList(gates.values())

    def gate_dict(self) -> dict[str, HardConcreteGate]:
        """The l0 gates by layer name (empty for the L1 kinds)."""
        return dict(zip(self.names, self.gates, strict=True))

    def penalty(self) -> Tensor:
        """The regularisation term for the current parameters."""
        if self.config.kind == "l0":
            return l0_penalty(self.gate_dict(), self.config.strength)
        return _l1(self._layers, self.config.strength, _device(self._model[0]))

    def keep_ratios(self, threshold: float = 0.0) -> dict[str, float]:
        """:func:`gate_keep_ratios` of the l0 gates (empty for the L1 kinds)."""
        return gate_keep_ratios(self.gate_dict(), threshold)

    def close(self, fold: bool = False) -> None:
        """Remove the gate hooks (a no-op for the L1 kinds), folding them in first if asked.

        Args:
            fold: Bake the eval-time gates into the layers (:func:`fold_gates`) so the model
                keeps computing what it computed gated in eval mode.
        """
        if fold:
            fold_gates(self._model[0], self.gate_dict())
        remove_gates(self.gate_dict())


__all__ = [
    "KINDS",
    "HardConcreteGate",
    "SparsityConfig",
    "SparsityRegularizer",
    "attach_l0_gates",
    "fold_gates",
    "gate_keep_ratios",
    "l0_penalty",
    "l1_penalty",
    "remove_gates",
    "select_layers",
]
