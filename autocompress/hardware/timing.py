"""The one timing loop every profiler uses: warm-up, repeated runs, order statistics.

A run is a zero-argument callable that returns its own device time in milliseconds (e.g. CUDA
events) or None to be timed on the host with ``time.perf_counter``. Timing stops after
``max_runs`` runs, or once ``min_runs`` are done and either every relative interquartile spread
is below ``target_spread`` or ``max_seconds`` have passed (see :class:`Protocol`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager

import torch

from autocompress.hardware.config import Protocol

Run = Callable[[], "float | None"]


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


def once(run: Run) -> float:
    """One run's time in ms: the device time it returns (a float), else the host's."""
    start = time.perf_counter()
    device_ms = run()
    host_ms = (time.perf_counter() - start) * 1e3
    return device_ms if isinstance(device_ms, float) else host_ms


def good_enough(times: list[list[float]], p: Protocol, deadline: float) -> bool:
    """Whether timing may stop: enough runs, and stable, out of runs or out of time."""
    done = len(times[0])
    if done == 0 or done < p.min_runs:
        return False  # at least one timed run, whatever the protocol says
    return (done >= p.max_runs or time.perf_counter() > deadline
            or all(summarize(t)["latency_spread"] <= p.target_spread for t in times))


def repeat_interleaved(runs: list[Run], p: Protocol) -> list[dict[str, float]]:
    """Warm up, then time ``runs`` in turn (one run of each per round) under one protocol.

    Stops when every estimate is good enough (or the rounds have used ``max_seconds``), so
    all of them saw the same machine state.
    """
    for _ in range(p.warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    deadline = time.perf_counter() + p.max_seconds
    while not good_enough(times, p, deadline):
        for run, timed in zip(runs, times, strict=True):
            timed.append(once(run))
    return [summarize(t) for t in times]


def repeat_until_stable(run: Run, p: Protocol) -> dict[str, float]:
    """Warm up, then time ``run`` until the protocol says the estimate is good enough."""
    return repeat_interleaved([run], p)[0]


def repeat_paired(run: Run, ref: Run, p: Protocol) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``run`` and ``ref`` alternately (run, ref, run, ...) under one protocol."""
    timing, ref_timing = repeat_interleaved([run, ref], p)
    return timing, ref_timing


# each ONNX form's median under its own metric name (the static int8 one keeps its old name)
FORM_LATENCY = {"float": "latency_float_ms", "static": "latency_int8_ms",
                "dynamic": "latency_int8_dynamic_ms"}


def fastest_form(timings: Mapping[str, dict[str, float]]) -> dict[str, float]:
    """The fastest form's timing (by median), saying which it is and every form's median.

    Args:
        timings: Each form's timing (``float``, ``static``, ``dynamic``), from one window.

    Returns:
        The fastest form's statistics plus ``int8_chosen`` (1.0 for an int8 form),
        ``int8_dynamic_chosen`` (1.0 for the dynamic one) and ``latency_<form>_ms`` of each.
    """
    form = min(timings, key=lambda f: timings[f]["latency_ms"])
    return {**timings[form], "int8_chosen": float(form != "float"),
            "int8_dynamic_chosen": float(form == "dynamic"),
            **{FORM_LATENCY[f]: t["latency_ms"] for f, t in timings.items()}}


def chosen_form(measured: Mapping[str, float]) -> str:
    """The form a measurement's ``int8_chosen`` / ``int8_dynamic_chosen`` name."""
    if measured.get("int8_chosen") != 1.0:
        return "float"
    return "dynamic" if measured.get("int8_dynamic_chosen") == 1.0 else "static"


def shortcut_protocol(warmup: int, repeats: int, max_seconds: float) -> Protocol:
    """The protocol of the one-call shortcuts: at least 5 runs, no early stop on spread."""
    return Protocol(warmup=warmup, min_runs=min(5, repeats), max_runs=repeats,
                    max_seconds=max_seconds, target_spread=0.0)


__all__ = ["FORM_LATENCY", "chosen_form", "fastest_form", "once", "repeat_interleaved",
           "repeat_paired", "repeat_until_stable", "shortcut_protocol", "summarize",
           "torch_threads"]
