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
* ``measure(model, example, reference=other)`` times ``model`` and ``other`` *paired*: their
  runs alternate one by one in the same time window (the protocol's ``max_seconds`` apply to
  the pair), and the measurement also carries the reference's median
  (``reference_latency_ms``), so their ratio is free of the machine's drift over minutes.

A timing target implements :meth:`BaseProfiler.runner`: a context that prepares the model
(export, session, device copy) and yields a zero-argument callable running one inference, which
returns its own device time in milliseconds or None to be timed on the host.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError, invalid
from autocompress.export import deployable, to_bytes
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
                base: dict | None = None, extra: dict | None = None,
                reference: nn.Module | None = None) -> Measurement:
        """Measure ``model`` on ``example`` (served from the cache for an identical model).

        With ``reference`` (e.g. the uncompressed baseline) both are timed paired, and the
        measurement carries the reference's latency from the same time window.
        """
        artifact = to_bytes(model, base, extra)
        ref_artifact = self._reference_bytes(reference) if self.timed else None
        key = self._key(artifact + (hashlib.sha256(ref_artifact).digest() if ref_artifact
                                    else b""), example)
        if key in self._cache:
            self._cache.move_to_end(key)
            return replace(self._cache[key], cached=True)
        measurement = self._measure(model, example, len(artifact), artifact,
                                    reference if ref_artifact else None, ref_artifact)
        self._cache[key] = measurement
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return measurement

    def clear_cache(self) -> None:
        """Forget every cached measurement (the next ``measure`` times again)."""
        self._cache.clear()

    def _reference_bytes(self, reference: nn.Module | None) -> bytes | None:
        """The reference's artifact bytes, serialised once per reference object."""
        if reference is None:
            return None
        held = getattr(self, "_reference", None)
        if held is None or held[0] is not reference:
            self._reference = (reference, to_bytes(reference))
        return self._reference[1]

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        digest = hashlib.sha256(artifact)
        digest.update(repr((tuple(example.shape), self.threads, self.protocol)).encode())
        return digest.hexdigest()

    activation_bits: int = 32  # the runtime's activation precision (bit operations)

    @property
    def timed(self) -> bool:
        """Whether this target times runs (False for counted costs only)."""
        return type(self).runner is not BaseProfiler.runner

    def _measure(self, model: nn.Module, example: torch.Tensor, size: int, artifact: bytes,
                 reference: nn.Module | None = None,
                 reference_artifact: bytes | None = None) -> Measurement:
        """Time (paired with ``reference`` when given) and count ``model``."""
        ref_timing: dict[str, float] = {}
        if reference is not None:
            (timing, ref_timing), quiet = self._timed(model, example, reference)
        else:
            timing, quiet = self._timed(model, example)
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
            quiet=quiet, reference_latency_ms=ref_timing.get("latency_ms"),
            reference_latency_p90_ms=ref_timing.get("latency_p90_ms"),
            int8_chosen=bool(timing["int8_chosen"]) if "int8_chosen" in timing else None,
        )

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:
        """Yield a callable running one inference of ``model`` (targets that time override)."""
        raise NotImplementedError(f"target {self.name!r} does not time")
        yield  # pragma: no cover

    def time_runs(self, model: nn.Module, example: torch.Tensor) -> dict[str, float]:
        """Latency statistics of ``model`` (empty for targets that do not time)."""
        return self._timed(model, example)[0]

    def _timed(self, model: nn.Module, example: torch.Tensor,
               reference: nn.Module | None = None) -> tuple[Any, bool]:
        """Prepare the runner(s), then time on a quiet node; also says whether it was quiet.

        Preparing (a deployed copy, an ONNX export and session) happens before the node is
        held, so only the timed runs pause the node's other work.
        """
        if not self.timed:
            return ({}, {}) if reference is not None else {}, False
        with contextlib.ExitStack() as stack:
            run = stack.enter_context(self.runner(model, example))
            ref = None if reference is None else stack.enter_context(
                self.runner(reference, example))
            with quiet_node().timing(self.protocol.quiet_timeout_s) as quiet:
                if ref is None:
                    return repeat_until_stable(run, self.protocol), quiet
                return repeat_paired(run, ref, self.protocol), quiet


def _discard(_: Any) -> None:
    """Drop a run's outputs (host-timed runners return None)."""


def _once(run: Callable[[], float | None]) -> float:
    """One run's time in ms: the device time it returns (a float), else the host's."""
    start = time.perf_counter()
    device_ms = run()
    host_ms = (time.perf_counter() - start) * 1e3
    return device_ms if isinstance(device_ms, float) else host_ms


def _good_enough(times: list[list[float]], p: Protocol, deadline: float) -> bool:
    done = len(times[0])
    if done == 0 or done < p.min_runs:
        return False  # at least one timed run, whatever the protocol says
    return (done >= p.max_runs or time.perf_counter() > deadline
            or all(summarize(t)["latency_spread"] <= p.target_spread for t in times))


