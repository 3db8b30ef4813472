"""The latency predictor in a search: a lookup table that rejects candidates before any build.

The driver loads (or measures) the recipe target's :class:`LatencyTable` once, persisted beside
the search storage with the device's fingerprint, fills it with the base model's kernels and
calibrates it on the base model. Each trial then predicts its plan's latency *without building
it*; a plan predicted over a latency budget by more than ``hardware.reject_margin`` is reported
infeasible at once (status ``infeasible``, ``predicted_only``), never built, measured or
trained. Every built candidate is still measured, and the predictor's error against that
measurement is logged with it (``latency_predicted_ms``, ``latency_prediction_error``), so the
search reports how good the table is.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.hardware.budget import Budget
from autocompress.hardware.config import HardwareConfig
from autocompress.methods import CompressionPlan


def table_path(hw: HardwareConfig, storage: Path) -> Path:
    """Where the default target's table is kept (one per target and settings)."""
    form = "" if not hw.int8 else "-int8-dynamic" if hw.int8 == "dynamic" else "-int8"
    name = f"latency-table-{hw.target}{form}-t{hw.threads}-b{hw.batch_size}"
    return storage / f"{name}.json"


def load_table(hw: HardwareConfig, teacher: nn.Module, example: torch.Tensor, storage: Path):
    """The default target's table, filled with the base model's kernels and calibrated on it.

    Returns None when the config does not ask for prediction (``hardware.predict``).
    """
    if not hw.predict:
        return None
    if hw.resource:
        raise ConfigError("hardware.predict: the latency table is measured where the driver "
                          f"runs, but hardware.resource sends timing to {hw.resource!r}; turn "
                          "one of them off")
    from autocompress.hardware.lut.table import LatencyTable

    path = table_path(hw, storage)
    if path.is_file():
        table = LatencyTable.load(path, rebuild=True)  # another device: measured again here
    else:
        table = LatencyTable(hw.target, threads=hw.threads, batch_size=hw.batch_size,
                             int8=hw.int8)
    table.predict_model(teacher, example)  # measures the base model's missing kernels
    table.calibrate(teacher, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.save(path)
    return table


def latency_budgets(budgets: Iterable[Budget]) -> list[Budget]:
    """The budgets a prediction of the default target's latency can decide."""
    return [b for b in budgets if b.metric == "latency_ms" and b.target is None]


def screen(table: Any, teacher: nn.Module, plan: CompressionPlan, example: torch.Tensor,
           budgets: Iterable[Budget], margin: float) -> tuple[float, list[float], bool]:
    """Predict the plan's latency; reject it when a budget is exceeded by more than ``margin``.

    Returns:
        The predicted latency (ms), its violation of each latency budget, and whether the plan
        is rejected.
    """
    predicted = table.predict_plan(teacher, plan, example).latency_ms
    violations = [b.violation(predicted) for b in latency_budgets(budgets)]
    return predicted, violations, any(v > margin for v in violations)


def error_summary(predicted: Iterable[float], measured: Iterable[float]) -> dict[str, float]:
    """The predictor's error over a search: median |error| and the share within +-10 %."""
    errors = [p / m - 1 for p, m in zip(predicted, measured, strict=True) if m > 0]
    if not errors:
        return {}
    return {"predictor_median_abs_error": statistics.median(abs(e) for e in errors),
            "predictor_within_10pct": sum(abs(e) <= 0.10 for e in errors) / len(errors),
            "predictor_trials": float(len(errors))}
