"""Plain-torch evaluation and data loaders (no Lightning needed to score a model)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0):
    """A single-process DataLoader (trials are already parallel processes)."""
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


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
    from autocompress.metrics import MetricConfig, evaluate_metric

    batches = loader(data, batch_size) if isinstance(data, Dataset) else data
    return evaluate_metric(model, batches, metric or MetricConfig(), label_key)
