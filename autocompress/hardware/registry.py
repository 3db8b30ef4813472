"""Hardware targets by name: one registry of profiler classes, imported when first used.

Each target is registered as ``"package.module:Class"`` (or a class), and the class is imported
on first lookup, so config code can list and validate target names without importing any
profiler, and profiler modules register nothing at import time (no import cycles)::

    from autocompress.hardware.registry import PROFILERS, register
    register("my-npu", "my_package.npu:NpuProfiler")
    "my-npu" in PROFILERS  # True; PROFILERS["my-npu"] imports my_package.npu
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from autocompress.errors import invalid

_BUILTIN = {
    "analytic": "autocompress.hardware.profilers:AnalyticProfiler",
    "cpu-torch": "autocompress.hardware.profilers:TorchCPUProfiler",
    "cpu-onnxruntime": "autocompress.hardware.onnxruntime:OnnxRuntimeCPUProfiler",
    "cuda": "autocompress.hardware.profilers:CudaProfiler",
    "remote": "autocompress.hardware.remote:RemoteProfiler",
    "lut": "autocompress.hardware.lut.profiler:LatencyTableProfiler",
}


class TargetRegistry(MutableMapping):
    """Target name -> profiler class; entries given as ``module:Class`` load on first access."""

    def __init__(self, entries: dict[str, Any]):
        self._entries: dict[str, Any] = dict(entries)

    def __getitem__(self, name: str) -> type:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry

    def __setitem__(self, name: str, profiler: type | str) -> None:
        self._entries[name] = profiler

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"TargetRegistry({sorted(self._entries)})"


PROFILERS = TargetRegistry(_BUILTIN)


def register(name: str, profiler: type | str) -> None:
    """Make ``profiler`` (a BaseProfiler subclass, or ``"module:Class"``) selectable as ``name``."""
    PROFILERS[name] = profiler


def get_profiler(name: str, **options: Any):
    """A profiler by target name; unknown names fail with the list of valid ones."""
    if name not in PROFILERS:
        raise invalid("hardware.target", name, sorted(PROFILERS))
    return PROFILERS[name](**options)


__all__ = ["PROFILERS", "TargetRegistry", "get_profiler", "register"]
