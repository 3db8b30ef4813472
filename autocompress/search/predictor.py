"""Moved to :mod:`autocompress.hardware.lut.predictor` (which takes the hardware section).

Kept so that callers passing a whole recipe work until they switch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from autocompress.hardware.lut import predictor
from autocompress.hardware.lut.predictor import error_summary, latency_budgets, screen


def load_table(recipe, teacher: nn.Module, example: torch.Tensor, storage: Path):
    """:func:`autocompress.hardware.lut.predictor.load_table` of ``recipe.hardware``."""
    return predictor.load_table(recipe.hardware, teacher, example, storage)


def table_path(recipe, storage: Path) -> Path:
    """:func:`autocompress.hardware.lut.predictor.table_path` of ``recipe.hardware``."""
    return predictor.table_path(recipe.hardware, storage)


__all__ = ["error_summary", "latency_budgets", "load_table", "screen", "table_path"]
