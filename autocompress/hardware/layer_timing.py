"""Per-layer timing for the breakdown, in-situ on the target, under its own protocol.

Eager targets (``cpu-torch``, ``cuda``) time every leaf module of a forward pass with forward
pre/post hooks (``time.perf_counter`` or CUDA events); ``cpu-onnxruntime`` reads ONNX Runtime's
own profiler trace and maps each kernel back to the module it came from. Each profiler calls
the function of its kind from :meth:`~autocompress.hardware.base.BaseProfiler.layer_times`.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from bisect import bisect_right
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from autocompress.export import deployable
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.timing import repeat_until_stable, torch_threads

if TYPE_CHECKING:
    from autocompress.hardware.onnxruntime import OnnxRuntimeCPUProfiler

OTHER, RUNTIME = "(other)", "(runtime)"
Run = tuple[float, dict[str, float]]  # one instrumented run: (whole run ms, ms per row name)
LayerTimes = tuple["dict[str, float] | None", str, int]  # (median ms per row, method, runs)


def hooked_layer_times(model: nn.Module, example: torch.Tensor, profiler: BaseProfiler,
                       cuda: bool) -> LayerTimes:
    """Leaf-module times of the deployed model, as ``cpu-torch`` / ``cuda`` time it."""
    if cuda:
        gpu = deployable(model, dense_circulant=False).to("cuda")
        runs = _hooked_runs(gpu, example.to("cuda"), profiler, cuda=True)
        return _medians(runs, OTHER), "forward hooks, CUDA events", len(runs)
    with torch_threads(profiler.threads):
        deployed = deployable(model, dense_circulant=False)
        runs = _hooked_runs(deployed, example, profiler, cuda=False)
    return _medians(runs, OTHER), "forward hooks, time.perf_counter", len(runs)


def onnxruntime_layer_times(model: nn.Module, example: torch.Tensor,
                            profiler: OnnxRuntimeCPUProfiler, leaves: set[str]) -> LayerTimes:
    """Kernel time per leaf module from ONNX Runtime's profiler (float or int8 graph)."""
    names = {n for n, _ in model.named_modules() if n}
    runs = _onnxruntime_runs(model, example, profiler, names)
    runs = [(total, _to_leaves(layers, leaves)) for total, layers in runs]
    return _medians(runs, RUNTIME), "onnxruntime profiler, kernel time per node", len(runs)


def _to_leaves(times: dict[str, float], leaves: set[str]) -> dict[str, float]:
    """Time of non-leaf modules (functional code inside a container) counts as ``(other)``."""
    out: dict[str, float] = defaultdict(float)
    for name, ms in times.items():
        out[name if name in leaves else OTHER] += ms
    return dict(out)


def _medians(runs: list[Run], residual: str) -> dict[str, float]:
    """Median per row over the runs (absent = 0), plus the median time outside every row."""
    names = {name for _, layers in runs for name in layers}
    medians = {n: statistics.median(layers.get(n, 0.0) for _, layers in runs) for n in names}
    medians[residual] = medians.get(residual, 0.0) + statistics.median(
        total - sum(layers.values()) for total, layers in runs)
    return medians


class _LeafTimer:
    """Forward pre/post hooks timing every leaf module of a forward pass (leaves never nest)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.spans: list[tuple[str, Any, Any]] = []
        self.started: dict[str, Any] = {}
        self.runs: list[Run] = []

    def now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3

    def attach(self, model: nn.Module) -> list[Any]:
        hooks = []
        for name, m in model.named_modules():
            if name and not list(m.children()):
                hooks.append(m.register_forward_pre_hook(self._pre(name)))
                hooks.append(m.register_forward_hook(self._post(name)))
        return hooks

    def _pre(self, name: str):
        def hook(module, inputs):
            self.started[name] = self.now()
        return hook

    def _post(self, name: str):
        def hook(module, inputs, output):
            self.spans.append((name, self.started.pop(name), self.now()))
        return hook

    def run(self, model: nn.Module, x: torch.Tensor) -> None:
        begin = self.now()
        model(x)
        end = self.now()
        if self.cuda:
            torch.cuda.synchronize()
        layers: dict[str, float] = defaultdict(float)
        for name, start, stop in self.spans:
            layers[name] += self.elapsed(start, stop)
        self.spans.clear()
        self.runs.append((self.elapsed(begin, end), dict(layers)))


def _hooked_runs(model: nn.Module, x: torch.Tensor, profiler: BaseProfiler,
                 cuda: bool) -> list[Run]:
    """The timed (post warm-up) runs of the hooked model, under the profiler's protocol."""
    timer = _LeafTimer(cuda)
    hooks = timer.attach(model)
    try:
        with torch.inference_mode():
            stats = repeat_until_stable(lambda: timer.run(model, x), profiler.protocol)
    finally:
        for h in hooks:
            h.remove()
    return timer.runs[-int(stats["runs"]):]


