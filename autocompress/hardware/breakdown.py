"""Per-layer breakdown of a model on a target: measured latency share, artifact bytes, MACs.

Every number is measured or counted on the real thing:

* latency per layer is timed in-situ on the target, over the profiler's own warm-up / repeat
  protocol: forward pre/post hooks around every leaf module (``cpu-torch`` with
  ``time.perf_counter``, ``cuda`` with CUDA events), or ONNX Runtime's own profiler
  (``cpu-onnxruntime``, float or int8), whose kernels are mapped back to module names. Each
  row is the median over the timed runs of that layer's time in a run; ``(other)`` is the
  median of the time not inside any leaf module (functional glue, layout changes, runtime
  overhead; in ONNX Runtime, kernels that belong to no layer such as layout transposes, while
  ``(runtime)`` is the run's time outside every kernel: session overhead, the profiler's
  included), so the rows add up to the instrumented total and shares are row / total.
  Instrumented runs are slower than plain ones: the whole-model latency in ``totals`` is the
  profiler's normal, uninstrumented measurement;
* bytes per layer are the layer's tensors in the compressed artifact
  (:func:`autocompress.export.size_breakdown`); ``(header)`` holds the spec and index, so the
  rows add up to the artifact file's size;
* MACs per sample are counted on a real forward pass, as :mod:`~autocompress.hardware.analytic`
  counts them.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from autocompress.data.batches import take
from autocompress.export import size_breakdown, to_bytes
from autocompress.hardware.analytic import hooked_forward, module_macs, weight_bits
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.layer_timing import OTHER, RUNTIME
from autocompress.hardware.measurement import Measurement

HEADER = "(header)"
_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer (or ``(other)``, ``(runtime)``, ``(header)``) of a breakdown.

    Attributes:
        name: The module's qualified name, e.g. ``features.0``.
        type: The module's class name ("" for the synthetic rows).
        latency_ms: Median time spent in the layer per run (None: the target does not time,
            or the row is ``(header)``).
        share: ``latency_ms`` divided by the instrumented total (None with no latency).
        bytes: Bytes of the layer's tensors in the artifact.
        macs: Multiply-accumulates per sample.
        params: Parameters of the layer.
        bits: Stored weight bit width (None for layers without parameters).
    """

    name: str
    type: str
    latency_ms: float | None
    share: float | None
    bytes: int
    macs: int
    params: int
    bits: int | None


@dataclass(frozen=True)
class Breakdown:
    """Per-layer rows and whole-model totals of one model on one target.

    Attributes:
        layers: Leaf layers in module order, then ``(other)``, ``(runtime)`` (ONNX Runtime
            only) and ``(header)``.
        totals: The profiler's normal (uninstrumented) measurement of the whole model.
        instrumented_ms: Sum of the rows' latencies: the instrumented runs' total (None when
            not timed).
        method: How per-layer latency was measured ("" when it was not).
        runs: Number of instrumented runs the medians are taken over.
    """

    layers: tuple[LayerRow, ...]
    totals: Measurement
    instrumented_ms: float | None
    method: str
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``layers`` (list of rows), ``totals`` and how latency was measured."""
        totals = {**dataclasses.asdict(self.totals), "size_kb": self.totals.size_kb,
                  "instrumented_ms": self.instrumented_ms}
        return {"target": self.totals.target, "runtime": self.totals.runtime,
                "method": self.method, "runs": self.runs,
                "layers": [dataclasses.asdict(row) for row in self.layers], "totals": totals}


def layer_breakdown(model: nn.Module, example: torch.Tensor, profiler: BaseProfiler,
                    base: dict | None = None, extra: dict | None = None) -> Breakdown:
    """Measure ``model`` layer by layer on ``profiler``'s target.

    Args:
        model: The (compressed) model; it is not modified and its mode is restored.
        example: A batch of inputs (its batch size is the timed batch size).
        profiler: The target; ``cpu-torch``, ``cpu-onnxruntime`` and ``cuda`` time each layer,
            other targets give rows without latency.
        base: The model's factory reference, when it was not built by the zoo.
        extra: Metadata stored in the artifact (counted in its bytes, as when saved).

    Returns:
        The rows and the whole-model totals.
    """
    totals = profiler.measure(model, example, base, extra)
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    times, method, runs = profiler.layer_times(model, example, set(leaves))
    macs = _layer_macs(model, take(example, 1), leaves)
    sizes = _layer_bytes(to_bytes(model, base, extra), leaves)
    rows = [_row(name, m, times, sizes.get(name, 0), macs.get(name, 0))
            for name, m in leaves.items()]
    rows += _synthetic_rows(times, sizes, macs)
    if times is None:
        return Breakdown(tuple(rows), totals, None, method, runs)
    total = sum(r.latency_ms for r in rows if r.latency_ms is not None)
    rows = [r if r.latency_ms is None else
            dataclasses.replace(r, share=r.latency_ms / total if total > 0 else 0.0)
            for r in rows]
    return Breakdown(tuple(rows), totals, total, method, runs)


def _synthetic_rows(times: dict[str, float] | None, sizes: dict[str, int],
                    macs: dict[str, int]) -> list[LayerRow]:
    """``(other)``, ``(runtime)`` when measured, and ``(header)`` (bytes only)."""
    rows = [LayerRow(OTHER, "", None if times is None else times.get(OTHER, 0.0), None,
                     sizes.get(OTHER, 0), macs.get(OTHER, 0), 0, None)]
    if times is not None and RUNTIME in times:
        rows.append(LayerRow(RUNTIME, "", times[RUNTIME], None, 0, 0, 0, None))
    return [*rows, LayerRow(HEADER, "", None, None, sizes[HEADER], 0, 0, None)]


def _row(name: str, module: nn.Module, times: dict[str, float] | None, size: int,
         macs: int) -> LayerRow:
    params = sum(p.numel() for p in module.parameters())
    latency = times.get(name, 0.0) if times is not None else None
    return LayerRow(name, type(module).__name__, latency, None, size, macs, params,
                    weight_bits(module) if params else None)


def _layer_macs(model: nn.Module, sample: torch.Tensor,
                leaves: dict[str, nn.Module]) -> dict[str, int]:
    """MACs per sample of each leaf; costed non-leaf modules count as ``(other)``."""
    macs: dict[str, int] = defaultdict(int)
    names = {id(m): n for n, m in leaves.items()}

    def counted(module, inputs, output):
        macs[names.get(id(module), OTHER)] += module_macs(module, output)

    hooked_forward(model, sample, [m.register_forward_hook(counted) for m in model.modules()
                                   if isinstance(m, _COUNTED) or hasattr(m, "macs_per_sample")])
    return dict(macs)


def _layer_bytes(artifact: bytes, leaves: dict[str, nn.Module]) -> dict[str, int]:
    """Artifact bytes per leaf; state owned by a non-leaf module counts as ``(other)``."""
    sizes: dict[str, int] = defaultdict(int)
    for owner, size in size_breakdown(artifact).items():
        sizes[owner if owner in leaves or owner == HEADER else OTHER] += size
    return dict(sizes)
