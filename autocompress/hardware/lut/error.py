"""How far a latency table's predictions are from measurement (the predictor's own error)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.lut.parts import Prediction
from autocompress.hardware.lut.table import LatencyTable
from autocompress.methods import CompressionPlan, apply_plan


@dataclass(frozen=True)
class Case:
    """A model to predict and measure: a built model, or a base model and a plan.

    Attributes:
        name: A label for the report.
        model: The built model, or the base model when ``plan`` is given.
        example: The input batch (the table's batch size).
        plan: Predicted without building (``predict_plan``), then built to be measured.
        calibration: ``(inputs, targets)`` for data-aware methods when the plan is built.
    """

    name: str
    model: nn.Module
    example: torch.Tensor
    plan: CompressionPlan | None = None
    calibration: tuple[Any, Any] | None = None


@dataclass(frozen=True)
class ErrorRow:
    """Predicted and measured latency of one case.

    Attributes:
        name: The case's label.
        predicted_ms: The prediction (the sum of its parts).
        measured_ms: The lowest of the profiler's medians over the measuring rounds.
        noise: How far those medians disagree, ``max / min - 1``: the run-to-run noise floor
            of the measurement itself.
        complete: Every part of the prediction had an entry.
    """

    name: str
    predicted_ms: float
    measured_ms: float
    noise: float
    complete: bool = True

    @property
    def error(self) -> float:
        """Relative error of the prediction, ``(predicted - measured) / measured``."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class ErrorReport:
    """The predictor's error over a set of cases on one target."""

    target: str
    rows: tuple[ErrorRow, ...]

    def median_abs_error(self) -> float:
        """Median of the absolute relative errors."""
        return statistics.median(abs(r.error) for r in self.rows)

    def share_within(self, tolerance: float = 0.10) -> float:
        """Fraction of cases predicted within ``+-tolerance`` of the measurement."""
        return sum(abs(r.error) <= tolerance for r in self.rows) / len(self.rows)

    def median_noise(self) -> float:
        """Median run-to-run noise of the measurements (the floor under the error)."""
        return statistics.median(r.noise for r in self.rows)

    def to_markdown(self) -> str:
        """One row per case and a summary line."""
        lines = ["| case | predicted ms | measured ms | error | run-to-run noise |",
                 "|---|---|---|---|---|"]
        lines += [f"| {r.name} | {r.predicted_ms:.3f} | {r.measured_ms:.3f} | "
                  f"{r.error:+.1%} | {r.noise:.1%} |" for r in self.rows]
        lines.append(f"\n{self.target}: median |error| {self.median_abs_error():.1%}, "
                     f"{self.share_within():.0%} within +-10% ({len(self.rows)} cases); "
                     f"median run-to-run noise {self.median_noise():.1%}")
        return "\n".join(lines)


def predict_case(table: LatencyTable, case: Case) -> Prediction:
    """The table's prediction for ``case`` (without building a plan)."""
    if case.plan is None:
        return table.predict_model(case.model, case.example)
    return table.predict_plan(case.model, case.plan, case.example)


def error_report(table: LatencyTable, cases: Iterable[Case],
                 profiler: BaseProfiler | None = None, rounds: int = 3) -> ErrorReport:
    """Predict each case, then build (plans) and measure it with ``profiler``.

    Args:
        table: The table; missing kernels are measured on demand. Calibrate the residual of
            each base model first (``predict_plan`` does it for its base model).
        cases: What to predict and measure.
        profiler: The measuring profiler (the table's whole-model profiler by default).
        rounds: Separate measurements per case: the lowest median is compared with the
            prediction (other processes only add time), their disagreement is the noise.
            Each round times every case in turn, so a slow spell of the machine hits all
            cases alike instead of one.
    """
    profiler = profiler or table.profiler
    cases = list(cases)
    predictions = [predict_case(table, case) for case in cases]
    models = [case.model if case.plan is None else apply_plan(
        case.model, case.plan, case.example, calibration=case.calibration) for case in cases]
    medians: list[list[float]] = [[] for _ in cases]
    for _ in range(rounds):
        for i, (case, model) in enumerate(zip(cases, models, strict=True)):
            medians[i].append(profiler.time_runs(model, case.example)["latency_ms"])
    rows = tuple(ErrorRow(case.name, p.latency_ms, min(m), max(m) / min(m) - 1, p.complete)
                 for case, p, m in zip(cases, predictions, medians, strict=True))
    return ErrorReport(table.target, rows)


__all__ = ["Case", "ErrorReport", "ErrorRow", "error_report", "predict_case"]