def _onnxruntime_runs(model: nn.Module, example: torch.Tensor,
                      profiler: OnnxRuntimeCPUProfiler, names: set[str]) -> list[Run]:
    """Kernel time per module of each timed run, from ONNX Runtime's profiler trace."""
    import onnx

    from autocompress.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, example, path, int8=profiler.layer_form,
                    calibration=profiler.calibration)
        session = profiler.session(path, profile_prefix=Path(tmp) / "trace")
        feed = {session.get_inputs()[0].name: example.detach().numpy()}
        stats = repeat_until_stable(lambda: session.run(None, feed), profiler.protocol)
        events = json.loads(Path(session.end_profiling()).read_text())
        resolver = _NodeModules(onnx.load(str(path)).graph, names)
    return _trace_runs(events, resolver)[-int(stats["runs"]):]


def _trace_runs(events: list[dict[str, Any]], resolver: _NodeModules) -> list[Run]:
    """Group the trace's kernel events by ``model_run`` and sum their time per module."""
    runs = sorted((e["ts"], e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [ts for ts, _ in runs]
    layers: list[dict[str, float]] = [defaultdict(float) for _ in runs]
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = bisect_right(starts, e["ts"]) - 1
        if i >= 0 and e["ts"] <= starts[i] + runs[i][1]:
            module = resolver.module(e["name"], e.get("args", {}).get("op_name", ""))
            layers[i][module or OTHER] += e["dur"] / 1e3
    return [(dur / 1e3, dict(per)) for (_, dur), per in zip(runs, layers, strict=True)]


_SUFFIX = re.compile(r"(?:_token_\d+|/duplicated|_nchwc)$")
_OP_PREFIX = re.compile(r"^(?:Fused|QLinear|Nhwc|Q(?=Gemm|MatMul|Attention))")


class _NodeModules:
    """Map ONNX Runtime's (possibly optimised) node names back to module names.

    The TorchScript exporter names nodes by module scope (``/features/features.0/Conv``);
    ORT's fusions keep a node's name or name the fused node after an output tensor
    (``/features/features.2/Relu_output_0_nchwc`` is the conv that absorbed that ReLU), so a
    kernel is traced back to the original node whose op type it runs. Weight
    ``DequantizeLinear`` nodes belong to the layer that consumes them.
    """

    def __init__(self, graph: Any, names: set[str]):
        self.names = names
        self.nodes = {n.name: n for n in graph.node}
        self.producer = {out: n for n in graph.node for out in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {i.name for i in graph.initializer}

    def module(self, event: str, op: str) -> str:
        """The module a kernel event belongs to ("" when none)."""
        base = event.removeprefix("fused ").removesuffix("_kernel_time")
        while _SUFFIX.search(base):
            base = _SUFFIX.sub("", base)
        node = self.nodes.get(base) or self.producer.get(base)
        if node is None:
            return self._scope(base)
        return self._node_module(self._running(node, _OP_PREFIX.sub("", op)))

    def _running(self, node: Any, op: str, steps: int = 4) -> Any:
        """The node itself or the nearest upstream node of op type ``op`` (fused kernels)."""
        current = node
        for _ in range(steps):
            if current.op_type == op or not current.input:
                break
            upstream = self.producer.get(current.input[0])
            if upstream is None:
                break
            current = upstream
        return current if current.op_type == op else node

    def _node_module(self, node: Any) -> str:
        scope = self._scope(node.name)
        if scope or node.op_type != "DequantizeLinear" or node.input[0] not in self.initializers:
            return scope
        owner = node.input[0].rsplit(".", 1)[0]  # "classifier.1.weight" -> "classifier.1"
        if owner in self.names:
            return owner
        users = {self._scope(n.name) for n in self.consumers[node.output[0]]}
        return users.pop() if len(users) == 1 else ""

    def _scope(self, name: str) -> str:
        """``/features/features.0/Conv`` -> ``features.0`` ("" outside every module)."""
        current = ""
        for part in name.split("/")[1:-1] if name.startswith("/") else []:
            nested = f"{current}.{part}" if current else part
            if nested in self.names:
                current = nested
            elif part in self.names:
                current = part
            else:
                break
        return current
