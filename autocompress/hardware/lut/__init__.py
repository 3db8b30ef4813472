"""Latency prediction from a lookup table of measured kernels.

* :mod:`~autocompress.hardware.lut.kernels`: a model or plan as the kernels it runs;
* :mod:`~autocompress.hardware.lut.timing`: kernels timed in rotation, as layers run in a model;
* :mod:`~autocompress.hardware.lut.table`: the table (entries, residuals, predictions, files);
* :mod:`~autocompress.hardware.lut.parts`: its records;
* :mod:`~autocompress.hardware.lut.error`: how far its predictions are from measurement;
* :mod:`~autocompress.hardware.lut.profiler`: the table as the selectable target ``lut``;
* :mod:`~autocompress.hardware.lut.predictor`: screening plans before they are built, in a search.

The public names below are imported from those modules on first use.
"""

import importlib

_HOMES = {
    "Entry": "parts", "Part": "parts", "Prediction": "parts", "Residual": "parts",
    "LatencyTableProfiler": "profiler",
    "TIMED_TARGETS": "table", "LatencyTable": "table", "cpu_model": "table", "family": "table",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
