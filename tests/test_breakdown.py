"""Per-layer breakdown: measured latency shares, artifact bytes and MACs per leaf layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autocompress.export.onnx import export_onnx
from autocompress.hardware.breakdown import HEADER, OTHER, RUNTIME, layer_breakdown
from autocompress.hardware.config import Protocol
from autocompress.hardware.layer_timing import _medians, _NodeModules, _trace_runs
from autocompress.hardware.registry import get_profiler
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.testing import build_tiny, example_input
from autocompress.zoo import build_model

FAST = Protocol(warmup=2, min_runs=5, max_runs=20, max_seconds=0.3)


def leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and not list(m.children())}


def rows(breakdown) -> dict:
    return {row.name: row for row in breakdown.layers}


def assert_consistent(breakdown, model: nn.Module) -> None:
    """Rows cover every leaf and add up to the totals; timed rows' shares add up to 1."""
    by_name = rows(breakdown)
    assert set(leaves(model)) | {OTHER, HEADER} <= set(by_name)
    assert all(by_name[n].params == sum(p.numel() for p in m.parameters())
               for n, m in leaves(model).items())
    totals = breakdown.totals
    assert sum(r.bytes for r in breakdown.layers) == totals.size_bytes
    assert sum(r.macs for r in breakdown.layers) == totals.macs
    assert sum(r.params for r in breakdown.layers) == totals.params
    timed = [r for r in breakdown.layers if r.latency_ms is not None]
    assert all(r.latency_ms >= 0 for r in timed)
    assert math.isclose(sum(r.latency_ms for r in timed), breakdown.instrumented_ms,
                        rel_tol=1e-9)
    assert math.isclose(sum(r.share for r in timed), 1.0, abs_tol=1e-6)
    assert FAST.min_runs <= breakdown.runs <= FAST.max_runs


@pytest.fixture
def digits():
    model = build_model("digits_cnn", width=8)
    return model, example_input(model, batch=2)


def test_cpu_torch_times_every_leaf_inside_the_real_forward(digits):
    model, x = digits
    profiler = get_profiler("cpu-torch", protocol=FAST)
    breakdown = layer_breakdown(model, x, profiler)
    assert_consistent(breakdown, model)
    by_name = rows(breakdown)
    assert all(by_name[n].latency_ms > 0 for n in leaves(model))  # every leaf ran, hooked
    assert by_name[HEADER].latency_ms is None and RUNTIME not in by_name
    # the totals are the profiler's plain (unhooked) measurement, served from its cache
    again = profiler.measure(model, x)
    assert again.cached and again.latency_ms == breakdown.totals.latency_ms
    assert model.training  # mode restored
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_weight_bits_and_bytes_follow_the_compressed_layers(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {
        "features.3": {"quantize": {"bits": 4}},
        "classifier.1": {"svd": {"rank_ratio": 0.25}, "quantize": {"bits": 8}}}})
    student = apply_plan(model, plan, x[:1])
    breakdown = layer_breakdown(student, x, get_profiler("cpu-torch", protocol=FAST))
    assert_consistent(breakdown, student)
    by_name = rows(breakdown)
    assert by_name["features.3"].bits == 4 and by_name["features.0"].bits == 32
    assert by_name["classifier.1.u"].bits == 8 and by_name["classifier.1.v"].bits == 8
    assert by_name["features.2"].bits is None  # ReLU: no weights
    plain = rows(layer_breakdown(model, x, get_profiler("analytic")))
    assert by_name["features.3"].bytes < plain["features.3"].bytes / 4


def test_pruned_layers_count_fewer_macs(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"prune": {"ratio": 0.5}}}})
    pruned = apply_plan(model, plan, x[:1])
    profiler = get_profiler("analytic")
    before = rows(layer_breakdown(model, x, profiler))
    after = rows(layer_breakdown(pruned, x, profiler))
    assert after["features.3"].macs < before["features.3"].macs  # fewer output channels
    assert after["features.7"].macs < before["features.7"].macs  # fewer input channels
    assert after["features.0"].macs == before["features.0"].macs
    assert after["features.3"].bytes < before["features.3"].bytes


def test_analytic_has_bytes_and_macs_but_no_latency(digits):
    model, x = digits
    breakdown = layer_breakdown(model, x, get_profiler("analytic"))
    assert all(r.latency_ms is None and r.share is None for r in breakdown.layers)
    assert breakdown.instrumented_ms is None and breakdown.method == "" and breakdown.runs == 0
    assert sum(r.bytes for r in breakdown.layers) == breakdown.totals.size_bytes
    assert rows(breakdown)["features.3"].macs > 0


def test_to_dict_is_json_ready(digits):
    import json

    model, x = digits
    out = json.loads(json.dumps(layer_breakdown(model, x, get_profiler("analytic")).to_dict()))
    assert out["target"] == "analytic" and out["totals"]["size_bytes"] > 0
    assert {"name", "type", "latency_ms", "share", "bytes", "macs", "params", "bits"} == set(
        out["layers"][0])


@pytest.mark.parametrize("int8", [False, True])
def test_onnxruntime_kernels_map_back_to_the_layers(digits, int8):
    model, x = digits
    profiler = get_profiler("cpu-onnxruntime", protocol=FAST, int8=int8)
    breakdown = layer_breakdown(model, x, profiler)
    assert_consistent(breakdown, model)
    by_name = rows(breakdown)
    convs_and_linears = [n for n, m in leaves(model).items() if isinstance(m, (nn.Conv2d,
                                                                                nn.Linear))]
    assert all(by_name[n].latency_ms > 0 for n in convs_and_linears)
    assert by_name[RUNTIME].latency_ms >= 0 and "onnxruntime" in breakdown.method


