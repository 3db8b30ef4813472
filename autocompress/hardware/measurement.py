"""Measurement: what a profiler reports about one model on one target."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass


def current_node() -> str:
    """The Ray node id this process runs on ("" outside Ray; never imports Ray itself)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


@dataclass(frozen=True)
class Measurement:
    """Measured and counted costs of a model.

    Attributes:
        params: Number of parameters.
        macs: Multiply-accumulates of one sample's forward pass.
        bops: Bit operations of one sample's forward pass: each MAC weighted by its weight and
            activation bit widths (``bits_w * bits_a``; float32 layers count 32 x 32).
        weight_bytes: Bytes of the weights at their planned bit widths (no container overhead).
        size_bytes: Bytes of the compressed artifact file (the size budgets use).
        latency_ms: Median latency of one batch, in milliseconds (None when not measured).
        latency_p90_ms: 90th percentile latency.
        latency_spread: Interquartile range divided by the median (noise indicator).
        peak_mem_mb: Peak memory of one batch's inference in MiB: weights at their stored
            precision plus the largest set of activations alive at once (estimated from the
            traced shapes; the same for every runtime).
        runs: Number of timed runs.
        batch_size: Batch size of the timed runs.
        threads: Intra-op threads used.
        runtime: Runtime and its version, e.g. ``torch 2.13.0+cpu``.
        noisy: The timings' spread stayed above the protocol's noise threshold.
        quiet: The node's other compute work (training batches, candidate builds) was paused
            while timing (:mod:`autocompress.hardware.quiet`).
        cached: Served from the profiler's cache (an identical model was measured before).
        node: The Ray node id the timing ran on ("" when not run through Ray).
        target: The registered target name that produced the measurement.
        reference_latency_ms: Median latency of the reference model timed paired with this
            one (``measure(..., reference=...)``), from the same time window; None otherwise.
        reference_latency_p90_ms: Its 90th percentile.
        int8_chosen: Which ONNX form the latency is of, on ``cpu-onnxruntime`` targets that
            time an int8 form (the fastest of several with ``int8: auto``): True for an int8
            graph, False for float; None for other targets and float-only ones.
        int8_dynamic_chosen: With ``int8_chosen``, True when that int8 graph is the dynamic
            one, False for static QDQ; None where ``int8_chosen`` is.
    """

    params: int
    macs: int
    weight_bytes: int
    size_bytes: int
    bops: int = 0
    peak_mem_mb: float = 0.0
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_spread: float | None = None
    runs: int = 0
    batch_size: int = 1
    threads: int = 1
    runtime: str = ""
    noisy: bool = False
    quiet: bool = False
    cached: bool = False
    node: str = ""
    target: str = ""
    reference_latency_ms: float | None = None
    reference_latency_p90_ms: float | None = None
    int8_chosen: bool | None = None
    int8_dynamic_chosen: bool | None = None

    @property
    def size_kb(self) -> float:
        """Artifact size in KiB (1 KB = 1024 bytes, as in the compression literature)."""
        return self.size_bytes / 1024

    def metrics(self) -> dict[str, float]:
        """Numeric fields as a flat dict (for budgets, Tune results and MLflow)."""
        out = {k: v for k, v in dataclasses.asdict(self).items()
               if isinstance(v, (int, float)) and k != "cached"}
        out["size_kb"] = self.size_kb
        return {k: float(v) for k, v in out.items() if v is not None}

    def anchored(self, baseline_ms: float | None,
                 baseline_p90_ms: float | None = None) -> dict[str, float]:
        """:meth:`metrics` with the latency anchored to the baseline's, when timed paired.

        A measurement paired with the baseline (``reference_latency_ms``) knows its latency
        *ratio* to the baseline in one time window, free of the machine's drift. Anchored,
        ``latency_ms`` is that ratio times ``baseline_ms`` (the baseline's latency as the
        search recorded it), i.e. the candidate's latency in the conditions the baseline was
        timed in; the raw median stays as ``latency_measured_ms`` and the ratio as
        ``latency_ratio`` (and its inverse as ``speedup``), which relative budgets bound.
        Likewise for p90. Unpaired measurements are returned unchanged.
        """
        out = self.metrics()
        if not (self.latency_ms and self.reference_latency_ms and baseline_ms):
            return out
        ratio = self.latency_ms / self.reference_latency_ms
        out.update(latency_measured_ms=self.latency_ms, latency_ratio=ratio,
                   speedup=1.0 / ratio, latency_ms=ratio * baseline_ms)
        if self.latency_p90_ms and self.reference_latency_p90_ms and baseline_p90_ms:
            out.update(latency_measured_p90_ms=self.latency_p90_ms,
                       latency_p90_ms=self.latency_p90_ms / self.reference_latency_p90_ms
                       * baseline_p90_ms)
        return out
