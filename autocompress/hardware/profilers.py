"""Profilers: one interface, one registry of hardware targets selectable by name.

Contract of a profiler (checked for every registered target by ``tests/test_profilers.py``):

* ``measure(model, example)`` returns a :class:`Measurement` of ``model`` on ``example`` (a
  batch whose first dimension is the batch size) without modifying the model or its mode.
* Counted costs (parameters, MACs, weight bytes) and the artifact bytes are the same on every
  target: they describe the model, not the device. Latency fields are None for targets that do
  not time (``analytic``); otherwise the median, p90 and spread of at least ``min_runs`` timed
  runs after ``warmup`` untimed ones, with the runtime and its version.
* Timing stops after ``max_runs`` runs, or once ``min_runs`` are done and either the relative
  interquartile spread is below ``target_spread`` or ``max_seconds`` have passed. A spread still
  above ``noisy_spread`` flags the measurement as noisy.
* Measuring an identical model again (same artifact bytes, example shape and settings) is
  served from a cache instead of being timed again.
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError, invalid
from autocompress.export import to_bytes
from autocompress.hardware.analytic import count_params, trace_costs, weight_bytes
from autocompress.hardware.cpu import summarize, torch_threads
from autocompress.hardware.measurement import Measurement, current_node
from autocompress.hardware.quiet import quiet_node


@dataclass(frozen=True)
class Protocol:
    """How latency is measured (see the module docstring)."""

    warmup: int = 10
    min_runs: int = 10
    max_runs: int = 200
    max_seconds: float = 2.0
    target_spread: float = 0.05
    noisy_spread: float = 0.25
    quiet_timeout_s: float = 30.0


class BaseProfiler(abc.ABC):
    """A hardware target. Subclasses implement :meth:`time_runs` (or nothing, for analytic)."""

    name: str = ""

    def __init__(self, threads: int = 1, protocol: Protocol | None = None, cache_size: int = 64):
        if threads < 1:
            raise invalid(f"{self.name}.threads", threads, "an integer >= 1")
        self.threads = threads
        self.protocol = protocol or Protocol()
        self._cache: OrderedDict[str, Measurement] = OrderedDict()
        self._cache_size = cache_size

    @property
    @abc.abstractmethod
    def runtime(self) -> str:
        """The runtime and its version, e.g. ``torch 2.13.0+cpu``."""

    def measure(self, model: nn.Module, example: torch.Tensor,
                base: dict | None = None, extra: dict | None = None) -> Measurement:
        """Measure ``model`` on ``example`` (served from the cache for an identical model)."""
        artifact = to_bytes(model, base, extra)
        key = self._key(artifact, example)
        if key in self._cache:
            self._cache.move_to_end(key)
            return replace(self._cache[key], cached=True)
        measurement = self._measure(model, example, len(artifact))
        self._cache[key] = measurement
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return measurement

    def clear_cache(self) -> None:
        """Forget every cached measurement (the next ``measure`` times again)."""
        self._cache.clear()

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        digest = hashlib.sha256(artifact)
        digest.update(repr((tuple(example.shape), self.threads, self.protocol)).encode())
        return digest.hexdigest()

    activation_bits: int = 32  # the runtime's activation precision (bit operations)

    @property
    def timed(self) -> bool:
        """Whether this target times runs (False for counted costs only)."""
        return type(self).time_runs is not BaseProfiler.time_runs

    def _measure(self, model: nn.Module, example: torch.Tensor, size: int) -> Measurement:
        wait = self.protocol.quiet_timeout_s if self.timed else 0.0
        with quiet_node().timing(wait) as quiet:
            timing = self.time_runs(model, example)
        per_sample = trace_costs(model, example[:1], self.activation_bits)
        batch = trace_costs(model, example, self.activation_bits)
        weights = weight_bytes(model)
        return Measurement(
            params=count_params(model), macs=per_sample.macs, bops=per_sample.bops,
            peak_mem_mb=(weights + batch.peak_activation_bytes) / 2**20,
            weight_bytes=weights, size_bytes=size, target=self.name, node=current_node(),
            latency_ms=timing.get("latency_ms"), latency_p90_ms=timing.get("latency_p90_ms"),
            latency_spread=timing.get("latency_spread"), runs=int(timing.get("runs", 0)),
            batch_size=int(example.shape[0]), threads=self.threads, runtime=self.runtime,
            noisy=bool(timing and timing["latency_spread"] > self.protocol.noisy_spread),
            quiet=quiet,
        )

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:
        """Latency statistics (empty for targets that do not time)."""
        return {}

    def _repeat(self, run: Callable[[], Any]) -> dict[str, float]:
        return repeat_until_stable(run, self.protocol)


def repeat_until_stable(run: Callable[[], Any], p: Protocol) -> dict[str, float]:
    """Warm up, then time ``run`` until the protocol says the estimate is good enough."""
    for _ in range(p.warmup):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + p.max_seconds
    while len(times) < p.max_runs:
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
        if len(times) >= p.min_runs and (
                summarize(times)["latency_spread"] <= p.target_spread
                or time.perf_counter() > deadline):
            break
    return summarize(times)


class AnalyticProfiler(BaseProfiler):
    """Counted costs and artifact bytes only: no device, no timing."""

    name = "analytic"

    @property
    def runtime(self) -> str:  # noqa: D102
        return "analytic"


class TorchCPUProfiler(BaseProfiler):
    """Eager PyTorch on this machine's CPU, ``threads`` intra-op threads."""

    name = "cpu-torch"

    @property
    def runtime(self) -> str:  # noqa: D102
        return f"torch {torch.__version__}"

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:  # noqa: D102
        was_training = model.training
        model.eval()
        try:
            with torch_threads(self.threads), torch.inference_mode():
                return self._repeat(lambda: model(example))
        finally:
            model.train(was_training)


