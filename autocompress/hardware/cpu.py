"""CPU timing helpers: thread control and order statistics of timings."""

from __future__ import annotations

import statistics
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int):
    """Run the block with ``threads`` intra-op threads, restoring the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
