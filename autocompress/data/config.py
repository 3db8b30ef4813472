"""The data section of a recipe, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autocompress.config import bounded, check_fields

__all__ = ["DataConfig"]


@dataclass(frozen=True)
class DataConfig:
    """The data: a zoo name or ``package.module:function`` returning data of any form.

    The factory may return DataSplits / DatasetSplits, a LightningDataModule, or train, val
    (and test) Datasets or DataLoaders as a dict or tuple (see :mod:`autocompress.data.load`).
    ``label_key`` names the targets in dict batches (default: ``labels``, then ``label``).
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = bounded(64, ge=1)
    label_key: str | None = None

    def __post_init__(self):
        check_fields(self, "data")  # each field's type and range, also when built in code
