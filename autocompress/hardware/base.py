"""The profiler interface: what every hardware target measures, and how.

Contract of a profiler (checked for every registered target by ``tests/test_profilers.py``;
targets are selected by name through :mod:`autocompress.hardware.registry`):

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
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from autocompress.data.batches import batch_size_of, take
from autocompress.errors import invalid
from autocompress.export import to_bytes
from autocompress.hardware.analytic import count_params, trace_costs, weight_bytes
from autocompress.hardware.config import Protocol
from autocompress.hardware.measurement import Measurement, current_node
from autocompress.hardware.quiet import quiet_node
from autocompress.hardware.timing import repeat_paired, repeat_until_stable


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
        digest.update(repr((_shapes(example), self.threads, self.protocol)).encode())
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
        per_sample = trace_costs(model, take(example, 1), self.activation_bits)
        batch = trace_costs(model, example, self.activation_bits)
        weights = weight_bytes(model)
        return Measurement(
            params=count_params(model), macs=per_sample.macs, bops=per_sample.bops,
            peak_mem_mb=(weights + batch.peak_activation_bytes) / 2**20,
            weight_bytes=weights, size_bytes=size, target=self.name, node=current_node(),
            latency_ms=timing.get("latency_ms"), latency_p90_ms=timing.get("latency_p90_ms"),
            latency_spread=timing.get("latency_spread"), runs=int(timing.get("runs", 0)),
            batch_size=batch_size_of(example), threads=self.threads, runtime=self.runtime,
            noisy=bool(timing and timing["latency_spread"] > self.protocol.noisy_spread),
            quiet=quiet, reference_latency_ms=ref_timing.get("latency_ms"),
            reference_latency_p90_ms=ref_timing.get("latency_p90_ms"),
            int8_chosen=bool(timing["int8_chosen"]) if "int8_chosen" in timing else None,
            int8_dynamic_chosen=(bool(timing["int8_dynamic_chosen"])
                                 if "int8_dynamic_chosen" in timing else None),
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

    def layer_times(self, model: nn.Module, example: torch.Tensor, leaves: set[str]
                    ) -> tuple[dict[str, float] | None, str, int]:
        """Median ms per leaf layer (and the synthetic rows), how it was measured, and runs.

        Used by :func:`autocompress.hardware.breakdown.layer_breakdown`; targets that cannot
        time layer by layer return ``(None, "", 0)``.
        """
        return None, "", 0


__all__ = ["BaseProfiler", "Protocol"]


def _shapes(example: Any) -> Any:
    """The shapes of a timing example: a tensor, or a tuple / dict of them (several inputs)."""
    if isinstance(example, torch.Tensor):
        return tuple(example.shape)
    if isinstance(example, dict):
        return tuple((key, _shapes(value)) for key, value in sorted(example.items()))
    if isinstance(example, (tuple, list)):
        return tuple(_shapes(value) for value in example)
    return repr(example)
