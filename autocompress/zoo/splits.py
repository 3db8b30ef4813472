"""Train / validation / test splits of the zoo's data sets, and the helpers that draw them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from autocompress.zoo.checks import ZooError

__all__ = ["DatasetSplits", "stratified", "subset"]


@dataclass(frozen=True)
class DatasetSplits:
    """A data set split into training, validation and test tensors.

    The roles are fixed: ``train`` fine-tunes and calibrates, ``val`` selects (ASHA, budgets,
    the Pareto front, pick), ``test`` is only reported, once, at the end of a search.

    Attributes:
        train: Inputs and labels (int64) to train on.
        val: Inputs and labels to validate (and select) on.
        input_shape: Shape of one input sample, without the batch dimension.
        num_classes: Number of classes; labels lie in ``0 .. num_classes - 1``.
        name: Name of the data set.
        test: Inputs and labels held out for the final report (None: the data set has none).
    """

    train: TensorDataset
    val: TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int
    name: str
    test: TensorDataset | None = None


def subset(x: torch.Tensor, y: torch.Tensor, limit: int | None, seed: int) -> TensorDataset:
    """Return the first ``limit`` samples of a seeded permutation, or all when ``limit`` is None.

    A limit larger than the number of samples keeps them all (in permuted order).
    """
    if limit is None:
        return TensorDataset(x, y)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(x), generator=generator)[:limit]
    return TensorDataset(x[index], y[index])


def stratified(x: np.ndarray, y: np.ndarray, held_out: int, seed: int):
    """``(x, y)`` of the rest and of ``held_out`` samples drawn stratified by ``seed``."""
    from sklearn.model_selection import train_test_split

    try:
        x_rest, x_out, y_rest, y_out = train_test_split(
            x, y, test_size=held_out, random_state=seed, stratify=y)
    except ValueError as exc:
        raise ZooError(f"cannot split {len(x)} samples, holding out {held_out}: {exc}") from exc
    return (x_rest, y_rest), (x_out, y_out)
