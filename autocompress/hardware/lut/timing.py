"""Timing eager kernels for a latency table: in rotation with others, as layers run in a model.

Timed alone in a tight loop, a small layer finds the runtime's code and data hot in the CPU's
caches and branch predictors; inside a model the layers before it have evicted them. On LeNet-5
in eager PyTorch, compressed layers (whose ``forward`` runs more Python) took 20-40 % longer in
the model than alone, so sums of hot timings under-predicted compressed plans by up to 20 %.
Here every timed call is preceded by calls of *other* modules: kernels are measured in groups of
``GROUP``, each group in shuffled sweeps together with filler layers up to ``ROTATION`` modules,
and only the measured kernels' own calls are timed. The rotation has the same length whatever
the number of kernels measured at once, so a kernel measured alone on demand and one measured in
a batch of hundreds see the same conditions.

An ONNX Runtime session runs its nodes back to back in native code, where a kernel alone is as
hot as in the model: exported kernels are timed by the profiler itself (see ``lut``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import torch
from torch import nn

from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.timing import summarize, torch_threads

Run = Callable[[], object]
GROUP, ROTATION = 16, 32  # kernels timed together; modules run per sweep (fillers pad it)
SEED = 0


class Isolated(nn.Module):
    """The one layer a kernel measurement runs, held as a child.

    Exporters treat the layer as inside a model: compressed layers are materialised as dense
    ones, not exported as fake-quantize ops.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Probe(nn.Module):
    """Reads the input and returns one element: an exported runtime's fixed cost per run.

    An Identity would add a copy of the input that no layer makes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)[:1]


def filler_layers() -> list[tuple[nn.Module, torch.Tensor]]:
    """``ROTATION - 1`` small layers of the usual kinds and sizes, never timed themselves."""
    generator = torch.Generator().manual_seed(SEED)
    layers = []
    for size in (8, 16):
        image = torch.randn(1, 4, size, size, generator=generator)
        flat = torch.randn(1, 12 * size, generator=generator)
        layers += [(nn.Conv2d(4, 8, 3), image), (nn.Conv2d(4, 4, 3, groups=4), image),
                   (nn.Conv2d(4, 8, 1), image), (nn.ReLU(), image), (nn.MaxPool2d(2), image),
                   (nn.AdaptiveAvgPool2d(1), image), (nn.BatchNorm2d(4), image),
                   (nn.Flatten(), image), (nn.Linear(12 * size, 32), flat),
                   (nn.Linear(12 * size, 8), flat), (nn.GELU(), flat),
                   (nn.LayerNorm(12 * size), flat), (nn.Tanh(), flat), (nn.Softmax(-1), flat),
                   (nn.Dropout(), flat), (nn.Identity(), flat)]
    return [(Isolated(layer).eval(), x) for layer, x in layers[:ROTATION - 1]]


def sweep(profiler: BaseProfiler, jobs: dict[str, tuple[nn.Module, torch.Tensor]],
          protocol: Protocol) -> dict[str, dict[str, float]]:
    """Median, p90, spread and runs of each job's calls, timed in shuffled sweeps.

    The modules run eagerly, in eval mode under ``inference_mode`` with the profiler's thread
    count (as ``cpu-torch`` runs a model). A group's sweeps stop after ``protocol.max_runs``,
    or once each of its jobs has ``min_runs`` timings and either all their spreads are below
    ``target_spread`` or ``max_seconds`` per job have passed.
    """
    runs = {k: _call(m.eval(), x) for k, (m, x) in jobs.items()}
    fillers = [_call(m, x) for m, x in filler_layers()]
    keys, out = list(runs), {}
    with torch_threads(profiler.threads), torch.inference_mode():
        for start in range(0, len(keys), GROUP):
            group = {k: runs[k] for k in keys[start:start + GROUP]}
            padding = fillers[:ROTATION - len(group)]
            out.update(_sweeps(group, padding, protocol))
    return out


def _call(module: nn.Module, x: torch.Tensor) -> Run:
    return lambda: module(x)


def _sweeps(runs: dict[str, Run], fillers: list[Run],
            protocol: Protocol) -> dict[str, dict[str, float]]:
    order: list[tuple[str | None, Run]] = [*runs.items(), *((None, f) for f in fillers)]
    rng = random.Random(SEED)
    for _ in range(max(1, protocol.warmup // 2)):
        for _, run in order:
            run()
    times: dict[str, list[float]] = {k: [] for k in runs}
    deadline = time.perf_counter() + protocol.max_seconds * len(runs)
    for sweep_index in range(protocol.max_runs):
        rng.shuffle(order)
        for key, run in order:
            start = time.perf_counter()
            run()
            if key is not None:
                times[key].append((time.perf_counter() - start) * 1e3)
        if sweep_index + 1 >= protocol.min_runs and (
                time.perf_counter() > deadline
                or all(summarize(t)["latency_spread"] <= protocol.target_spread
                       for t in times.values())):
            break
    return {k: summarize(t) for k, t in times.items()}


__all__ = ["GROUP", "ROTATION", "Isolated", "Probe", "filler_layers", "sweep"]
