"""Per-layer breakdown of a model on a target: measured latency share, artifact bytes, MACs.

Every number is measured or counted on the real thing:

* latency per layer is timed in-situ on the target, over the profiler's own warm-up / repeat
  protocol: forward pre/post hooks around every leaf module (``cpu-torch`` with
  ``time.perf_counter``, ``cuda`` with CUDA events), or ONNX Runtime's own profiler
  (``cpu-onnxruntime``, float or int8), whose kernels are mapped back to module names. Each
  row is the median over the timed runs of that layer's time in a run; ``(other)`` is the
  median of the time not inside any leaf module (functional glue, layout changes, runtime
  overhead; in ONNX Runtime, kernels that belong to no layer such as layout transposes, while
  ``(runtime)`` is the run's time outside every kernel: session overhead, the profiler's
  included), so the rows add up to the instrumented total and shares are row / total.
  Instrumented runs are slower than plain ones: the whole-model latency in ``totals`` is the
  profiler's normal, uninstrumented measurement;
* bytes per layer are the layer's tensors in the compressed artifact
  (:func:`autocompress.export.size_breakdown`); ``(header)`` holds the spec and index, so the
  rows add up to the artifact file's size;
* MACs per sample are counted on a real forward pass, as :mod:`~autocompress.hardware.analytic`
  counts them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
import tempfile
import time
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.export import deployable, size_breakdown, to_bytes
from autocompress.hardware.analytic import hooked_forward, module_macs
from autocompress.hardware.cpu import torch_threads
from autocompress.hardware.measurement import Measurement
from autocompress.hardware.onnxruntime import session as ort_session
from autocompress.hardware.profilers import (
    BaseProfiler,
    CudaProfiler,
    OnnxRuntimeCPUProfiler,
    TorchCPUProfiler,
    repeat_until_stable,
)
from autocompress.methods.layers import COMPRESSED

OTHER, RUNTIME, HEADER = "(other)", "(runtime)", "(header)"
_COUNTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
Run = tuple[float, dict[str, float]]  # one instrumented run: (whole run ms, ms per row name)


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer (or ``(other)``, ``(runtime)``, ``(header)``) of a breakdown.

    Attributes:
        name: The module's qualified name, e.g. ``features.0``.
        type: The module's class name ("" for the synthetic rows).
        latency_ms: Median time spent in the layer per run (None: the target does not time,
            or the row is ``(header)``).
        share: ``latency_ms`` divided by the instrumented total (None with no latency).
        bytes: Bytes of the layer's tensors in the artifact.
        macs: Multiply-accumulates per sample.
        params: Parameters of the layer.
        bits: Stored weight bit width (None for layers without parameters).
    """

    name: str
    type: str
    latency_ms: float | None
    share: float | None
    bytes: int
    macs: int
    params: int
    bits: int | None


