"""Quality metrics: what the Pareto front, quality budgets, ASHA and ``pick`` optimise.

A recipe's ``metric`` section names a built-in metric or a user function::

    metric: {name: accuracy}                  # the default
    metric: {name: top_k, k: 5}               # logged as top5_accuracy
    metric: {name: mse}                       # minimised
    metric: {name: mypkg.metrics:bleu, direction: maximize}

Built-ins know their direction and accumulate over batches exactly (accuracy, top-k,
macro-F1 from a confusion matrix, mean squared and absolute error over every output element);
a user function ``fn(model, loader) -> float`` gets the model in eval mode and the split's
batches as the data yields them, and must state its direction.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.config import bounded
from autocompress.data.batches import call_model, outputs_of, split_batch
from autocompress.errors import ConfigError, invalid

BUILTIN = {"accuracy": "maximize", "top_k": "maximize", "macro_f1": "maximize",
           "mse": "minimize", "mae": "minimize"}
DIRECTIONS = ("maximize", "minimize")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")

__all__ = ["BUILTIN", "DIRECTIONS", "MetricConfig", "evaluate_metric", "metric_state"]


@dataclass(frozen=True)
class MetricConfig:
    """The recipe's quality metric.

    Attributes:
        name: A built-in (``accuracy``, ``top_k``, ``macro_f1``, ``mse``, ``mae``) or
            ``package.module:function`` taking ``(model, loader)`` and returning a float.
        k: ``top_k`` only: how many of the highest logits may hold the label.
        direction: ``maximize`` or ``minimize``; required for a user function, optional (and
            checked) for a built-in.
    """

    name: str = "accuracy"
    k: int = bounded(5, ge=1)
    direction: str | None = None

    def __post_init__(self):
        if self.name not in BUILTIN and ":" not in str(self.name):
            raise invalid("metric.name", self.name,
                          f"one of {', '.join(BUILTIN)} or package.module:function")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise invalid("metric.k", self.k, "an integer >= 1")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise invalid("metric.direction", self.direction, DIRECTIONS)
        if self.name in BUILTIN:
            if self.direction not in (None, BUILTIN[self.name]):
                raise invalid("metric.direction", self.direction,
                              f"{BUILTIN[self.name]!r} (the direction of {self.name})")
        elif self.direction is None:
            raise invalid("metric.direction", None,
                          f"'maximize' or 'minimize' (a user metric {self.name} must state it)")
        if not _KEY.match(self.key):
            raise invalid("metric.name", self.name, "a function whose name is lowercase "
                          "letters, digits and underscores (it names the logged metric)")

    @property
    def key(self) -> str:
        """The metric's name in results and MLflow (``val`` is implied; ``test_`` is prefixed)."""
        if self.name == "top_k":
            return f"top{self.k}_accuracy"
        return self.name.rpartition(":")[2] if ":" in self.name else self.name

    @property
    def mode(self) -> str:
        """``max`` or ``min`` (Tune's and the Pareto code's spelling)."""
        return "max" if (self.direction or BUILTIN.get(self.name)) == "maximize" else "min"

    @property
    def op(self) -> str:
        """The comparison a budget on this metric takes: ``>=`` when maximised, else ``<=``."""
        return ">=" if self.mode == "max" else "<="

    @property
    def decomposable(self) -> bool:
        """True when the metric is a mean over samples (its batch means, weighted, are exact)."""
        return self.name in ("accuracy", "top_k", "mse", "mae")

    @property
    def worst(self) -> float:
        """The value reported for a candidate that could not be evaluated."""
        if self.name in ("accuracy", "top_k", "macro_f1"):
            return 0.0
        return float("-inf") if self.mode == "max" else float("inf")

    def function(self) -> Callable[[nn.Module, Iterable], float] | None:
        """The user function (imported), or None for a built-in.

        Raises:
            ConfigError: naming ``metric.name``, when it cannot be imported or is not callable.
        """
        if self.name in BUILTIN:
            return None
        module_name, _, attr = self.name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"metric.name: cannot import module {module_name!r} of "
                              f"{self.name!r}: {exc}") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ConfigError(f"metric.name: module {module_name!r} has no callable {attr!r}")
        return fn


