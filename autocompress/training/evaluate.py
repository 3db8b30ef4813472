"""Plain-torch evaluation and data loaders (no Lightning needed to score a model)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from autocompress.data.splits import loader
from autocompress.metrics import MetricConfig, evaluate_metric

__all__ = ["evaluate", "loader"]


def evaluate(model: nn.Module, data: Dataset | Iterable, batch_size: int = 256, *,
             metric: Any = None, label_key: str | None = None) -> float:
    """The quality of ``model`` on ``data`` (in eval mode; the mode is restored).

    Args:
        model: The model to score.
        data: A ``Dataset`` (batched here) or an iterable of batches (e.g. a ``DataLoader``);
            batches may be tuples ``(x, y)`` or dicts with a label key.
        batch_size: Batch size when ``data`` is a Dataset.
        metric: A :class:`~autocompress.metrics.MetricConfig`; None is top-1 accuracy.
        label_key: The targets' key in dict batches.
    """
    batches = loader(data, batch_size) if isinstance(data, Dataset) else data
    return evaluate_metric(model, batches, metric or MetricConfig(), label_key)
