"""profile(): one Measurement of a model: counted costs, artifact bytes and measured latency."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autocompress.export import to_bytes
from autocompress.hardware.analytic import count_macs, count_params, weight_bytes
from autocompress.hardware.cpu import measure_latency
from autocompress.hardware.measurement import Measurement


def profile(
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    max_seconds: float = 2.0,
    measure: bool = True,
    base: dict | None = None,
    extra: dict | None = None,
) -> Measurement:
    """Measure ``model`` on the CPU with eager PyTorch.

    Args:
        model: The (compressed) model.
        example: A batch of inputs; its batch size is the timed batch size.
        threads: Intra-op threads during timing.
        warmup: Untimed runs first.
        repeats: Timed runs (fewer if ``max_seconds`` passes first, at least 5).
        max_seconds: Time cap of the timed runs.
        measure: Skip latency (analytic costs and artifact bytes only) when False.
        base: Factory reference of the model, when it was not built by the zoo.
        extra: Metadata stored in the artifact (counted in its bytes, as when saved).
    """
    single = example[:1]
    timing: dict[str, Any] = {}
    if measure:
        timing = measure_latency(model, example, threads=threads, warmup=warmup,
                                 repeats=repeats, max_seconds=max_seconds)
    return Measurement(
        params=count_params(model),
        macs=count_macs(model, single),
        weight_bytes=weight_bytes(model),
        size_bytes=len(to_bytes(model, base, extra)),
        latency_ms=timing.get("latency_ms"),
        latency_p90_ms=timing.get("latency_p90_ms"),
        latency_spread=timing.get("latency_spread"),
        runs=int(timing.get("runs", 0)),
        batch_size=int(example.shape[0]),
        threads=threads,
        runtime=f"torch {torch.__version__}",
    )
