"""Latency prediction from a lookup table of measured kernels.

* :mod:`~autocompress.hardware.lut.kernels`: a model or plan as the kernels it runs;
* :mod:`~autocompress.hardware.lut.timing`: kernels timed in rotation, as layers run in a model;
* :mod:`~autocompress.hardware.lut.table`: the table (entries, residuals, predictions, files);
* :mod:`~autocompress.hardware.lut.parts`: its records;
* :mod:`~autocompress.hardware.lut.error`: how far its predictions are from measurement;
* :mod:`~autocompress.hardware.lut.profiler`: the table as the selectable target ``lut``;
* :mod:`~autocompress.hardware.lut.predictor`: screening plans before they are built, in a search.
"""

from autocompress.hardware.lut.parts import Entry, Part, Prediction, Residual
from autocompress.hardware.lut.profiler import LatencyTableProfiler
from autocompress.hardware.lut.table import TIMED_TARGETS, LatencyTable, cpu_model, family

__all__ = ["TIMED_TARGETS", "Entry", "LatencyTable", "LatencyTableProfiler", "Part",
           "Prediction", "Residual", "cpu_model", "family"]
