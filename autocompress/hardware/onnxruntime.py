"""Measured latency in ONNX Runtime on this machine's CPU (the deploy runtime of most edge CPUs).

The ``cpu-onnxruntime`` target (:class:`OnnxRuntimeCPUProfiler`), its sessions, and a shortcut
timing one exported file under the profilers' timing loop.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.errors import invalid
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.layer_timing import LayerTimes, onnxruntime_layer_times
from autocompress.hardware.quiet import quiet_node
from autocompress.hardware.timing import (
    faster_form,
    repeat_interleaved,
    repeat_until_stable,
    shortcut_protocol,
)


def session(path: str | os.PathLike, threads: int = 1,
            profile_prefix: str | os.PathLike | None = None):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and full optimisation.

    With ``profile_prefix``, ONNX Runtime's own profiler records every kernel to a JSON trace
    there (``session.end_profiling()`` returns its path).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, str(profile_prefix)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(path: str | os.PathLike, inputs: torch.Tensor, threads: int = 1) -> np.ndarray:
    """Outputs of the ONNX model on ``inputs``."""
    s = session(path, threads)
    return s.run(None, {s.get_inputs()[0].name: inputs.detach().numpy()})[0]


def measure_onnx_latency(path: str | os.PathLike, example: torch.Tensor, *, threads: int = 1,
                         warmup: int = 10, repeats: int = 50,
                         max_seconds: float = 2.0) -> dict[str, float]:
    """Median / p90 / spread of ``session.run`` on ``example`` (the profilers' timing loop)."""
    s = session(path, threads)
    feed = {s.get_inputs()[0].name: example.detach().numpy()}
    protocol = shortcut_protocol(warmup, repeats, max_seconds)
    return repeat_until_stable(lambda: s.run(None, feed), protocol)


class OnnxRuntimeModule(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call: what a deployed graph computes.

    Lets any metric that evaluates modules score the exported graph itself (e.g. the int8 QDQ
    form, whose static activation ranges can cost accuracy the PyTorch model does not show).
    """

    def __init__(self, ort_session: Any):
        super().__init__()
        self.session = ort_session
        self.names = [i.name for i in ort_session.get_inputs()]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        feed = {n: x.detach().cpu().numpy() for n, x in zip(self.names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])


def graph_module(model: nn.Module, example: torch.Tensor, *, int8: bool,
                 calibration: torch.Tensor | None = None, threads: int = 1) -> OnnxRuntimeModule:
    """``model`` exported (float, or int8 QDQ calibrated on ``calibration``) as a module."""
    from autocompress.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, example, path, int8=int8, calibration=calibration)
        return OnnxRuntimeModule(session(path, threads))


def _discard(_: Any) -> None:
    """Drop a run's outputs (host-timed runners return None)."""
class OnnxRuntimeCPUProfiler(BaseProfiler):
    """The model exported to ONNX and timed in ONNX Runtime's CPU EP.

    ``int8`` picks the deployed form: False the float graph, True the int8 QDQ graph, ``"auto"``
    both, timed interleaved in one window, reporting the faster (``int8_chosen`` says which).
    int8 ranges are calibrated on ``calibration`` (the search passes training inputs; without
    it, on the timing example).
    """

    name = "cpu-onnxruntime"
    FORMS = (False, True, "auto")

    def __init__(self, threads: int = 1, protocol: Protocol | None = None,
                 int8: bool | str = False, calibration: torch.Tensor | None = None):
        super().__init__(threads, protocol)
        if not (int8 is False or int8 is True or int8 == "auto"):
            raise invalid(f"{self.name}.int8", int8, self.FORMS)
        self.int8, self.calibration = int8, calibration
        self.activation_bits = 8 if int8 is True else 32

    @property
    def runtime(self) -> str:  # noqa: D102
        import onnxruntime

        form = {True: " int8", "auto": " int8|float"}.get(self.int8, "")
        return f"onnxruntime {onnxruntime.__version__}{form}"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        with self.form_runner(model, example, self.int8 is True) as run:
            yield run

    @contextlib.contextmanager
    def form_runner(self, model: nn.Module, example: torch.Tensor, int8: bool
                    ) -> Iterator[Callable[[], float | None]]:
        """A runner of the float (or, with ``int8``, the int8 QDQ) graph of ``model``."""
        from autocompress.export.onnx import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, example, path, int8=int8, calibration=self.calibration)
            s = session(path, self.threads)
        feed = {s.get_inputs()[0].name: example.detach().numpy()}
        yield lambda: _discard(s.run(None, feed))

    def _timed(self, model: nn.Module, example: torch.Tensor,
               reference: nn.Module | None = None) -> tuple[Any, bool]:
        if self.int8 != "auto":
            return super()._timed(model, example, reference)
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(self.form_runner(m, example, form))
                    for m in (model, reference) if m is not None for form in (False, True)]
            with quiet_node().timing(self.protocol.quiet_timeout_s) as quiet:
                timings = repeat_interleaved(runs, self.protocol)
        timing = faster_form(*timings[:2])
        if reference is None:
            return timing, quiet
        return (timing, faster_form(*timings[2:])), quiet

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        return super()._key(artifact + repr(self.int8).encode(), example)

    def layer_times(self, model: nn.Module, example: torch.Tensor,
                    leaves: set[str]) -> LayerTimes:  # noqa: D102
        return onnxruntime_layer_times(model, example, self, leaves)

    def session(self, path: str | os.PathLike, profile_prefix: str | os.PathLike | None = None):
        """A session of the exported file at ``path`` with this target's threads."""
        return session(path, self.threads, profile_prefix)
