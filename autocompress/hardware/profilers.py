"""The built-in eager targets: counted costs only, PyTorch on the CPU, PyTorch on a GPU.

The interface and contract are :class:`autocompress.hardware.base.BaseProfiler`'s; targets are
selected by name through :mod:`autocompress.hardware.registry` (re-exported here with the
timing loop, for callers of the older single-module layout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.export import deployable
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.layer_timing import LayerTimes, hooked_layer_times
from autocompress.hardware.registry import PROFILERS, get_profiler
from autocompress.hardware.timing import (
    repeat_interleaved,
    repeat_paired,
    repeat_until_stable,
    torch_threads,
)


def _discard(_: object) -> None:
    """Drop a run's outputs (host-timed runners return None)."""


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
        args = example if isinstance(example, tuple) else (example,)  # several positional inputs
        with torch_threads(self.threads), torch.inference_mode():
            yield lambda: _discard(deployed(*args))

    def layer_times(self, model: nn.Module, example: torch.Tensor,
                    leaves: set[str]) -> LayerTimes:  # noqa: D102
        return hooked_layer_times(model, example, self, cuda=False)


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

    def layer_times(self, model: nn.Module, example: torch.Tensor,
                    leaves: set[str]) -> LayerTimes:  # noqa: D102
        return hooked_layer_times(model, example, self, cuda=True)


__all__ = ["PROFILERS", "AnalyticProfiler", "BaseProfiler", "CudaProfiler", "Protocol",
           "TorchCPUProfiler", "get_profiler", "repeat_interleaved", "repeat_paired",
           "repeat_until_stable"]