# --- node names -> modules (the exporter's naming, ORT's fused / renamed kernels) ------------


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    import onnx

    tmp = tmp_path_factory.mktemp("onnx")
    out = {}
    for key, model in (("digits", build_model("digits_cnn", width=8)),
                       ("residual", build_tiny("tiny_residual"))):
        names = {n for n, _ in model.named_modules() if n}
        for int8 in (False, True):
            path = tmp / f"{key}-{int8}.onnx"
            export_onnx(model, example_input(model, batch=1), path, int8=int8)
            out[key, int8] = _NodeModules(onnx.load(str(path)).graph, names)
    return out


@pytest.mark.parametrize(("key", "int8", "event", "op", "module"), [
    # float: NCHWc convs are named after the ReLU output they absorbed
    ("digits", False, "/features/features.2/Relu_output_0_nchwc_kernel_time", "Conv",
     "features.0"),
    ("digits", False, "/features/features.6/MaxPool_output_0_nchwc_kernel_time", "MaxPool",
     "features.6"),
    ("digits", False, "fused /classifier/classifier.1/Gemm_kernel_time", "FusedGemm",
     "classifier.1"),
    ("digits", False, "ReorderOutput_token_7_kernel_time", "ReorderOutput", ""),
    # int8 QDQ: quantized kernels, activation Q/DQ by scope, weight DQ by the weight's owner
    ("digits", True, "/features/features.0/Conv_token_1_kernel_time", "QLinearConv",
     "features.0"),
    ("digits", True, "/classifier/classifier.3/Gemm_kernel_time", "QGemm", "classifier.3"),
    ("digits", True, "/features/features.2/Relu_output_0_QuantizeLinear_kernel_time",
     "QuantizeLinear", "features.2"),
    ("digits", True, "classifier.1.weight_DequantizeLinear_kernel_time", "DequantizeLinear",
     "classifier.1"),
    ("digits", True, "input_QuantizeLinear_kernel_time", "QuantizeLinear", ""),
    ("digits", True, "logits_DequantizeLinear_kernel_time", "DequantizeLinear", ""),
    # functional glue in forward() belongs to no layer
    ("residual", False, "/Add_kernel_time", "Add", ""),
    ("residual", True, "/head/head.2/Gemm_kernel_time", "QGemm", "head.2"),
    ("residual", False, "/block/block.3/Conv_output_0_nchwc_kernel_time", "Conv", "block.3"),
])
def test_node_names_map_to_modules(graphs, key, int8, event, op, module):
    assert graphs[key, int8].module(event, op) == module


def test_anonymous_weight_dequantize_belongs_to_its_conv(graphs):
    resolver = graphs["digits", True]
    weights = [n for n in resolver.nodes.values() if n.op_type == "DequantizeLinear"
               and n.input[0].startswith("onnx::")
               and len(resolver.consumers[n.output[0]]) == 1]
    assert weights
    for node in weights:
        consumer = resolver.consumers[node.output[0]][0]
        assert resolver.module(f"{node.name}_kernel_time", "DequantizeLinear") == \
            resolver.module(f"{consumer.name}_kernel_time", consumer.op_type) != ""


# --- trace and medians -------------------------------------------------------------------------


class _Named:
    def module(self, event: str, op: str) -> str:
        return {"a": "conv", "b": "fc"}.get(event.removesuffix("_kernel_time"), "")


def test_trace_events_are_grouped_by_run():
    def kernel(name, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": "X"}}

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        kernel("a", 10, 30), kernel("b", 50, 20), kernel("x", 80, 5),
        {"cat": "Node", "name": "a_fence_before", "ts": 9, "dur": 0},
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50},
        kernel("a", 210, 10), kernel("a", 225, 10),
    ]
    runs = _trace_runs(events, _Named())
    assert runs == [(0.1, {"conv": 0.03, "fc": 0.02, OTHER: 0.005}), (0.05, {"conv": 0.02})]


def test_medians_put_time_outside_every_row_into_the_residual():
    runs = [(10.0, {"a": 4.0, "b": 2.0}), (12.0, {"a": 5.0}), (11.0, {"a": 6.0, "b": 3.0})]
    medians = _medians(runs, OTHER)
    assert medians == {"a": 5.0, "b": 2.0, OTHER: 4.0}
    assert _medians(runs, RUNTIME)[RUNTIME] == 4.0


class _FakeEvent:
    """Stands in for ``torch.cuda.Event`` on a machine without CUDA (host clock)."""

    def __init__(self, enable_timing: bool = False):
        assert enable_timing
        self.at = None

    def record(self):
        import time

        self.at = time.perf_counter()

    def elapsed_time(self, end: _FakeEvent) -> float:
        return (end.at - self.at) * 1e3


def test_cuda_event_timer_logic_without_a_gpu(digits, monkeypatch):
    from autocompress.hardware.layer_timing import _hooked_runs

    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    model, x = digits
    runs = _hooked_runs(model.eval(), x, get_profiler("cpu-torch", protocol=FAST), cuda=True)
    assert FAST.min_runs <= len(runs) <= FAST.max_runs
    for total, layers in runs:
        assert set(layers) == set(leaves(model)) and sum(layers.values()) < total


@pytest.mark.gpu
def test_cuda_events_time_every_leaf(digits):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model, x = digits
    breakdown = layer_breakdown(model, x, get_profiler("cuda", protocol=FAST))
    assert_consistent(breakdown, model)
    assert "CUDA events" in breakdown.method
