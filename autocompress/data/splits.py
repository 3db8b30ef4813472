"""DataSplits: train, val and test data of any form, with fixed roles.

* **train** fine-tunes candidates and feeds every data-aware step (calibration, importance
  scores, int8 calibration);
* **val** decides: ASHA, quality budgets, the Pareto front and ``pick``; timing inputs come
  from it too;
* **test** is evaluated once at the end of a search, for the baseline and every Pareto member,
  and never used to choose.

Each split is a map-style or iterable ``Dataset`` (batched here with the recipe's batch size) or
anything iterable over batches, such as a ``DataLoader`` (used as given).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from autocompress.data.batches import batch_size_of, concat, split_batch, take
from autocompress.errors import ConfigError

SPLITS = ("train", "val", "test")

__all__ = ["SPLITS", "DataSplits", "loader"]


def loader(dataset: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0):
    """A single-process DataLoader (trials are already parallel processes)."""
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


@dataclass(frozen=True)
class DataSplits:
    """Three splits of a data set and how to read their batches.

    Attributes:
        train: Training data: a ``Dataset`` or an iterable of batches (e.g. a ``DataLoader``).
        val: Validation data, of the same kinds.
        test: Test data, or None when the data set has none (no test evaluation then).
        name: Name of the data set.
        label_key: The targets' key in dict batches (None: ``labels``, then ``label``).
        input_shape: Shape of one input sample when known (zoo data sets).
        num_classes: Number of classes when known.
    """

    train: Any
    val: Any
    test: Any = None
    name: str = "data"
    label_key: str | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None

    def __post_init__(self):
        for split in SPLITS:
            source = getattr(self, split)
            if source is None and split == "test":
                continue
            if not (isinstance(source, Dataset) or hasattr(source, "__iter__")):
                raise ConfigError(f"data {self.name!r}: {split} split is a "
                                  f"{type(source).__name__}, not a Dataset or an iterable of "
                                  "batches (e.g. a DataLoader)")

    def loader(self, split: str, batch_size: int, *, shuffle: bool = False,
               seed: int = 0) -> Iterable:
        """Batches of ``split``: a Dataset batched here, anything else as given.

        ``shuffle`` applies to map-style datasets only (a DataLoader keeps its own order).
        """
        source = self._source(split)
        if isinstance(source, IterableDataset):
            return DataLoader(source, batch_size=batch_size)
        if isinstance(source, Dataset):
            return loader(source, batch_size, shuffle=shuffle, seed=seed)
        return source

    def fixed_loader(self, split: str, batch_size: int = 256) -> Iterable:
        """Batches of ``split`` in a fixed order: a shuffling DataLoader is read unshuffled."""
        source = self._source(split)
        if isinstance(source, DataLoader) and not isinstance(source.dataset, IterableDataset):
            return DataLoader(source.dataset, batch_size=source.batch_size or batch_size,
                              collate_fn=source.collate_fn, shuffle=False)
        return self.loader(split, batch_size)

    def batches(self, split: str, batch_size: int = 256) -> Iterator[tuple[Any, Any]]:
        """``(inputs, targets)`` of every batch of ``split``, in a fixed order."""
        for batch in self.fixed_loader(split, batch_size):
            yield split_batch(batch, self.label_key)

    def sample(self, n: int, split: str = "train") -> tuple[Any, Any]:
        """The first ``n`` samples of ``split`` (fixed order): inputs and targets."""
        inputs, targets, have = [], [], 0
        for x, y in self.batches(split, batch_size=min(max(n, 1), 256)):
            inputs.append(x)
            targets.append(y)
            have += batch_size_of(x)
            if have >= n:
                break
        if not inputs:
            raise ConfigError(f"data {self.name!r}: the {split} split is empty")
        y = concat(targets) if targets[0] is not None else None
        return take(concat(inputs), n), (take(y, n) if y is not None else None)

    def example_inputs(self, n: int = 1, split: str = "val") -> Any:
        """The first ``n`` inputs of ``split`` (val by default: timing never reads test)."""
        return self.sample(n, split)[0]

    def inputs_of(self, batch: Any) -> Any:
        """The model's inputs of one batch (a tensor, a tuple or a dict)."""
        return split_batch(batch, self.label_key)[0]

    def targets_of(self, batch: Any) -> Any:
        """The targets of one batch (None when it has none)."""
        return split_batch(batch, self.label_key)[1]

    def _source(self, split: str) -> Any:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        source = getattr(self, split)
        if source is None:
            raise ConfigError(f"data {self.name!r}: there is no {split} split")
        return source