def repeat_interleaved(runs: list[Callable[[], float | None]], p: Protocol
                       ) -> list[dict[str, float]]:
    """Warm up, then time ``runs`` in turn (one run of each per round) under one protocol.

    Stops when every estimate is good enough (or the rounds have used ``max_seconds``), so
    all of them saw the same machine state.
    """
    for _ in range(p.warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    deadline = time.perf_counter() + p.max_seconds
    while not _good_enough(times, p, deadline):
        for run, timed in zip(runs, times, strict=True):
            timed.append(_once(run))
    return [summarize(t) for t in times]


def repeat_until_stable(run: Callable[[], float | None], p: Protocol) -> dict[str, float]:
    """Warm up, then time ``run`` until the protocol says the estimate is good enough."""
    return repeat_interleaved([run], p)[0]


def repeat_paired(run: Callable[[], float | None], ref: Callable[[], float | None],
                  p: Protocol) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``run`` and ``ref`` alternately (run, ref, run, ...) under one protocol."""
    timing, ref_timing = repeat_interleaved([run, ref], p)
    return timing, ref_timing


class AnalyticProfiler(BaseProfiler):
    """Counted costs and artifact bytes only: no device, no timing."""

    name = "analytic"

    @property
    def runtime(self) -> str:  # noqa: D102
        return "analytic"


class TorchCPUProfiler(BaseProfiler):
    """Eager PyTorch on this machine's CPU, ``threads`` intra-op threads.

    Times the model as deployed (:func:`autocompress.export.deployable`: compressed layers'
    weights decoded once into plain layers; circulant layers keep their FFT form).
    """

    name = "cpu-torch"

    @property
    def runtime(self) -> str:  # noqa: D102
        return f"torch {torch.__version__}"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        deployed = deployable(model, dense_circulant=False)
        with torch_threads(self.threads), torch.inference_mode():
            yield lambda: _discard(deployed(example))


class OnnxRuntimeCPUProfiler(BaseProfiler):
    """The model exported to ONNX and timed in ONNX Runtime's CPU EP.

    ``int8`` picks the deployed form: False the float graph, True the int8 QDQ graph, ``"auto"``
    both, timed interleaved in one window, reporting the faster (``int8_chosen`` says which).
    int8 ranges are calibrated on ``calibration`` (the search passes training inputs; without
    it, on the timing example).
    """

    name = "cpu-onnxruntime"
    FORMS = (False, True, "auto")

    def __init__(self, threads: int = 1, protocol: Protocol | None = None,
                 int8: bool | str = False, calibration: torch.Tensor | None = None):
        super().__init__(threads, protocol)
        if not (int8 is False or int8 is True or int8 == "auto"):
            raise invalid(f"{self.name}.int8", int8, self.FORMS)
        self.int8, self.calibration = int8, calibration
        self.activation_bits = 8 if int8 is True else 32

    @property
    def runtime(self) -> str:  # noqa: D102
        import onnxruntime

        form = {True: " int8", "auto": " int8|float"}.get(self.int8, "")
        return f"onnxruntime {onnxruntime.__version__}{form}"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        with self.form_runner(model, example, self.int8 is True) as run:
            yield run

    @contextlib.contextmanager
    def form_runner(self, model: nn.Module, example: torch.Tensor, int8: bool
                    ) -> Iterator[Callable[[], float | None]]:
        """A runner of the float (or, with ``int8``, the int8 QDQ) graph of ``model``."""
        import tempfile
        from pathlib import Path

        from autocompress.export.onnx import export_onnx
        from autocompress.hardware.onnxruntime import session

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, example, path, int8=int8, calibration=self.calibration)
            s = session(path, self.threads)
        feed = {s.get_inputs()[0].name: example.detach().numpy()}
        yield lambda: _discard(s.run(None, feed))

    def _timed(self, model: nn.Module, example: torch.Tensor,
               reference: nn.Module | None = None) -> tuple[Any, bool]:
        if self.int8 != "auto":
            return super()._timed(model, example, reference)
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(self.form_runner(m, example, form))
                    for m in (model, reference) if m is not None for form in (False, True)]
            with quiet_node().timing(self.protocol.quiet_timeout_s) as quiet:
                timings = repeat_interleaved(runs, self.protocol)
        timing = faster_form(*timings[:2])
        if reference is None:
            return timing, quiet
        return (timing, faster_form(*timings[2:])), quiet

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        return super()._key(artifact + repr(self.int8).encode(), example)


def faster_form(float_timing: dict[str, float], int8_timing: dict[str, float]
                ) -> dict[str, float]:
    """The faster form's timing (by median), with ``int8_chosen`` and both medians."""
    chosen = int8_timing["latency_ms"] < float_timing["latency_ms"]
    return {**(int8_timing if chosen else float_timing), "int8_chosen": float(chosen),
            "latency_float_ms": float_timing["latency_ms"],
            "latency_int8_ms": int8_timing["latency_ms"]}


class CudaProfiler(BaseProfiler):
    """CUDA events around eager PyTorch on the current GPU (the model as deployed)."""

    name = "cuda"

    def __init__(self, threads: int = 1, protocol: Protocol | None = None):
        if not torch.cuda.is_available():
            raise ConfigError("hardware target 'cuda': no CUDA device is available here")
        super().__init__(threads, protocol)

    @property
    def runtime(self) -> str:  # noqa: D102
        return f"torch {torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name()}"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        device = torch.device("cuda")
        gpu_model = deployable(model, dense_circulant=False).to(device)
        x = example.to(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            start.record()
            gpu_model(x)
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)

        with torch.inference_mode():
            yield run


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
