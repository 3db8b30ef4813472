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
    fastest_form,
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


def graph_module(model: nn.Module, example: torch.Tensor, *, int8: bool | str,
                 calibration: torch.Tensor | None = None, threads: int = 1) -> OnnxRuntimeModule:
    """``model`` exported in a form of :func:`~autocompress.export.onnx.export_onnx` as a module.

    ``int8``: False (float), True / ``"static"`` (int8 QDQ calibrated on ``calibration``) or
    ``"dynamic"``.
    """
    from autocompress.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, example, path, int8=int8, calibration=calibration)
        return OnnxRuntimeModule(session(path, threads))


def _discard(_: Any) -> None:
    """Drop a run's outputs (host-timed runners return None)."""
class OnnxRuntimeCPUProfiler(BaseProfiler):
    """The model exported to ONNX and timed in ONNX Runtime's CPU EP.

    ``int8`` picks the deployed form: False the float graph, True (or ``"static"``) the int8
    QDQ graph, ``"dynamic"`` the dynamically quantized one, ``"auto"`` all three, timed
    interleaved in one window, reporting the fastest (``int8_chosen`` and
    ``int8_dynamic_chosen`` say which). Static int8 ranges are calibrated on ``calibration``
    (the search passes training inputs; without it, on the timing example).
    """

    name = "cpu-onnxruntime"
    FORMS = (False, True, "static", "dynamic", "auto")

    def __init__(self, threads: int = 1, protocol: Protocol | None = None,
                 int8: bool | str = False, calibration: torch.Tensor | None = None):
        super().__init__(threads, protocol)
        if not any(int8 is f if isinstance(f, bool) else int8 == f for f in self.FORMS):
            raise invalid(f"{self.name}.int8", int8, self.FORMS)
        self.int8, self.calibration = int8, calibration
        self.activation_bits = 32 if self.forms[0] == "float" or len(self.forms) > 1 else 8

    @property
    def forms(self) -> tuple[str, ...]:
        """The graph forms timed: one, or all three for ``int8: auto``."""
        from autocompress.export.onnx import FORMS, graph_form

        return FORMS if self.int8 == "auto" else (graph_form(self.int8),)

    @property
    def layer_form(self) -> str:
        """The form per-layer times are taken of: the one timed, static int8 for ``auto``."""
        return self.forms[0] if len(self.forms) == 1 else "static"

    @property
    def runtime(self) -> str:  # noqa: D102
        import onnxruntime

        form = "|".join(f if f != "static" else "int8" for f in self.forms)
        form = {"float": "", "int8": " int8"}.get(form, f" {form}")
        return f"onnxruntime {onnxruntime.__version__}{form}"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        with self.form_runner(model, example, self.forms[0]) as run:
            yield run

    @contextlib.contextmanager
    def form_runner(self, model: nn.Module, example: torch.Tensor, form: bool | str
                    ) -> Iterator[Callable[[], float | None]]:
        """A runner of one graph form of ``model`` (``float``, ``static`` or ``dynamic``)."""
        from autocompress.export.onnx import export_onnx

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, example, path, int8=form, calibration=self.calibration)
            s = session(path, self.threads)
        feed = {s.get_inputs()[0].name: example.detach().numpy()}
        yield lambda: _discard(s.run(None, feed))

    def _timed(self, model: nn.Module, example: torch.Tensor,
               reference: nn.Module | None = None) -> tuple[Any, bool]:
        if self.forms == ("float",):
            return super()._timed(model, example, reference)
        if len(self.forms) == 1:  # one int8 form: say which, as auto does
            timed, quiet = super()._timed(model, example, reference)
            name = self.forms[0]
            if reference is None:
                return fastest_form({name: timed}), quiet
            return tuple(fastest_form({name: t}) for t in timed), quiet
        models = [m for m in (model, reference) if m is not None]
        with contextlib.ExitStack() as stack:
            runs = [stack.enter_context(self.form_runner(m, example, form))
                    for m in models for form in self.forms]
            with quiet_node().timing(self.protocol.quiet_timeout_s) as quiet:
                timings = repeat_interleaved(runs, self.protocol)
        n = len(self.forms)
        chosen = [fastest_form(dict(zip(self.forms, timings[i * n:(i + 1) * n], strict=True)))
                  for i in range(len(models))]
        return (chosen[0] if reference is None else tuple(chosen)), quiet

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        return super()._key(artifact + repr(self.int8).encode(), example)

    def layer_times(self, model: nn.Module, example: torch.Tensor,
                    leaves: set[str]) -> LayerTimes:  # noqa: D102
        return onnxruntime_layer_times(model, example, self, leaves)

    def session(self, path: str | os.PathLike, profile_prefix: str | os.PathLike | None = None):
        """A session of the exported file at ``path`` with this target's threads."""
        return session(path, self.threads, profile_prefix)
