"""profile(): one Measurement of a model on this CPU (a shortcut over the profilers)."""

from __future__ import annotations

import torch
from torch import nn

from autocompress.hardware.measurement import Measurement
from autocompress.hardware.registry import get_profiler
from autocompress.hardware.timing import shortcut_protocol


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
    """Measure ``model`` with eager PyTorch on the CPU (``cpu-torch``), or count only.

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
    protocol = shortcut_protocol(warmup, repeats, max_seconds)
    target = "cpu-torch" if measure else "analytic"
    return get_profiler(target, threads=threads, protocol=protocol).measure(
        model, example, base, extra)