class OnnxRuntimeCPUProfiler(BaseProfiler):
    """The model exported to ONNX (int8 QDQ when ``int8``) and timed in ONNX Runtime's CPU EP."""

    name = "cpu-onnxruntime"

    def __init__(self, threads: int = 1, protocol: Protocol | None = None, int8: bool = False,
                 calibration: torch.Tensor | None = None):
        super().__init__(threads, protocol)
        self.int8, self.calibration = int8, calibration
        self.activation_bits = 8 if int8 else 32

    @property
    def runtime(self) -> str:  # noqa: D102
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}" + (" int8" if self.int8 else "")

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:  # noqa: D102
        import tempfile
        from pathlib import Path

        from autocompress.export.onnx import export_onnx
        from autocompress.hardware.onnxruntime import session

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, example, path, int8=self.int8, calibration=self.calibration)
            s = session(path, self.threads)
        feed = {s.get_inputs()[0].name: example.detach().numpy()}
        return self._repeat(lambda: s.run(None, feed))

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        return super()._key(artifact + bytes([self.int8]), example)


class CudaProfiler(BaseProfiler):
    """CUDA events around eager PyTorch on the current GPU."""

    name = "cuda"

    def __init__(self, threads: int = 1, protocol: Protocol | None = None):
        if not torch.cuda.is_available():
            raise ConfigError("hardware target 'cuda': no CUDA device is available here")
        super().__init__(threads, protocol)

    @property
    def runtime(self) -> str:  # noqa: D102
        return f"torch {torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name()}"

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:  # noqa: D102
        import copy

        device = torch.device("cuda")
        gpu_model, x = copy.deepcopy(model).to(device).eval(), example.to(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times: list[float] = []

        def run() -> None:
            start.record()
            gpu_model(x)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))

        with torch.inference_mode():
            self._repeat(run)
        return summarize(times[self.protocol.warmup:])


PROFILERS: dict[str, type[BaseProfiler]] = {
    cls.name: cls
    for cls in (AnalyticProfiler, TorchCPUProfiler, OnnxRuntimeCPUProfiler, CudaProfiler)
}


def get_profiler(name: str, **options: Any) -> BaseProfiler:
    """A profiler by target name; unknown names fail with the list of valid ones."""
    if name not in PROFILERS:
        raise invalid("hardware.target", name, sorted(PROFILERS))
    return PROFILERS[name](**options)


from autocompress.hardware.remote import RemoteProfiler  # noqa: E402  (a BaseProfiler subclass)

PROFILERS[RemoteProfiler.name] = RemoteProfiler