@dataclass(frozen=True)
class Breakdown:
    """Per-layer rows and whole-model totals of one model on one target.

    Attributes:
        layers: Leaf layers in module order, then ``(other)``, ``(runtime)`` (ONNX Runtime
            only) and ``(header)``.
        totals: The profiler's normal (uninstrumented) measurement of the whole model.
        instrumented_ms: Sum of the rows' latencies: the instrumented runs' total (None when
            not timed).
        method: How per-layer latency was measured ("" when it was not).
        runs: Number of instrumented runs the medians are taken over.
    """

    layers: tuple[LayerRow, ...]
    totals: Measurement
    instrumented_ms: float | None
    method: str
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``layers`` (list of rows), ``totals`` and how latency was measured."""
        totals = {**dataclasses.asdict(self.totals), "size_kb": self.totals.size_kb,
                  "instrumented_ms": self.instrumented_ms}
        return {"target": self.totals.target, "runtime": self.totals.runtime,
                "method": self.method, "runs": self.runs,
                "layers": [dataclasses.asdict(row) for row in self.layers], "totals": totals}


def layer_breakdown(model: nn.Module, example: torch.Tensor, profiler: BaseProfiler,
                    base: dict | None = None, extra: dict | None = None) -> Breakdown:
    """Measure ``model`` layer by layer on ``profiler``'s target.

    Args:
        model: The (compressed) model; it is not modified and its mode is restored.
        example: A batch of inputs (its batch size is the timed batch size).
        profiler: The target; ``cpu-torch``, ``cpu-onnxruntime`` and ``cuda`` time each layer,
            other targets give rows without latency.
        base: The model's factory reference, when it was not built by the zoo.
        extra: Metadata stored in the artifact (counted in its bytes, as when saved).

    Returns:
        The rows and the whole-model totals.
    """
    totals = profiler.measure(model, example, base, extra)
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    times, method, runs = _layer_times(model, example, profiler, set(leaves))
    macs = _layer_macs(model, example[:1], leaves)
    sizes = _layer_bytes(to_bytes(model, base, extra), leaves)
    rows = [_row(name, m, times, sizes.get(name, 0), macs.get(name, 0))
            for name, m in leaves.items()]
    rows += _synthetic_rows(times, sizes, macs)
    if times is None:
        return Breakdown(tuple(rows), totals, None, method, runs)
    total = sum(r.latency_ms for r in rows if r.latency_ms is not None)
    rows = [r if r.latency_ms is None else
            dataclasses.replace(r, share=r.latency_ms / total if total > 0 else 0.0)
            for r in rows]
    return Breakdown(tuple(rows), totals, total, method, runs)


def _synthetic_rows(times: dict[str, float] | None, sizes: dict[str, int],
                    macs: dict[str, int]) -> list[LayerRow]:
    """``(other)``, ``(runtime)`` when measured, and ``(header)`` (bytes only)."""
    rows = [LayerRow(OTHER, "", None if times is None else times.get(OTHER, 0.0), None,
                     sizes.get(OTHER, 0), macs.get(OTHER, 0), 0, None)]
    if times is not None and RUNTIME in times:
        rows.append(LayerRow(RUNTIME, "", times[RUNTIME], None, 0, 0, 0, None))
    return [*rows, LayerRow(HEADER, "", None, None, sizes[HEADER], 0, 0, None)]


def _row(name: str, module: nn.Module, times: dict[str, float] | None, size: int,
         macs: int) -> LayerRow:
    params = sum(p.numel() for p in module.parameters())
    latency = times.get(name, 0.0) if times is not None else None
    return LayerRow(name, type(module).__name__, latency, None, size, macs, params,
                    _weight_bits(module) if params else None)


def _weight_bits(module: nn.Module) -> int:
    if isinstance(module, COMPRESSED):
        return int(module.share_bits or module.bits)
    weight = getattr(module, "weight", None)
    tensor = weight if isinstance(weight, torch.Tensor) else next(module.parameters())
    return tensor.element_size() * 8


def _layer_macs(model: nn.Module, sample: torch.Tensor,
                leaves: dict[str, nn.Module]) -> dict[str, int]:
    """MACs per sample of each leaf; costed non-leaf modules count as ``(other)``."""
    macs: dict[str, int] = defaultdict(int)
    names = {id(m): n for n, m in leaves.items()}

    def counted(module, inputs, output):
        macs[names.get(id(module), OTHER)] += module_macs(module, output)

    hooked_forward(model, sample, [m.register_forward_hook(counted) for m in model.modules()
                                   if isinstance(m, _COUNTED) or hasattr(m, "macs_per_sample")])
    return dict(macs)


def _layer_bytes(artifact: bytes, leaves: dict[str, nn.Module]) -> dict[str, int]:
    """Artifact bytes per leaf; state owned by a non-leaf module counts as ``(other)``."""
    sizes: dict[str, int] = defaultdict(int)
    for owner, size in size_breakdown(artifact).items():
        sizes[owner if owner in leaves or owner == HEADER else OTHER] += size
    return dict(sizes)


# --- timing ----------------------------------------------------------------------------------


def _layer_times(model, example, profiler, leaves: set[str]):
    """(median ms per row name or None, method, runs) on the profiler's target."""
    if isinstance(profiler, TorchCPUProfiler):  # the deployed model, as the profiler times it
        with torch_threads(profiler.threads):
            deployed = deployable(model, dense_circulant=False)
            runs = _hooked_runs(deployed, example, profiler, cuda=False)
        return _medians(runs, OTHER), "forward hooks, time.perf_counter", len(runs)
    if isinstance(profiler, CudaProfiler):
        gpu = deployable(model, dense_circulant=False).to("cuda")
        runs = _hooked_runs(gpu, example.to("cuda"), profiler, cuda=True)
        return _medians(runs, OTHER), "forward hooks, CUDA events", len(runs)
    if isinstance(profiler, OnnxRuntimeCPUProfiler):
        names = {n for n, _ in model.named_modules() if n}
        runs = _onnxruntime_runs(model, example, profiler, names)
        runs = [(total, _to_leaves(layers, leaves)) for total, layers in runs]
        return _medians(runs, RUNTIME), "onnxruntime profiler, kernel time per node", len(runs)
    return None, "", 0


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


# --- ONNX Runtime ------------------------------------------------------------------------------


def _onnxruntime_runs(model: nn.Module, example: torch.Tensor,
                      profiler: OnnxRuntimeCPUProfiler, names: set[str]) -> list[Run]:
    """Kernel time per module of each timed run, from ONNX Runtime's profiler trace."""
    import onnx

    from autocompress.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, example, path, int8=profiler.int8, calibration=profiler.calibration)
        session = ort_session(path, profiler.threads, profile_prefix=Path(tmp) / "trace")
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
