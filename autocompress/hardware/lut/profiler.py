"""The latency table as a hardware target: predicted latency instead of a timing loop.

Registered as target ``lut``: a recipe selects it as a named target, either
``hardware.targets: {edge: {target: lut, table: edge.json}}`` (predicting ``cpu-torch``) or
``{target: cpu-onnxruntime, table: edge.json}`` (a ``table`` option wraps the target it names,
see :mod:`autocompress.hardware.targets`). Counted costs (parameters, MACs, bytes) are the
usual ones; the latency fields hold the table's prediction, with ``runs == 0``: nothing was
timed.

The first model it sees of each family calibrates the family's residual, by a real
measurement on the underlying target: a search profiles its uncompressed baseline first, so the
baseline is then measured and every candidate after it predicted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.lut.table import TIMED_TARGETS, LatencyTable, family


class LatencyTableProfiler(BaseProfiler):
    """Latency predicted by a :class:`LatencyTable` of ``target``, kept in ``table``.

    Args:
        threads: Intra-op threads of the underlying target.
        protocol: Timing protocol of the calibrating measurements.
        target: The target the table predicts (``cpu-torch`` or ``cpu-onnxruntime``).
        table: A JSON file to load the table from (an empty one is started when it is missing
            or from another device) and to save it to after each prediction; None keeps it in
            memory only.
        int8: ONNX Runtime int8 QDQ (``cpu-onnxruntime`` only).
    """

    name = "lut"

    def __init__(self, threads: int = 1, protocol: Protocol | None = None,
                 target: str = "cpu-torch", table: str | os.PathLike | None = None,
                 int8: bool | str = False):
        super().__init__(threads, protocol)
        LatencyTable(target, int8=int8)  # validates the settings now, not at the first model
        self.target, self.int8 = target, int8
        self.path = Path(table) if table is not None else None
        self.table: LatencyTable | None = None

    @property
    def runtime(self) -> str:  # noqa: D102
        return f"latency table of {self.target}" + (" int8" if self.int8 else "")

    def _table(self, batch_size: int) -> LatencyTable:
        settings = (self.target, self.threads, batch_size, self.int8)
        if self.table is not None and self._settings(self.table) == settings:
            return self.table
        if self.path is not None and self.path.exists():
            loaded = LatencyTable.load(self.path, rebuild=True)
            if self._settings(loaded) == settings:
                self.table = loaded
                return loaded
        self.table = LatencyTable(self.target, threads=self.threads, batch_size=batch_size,
                                  int8=self.int8, model_protocol=self.protocol)
        return self.table

    @staticmethod
    def _settings(table: LatencyTable) -> tuple:
        return table.target, table.threads, table.batch_size, table.int8

    @property
    def timed(self) -> bool:  # noqa: D102  (predicts latency: nothing to pair or hold quiet)
        return False

    def _timed(self, model: nn.Module, example: torch.Tensor,
               reference: nn.Module | None = None) -> tuple[Any, bool]:
        predicted = self.time_runs(model, example)
        if reference is None:
            return predicted, False
        return (predicted, self.time_runs(reference, example)), False

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:  # noqa: D102
        table = self._table(int(example.shape[0]))
        if family(model, example) not in table.residuals:
            table.calibrate(model, example)
        latency = table.predict_model(model, example).latency_ms
        if self.path is not None:
            table.save(self.path)
        return {"latency_ms": latency, "latency_p90_ms": latency, "latency_spread": 0.0,
                "runs": 0.0}


__all__ = ["TIMED_TARGETS", "LatencyTableProfiler"]