class MetricState:
    """Streaming accumulation of a built-in metric over batches (exact, not batch-averaged)."""

    def __init__(self, config: MetricConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen."""
        self.total = 0.0
        self.count = 0
        self.confusion: torch.Tensor | None = None

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch of predictions and targets."""
        name, outputs = self.config.name, outputs.detach()
        if name in ("mse", "mae"):
            diff = outputs.float() - _like(targets, outputs).float()
            self.total += float((diff.square() if name == "mse" else diff.abs()).sum())
            self.count += diff.numel()
        elif name == "macro_f1":
            self._confuse(outputs.argmax(dim=-1), targets.long(), outputs.shape[-1])
        else:
            k = 1 if name == "accuracy" else min(self.config.k, outputs.shape[-1])
            top = outputs.topk(k, dim=-1).indices
            self.total += float((top == targets.long().unsqueeze(-1)).any(-1).sum())
            self.count += len(targets)

    def compute(self) -> float:
        """The metric over every batch seen (0 when none was)."""
        if self.config.name == "macro_f1":
            return _macro_f1(self.confusion)
        return self.total / self.count if self.count else 0.0

    def _confuse(self, predicted: torch.Tensor, targets: torch.Tensor, classes: int) -> None:
        classes = max(classes, int(targets.max()) + 1 if targets.numel() else 0)
        if self.confusion is None or len(self.confusion) < classes:
            grown = torch.zeros(classes, classes, dtype=torch.long)
            if self.confusion is not None:
                n = len(self.confusion)
                grown[:n, :n] = self.confusion
            self.confusion = grown
        index = targets * len(self.confusion) + predicted
        self.confusion += torch.bincount(index, minlength=self.confusion.numel()).view_as(
            self.confusion)


def _like(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Targets shaped as the outputs when they hold as many values (``(B,)`` vs ``(B, 1)``)."""
    if targets.shape != outputs.shape and targets.numel() == outputs.numel():
        return targets.reshape(outputs.shape)
    return targets


def _macro_f1(confusion: torch.Tensor | None) -> float:
    """Unweighted mean F1 over the classes present in the targets or the predictions."""
    if confusion is None:
        return 0.0
    tp = confusion.diag().double()
    support, predicted = confusion.sum(1).double(), confusion.sum(0).double()
    present = (support + predicted) > 0
    f1 = 2 * tp / (support + predicted).clamp_min(1)
    return float(f1[present].mean()) if present.any() else 0.0


def metric_state(config: MetricConfig) -> MetricState | None:
    """A streaming state for a built-in metric, None for a user function."""
    return MetricState(config) if config.name in BUILTIN else None


@torch.no_grad()
def evaluate_metric(model: nn.Module, batches: Iterable, config: MetricConfig,
                    label_key: str | None = None) -> float:
    """The metric of ``model`` over ``batches`` (in eval mode; the mode is restored).

    Args:
        model: The model to score.
        batches: The split's batches as the data yields them (a DataLoader, ...).
        config: The metric.
        label_key: The targets' key in dict batches.
    """
    was_training = model.training
    model.eval()
    try:
        fn = config.function()
        if fn is not None:
            return float(fn(model, batches))
        state = MetricState(config)
        for batch in batches:
            inputs, targets = split_batch(batch, label_key)
            state.update(outputs_of(call_model(model, inputs)), targets)
        return state.compute()
    finally:
        model.train(was_training)


def describe(config: MetricConfig | Any) -> str:
    """``accuracy (maximize)``: for messages."""
    return f"{config.key} ({'maximize' if config.mode == 'max' else 'minimize'})"
