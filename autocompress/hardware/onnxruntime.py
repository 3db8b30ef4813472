"""Measured latency in ONNX Runtime on this machine's CPU (the deploy runtime of most edge CPUs)."""

from __future__ import annotations

import os

import numpy as np
import torch


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
    """Median / p90 / spread of ``session.run`` on ``example`` (the profilers' protocol)."""
    from autocompress.hardware.profilers import Protocol, repeat_until_stable

    s = session(path, threads)
    feed = {s.get_inputs()[0].name: example.detach().numpy()}
    protocol = Protocol(warmup=warmup, min_runs=min(5, repeats), max_runs=repeats,
                        max_seconds=max_seconds, target_spread=0.0)
    return repeat_until_stable(lambda: s.run(None, feed), protocol)
