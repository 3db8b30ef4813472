"""Streaming evaluation of the recipe's quality metric over a split's batches."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from autocompress.data.batches import call_model, outputs_of, shaped_like, split_batch
from autocompress.metrics.config import BUILTIN, MetricConfig

__all__ = ["MetricState", "evaluate_metric", "metric_state"]


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
            diff = outputs.float() - shaped_like(targets, outputs).float()
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
