"""Measured latency of eager PyTorch on this machine's CPU."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


@contextmanager
def torch_threads(threads: int):
    """Run the block with ``threads`` intra-op threads, restoring the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_latency(
    model: nn.Module,
    example: Any,
    *,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    max_seconds: float = 2.0,
) -> dict[str, float]:
    """Time ``model(example)`` after warm-up; stop after ``repeats`` runs or ``max_seconds``.

    Returns:
        ``latency_ms`` (median), ``latency_p90_ms``, ``latency_spread`` (IQR / median) and
        ``runs``. At least 5 runs are always timed.
    """
    inputs = example if isinstance(example, tuple) else (example,)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch_threads(threads), torch.inference_mode():
            for _ in range(warmup):
                model(*inputs)
            deadline = time.perf_counter() + max_seconds
            while len(times) < repeats and (len(times) < 5 or time.perf_counter() < deadline):
                start = time.perf_counter()
                model(*inputs)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return summarize(times)


def summarize(times_ms: list[float]) -> dict[str, float]:
    """Median, p90 and relative interquartile spread of a list of timings."""
    ordered = sorted(times_ms)
    median = statistics.median(ordered)
    q1, _, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else (median,) * 3
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "latency_ms": median,
        "latency_p90_ms": p90,
        "latency_spread": (q3 - q1) / median if median > 0 else 0.0,
        "runs": float(len(ordered)),
    }
