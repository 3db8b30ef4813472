"""Plain-torch evaluation and data loaders (no Lightning needed to score a model)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0):
    """A single-process DataLoader (trials are already parallel processes)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (in eval mode; the mode is restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in loader(dataset, batch_size):
            correct += (model(x).argmax(dim=-1) == y).sum().item()
            total += len(y)
    finally:
        model.train(was_training)
    return correct / max(total, 1)
