"""Tests of autocompress.hardware: budgets, analytic counts, latency and profile()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError
from autocompress.export import to_bytes
from autocompress.hardware import (
    Budget,
    Measurement,
    is_feasible,
    parse_budgets,
    profile,
    violations,
)
from autocompress.hardware.analytic import count_macs, count_params, weight_bytes
from autocompress.hardware.budget import METRICS
from autocompress.hardware.profilers import Protocol, TorchCPUProfiler
from autocompress.hardware.timing import summarize
from autocompress.methods import CompressedLinear, CompressionPlan, apply_plan, compressible_layers
from autocompress.testing import build_tiny, example_input

# --- budgets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("latency_ms<=2", Budget("latency_ms", "<=", 2.0)),
        ("size_kb<=60", Budget("size_kb", "<=", 60.0)),
        (" size_bytes <= 1e5 ", Budget("size_bytes", "<=", 1e5)),
        ("params<=1000", Budget("params", "<=", 1000.0)),
        ("macs<=0", Budget("macs", "<=", 0.0)),
        ("accuracy>=0.95", Budget("accuracy", ">=", 0.95)),
        ("latency_ms<=1.5@cpu", Budget("latency_ms", "<=", 1.5, "cpu")),
        ("latency_ms<=1.5 @ cpu-torch", Budget("latency_ms", "<=", 1.5, "cpu-torch")),
        ("latency_ms<=3@gpu:0", Budget("latency_ms", "<=", 3.0, "gpu:0")),
    ],
)
def test_budget_parse_valid(text, expected):
    assert Budget.parse(text) == expected


def test_budget_str_round_trips():
    for text in ("latency_ms<=1.5@cpu", "accuracy>=0.95", "size_kb<=60"):
        assert str(Budget.parse(text)) == text
        assert Budget.parse(str(Budget.parse(text))) == Budget.parse(text)


def test_unknown_metric_lists_allowed():
    with pytest.raises(ConfigError, match=r"budget 'energy_mj<=3': unknown metric 'energy_mj'; "
                                          r"allowed: latency_ms, latency_p90_ms, ") as info:
        Budget.parse("energy_mj<=3")
    for metric in METRICS:
        assert metric in str(info.value)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("latency_ms>=2", r"latency_ms takes <=, not >="),
        ("accuracy<=0.9", r"accuracy takes >=, not <="),
        ("latency_ms<2", r"cannot parse; expected METRIC<=LIMIT"),
        ("latency_ms=2", r"cannot parse"),
        ("latency_ms", r"cannot parse"),
        ("", r"cannot parse"),
        ("latency_ms<=two", r"limit 'two' is not a number"),
        ("latency_ms<=", r"cannot parse"),
        ("latency_ms<=-1", r"limit must be a number >= 0"),
        ("size_kb<=nan", r"limit must be a number >= 0"),
        ("latency_ms<=2@", r"cannot parse"),
    ],
)
def test_budget_parse_invalid(text, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        Budget.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "value", "sign"),
    [
        ("latency_ms<=2", 3.0, 1),
        ("latency_ms<=2", 2.0, 0),
        ("latency_ms<=2", 1.0, -1),
        ("accuracy>=0.9", 0.8, 1),
        ("accuracy>=0.9", 0.9, 0),
        ("accuracy>=0.9", 0.95, -1),
        ("macs<=0", 5.0, 1),
        ("macs<=0", 0.0, 0),
    ],
)
def test_violation_sign_convention(text, value, sign):
    violation = Budget.parse(text).violation(value)
    assert (violation > 0) - (violation < 0) == sign
    assert is_feasible([violation]) == (sign <= 0)


def test_violation_is_relative_to_the_limit():
    assert Budget.parse("latency_ms<=2").violation(3.0) == pytest.approx(0.5)
    assert Budget.parse("size_kb<=100").violation(50.0) == pytest.approx(-0.5)
    assert Budget.parse("accuracy>=0.8").violation(0.6) == pytest.approx(0.25)


def test_parse_budgets_later_overrides_earlier():
    budgets = parse_budgets(["latency_ms<=2", "size_kb<=60", "latency_ms<=1",
                             "latency_ms<=5@gpu"])
    assert budgets == (Budget("latency_ms", "<=", 1.0), Budget("size_kb", "<=", 60.0),
                       Budget("latency_ms", "<=", 5.0, "gpu"))
    assert parse_budgets([]) == ()


def test_measurement_metrics_feed_budgets():
    m = Measurement(params=10, macs=20, weight_bytes=30, size_bytes=2048, latency_ms=1.5)
    metrics = m.metrics()
    assert metrics["size_kb"] == 2.0 and metrics["latency_ms"] == 1.5
    assert "latency_p90_ms" not in metrics  # not measured
    budgets = parse_budgets(["size_kb<=1", "latency_ms<=2"])
    assert [b.violation(metrics[b.metric]) > 0 for b in budgets] == [True, False]


# --- analytic counts ------------------------------------------------------------------------


def test_linear_counts():
    layer = nn.Linear(10, 5)
    assert count_params(layer) == 55
    assert count_macs(layer, torch.randn(1, 10)) == 50
    assert count_macs(layer, torch.randn(7, 10)) == 50  # per sample


def test_conv_counts():
    conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)
    assert count_params(conv) == 2 * 9 + 2
    assert count_macs(conv, torch.randn(1, 1, 4, 4)) == 2 * 16 * 9
    grouped = nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=2, bias=False)
    assert count_macs(grouped, torch.randn(3, 4, 4, 4)) == 4 * 16 * 2 * 9


def test_macs_of_a_model_add_up():
    model = build_tiny("tiny_mlp", hidden=32)
    assert count_macs(model, example_input(model)) == 16 * 32 + 32 * 10
    assert model.training  # counting restores the mode


def test_weight_bytes():
    assert weight_bytes(nn.Linear(10, 5)) == 55 * 4
    quant = CompressedLinear(10, 5, bits=4)
    assert weight_bytes(quant) == (50 * 4 + 5 * 32 + 5 * 32) // 8  # codes, bias, steps
    assert weight_bytes(CompressedLinear(10, 5, bits=3, bias=False)) == math.ceil(
        (50 * 3 + 5 * 32) / 8)
    bn = nn.BatchNorm1d(4)  # weight, bias, running mean and var (float) + num_batches (int64)
    assert weight_bytes(bn) == 4 * 4 * 4 + 8


# --- latency --------------------------------------------------------------------------------


def test_measure_latency_reports_order_statistics():
    model = build_tiny("tiny_mlp")
    x = example_input(model)
    previous = torch.get_num_threads()
    target = 2 if previous != 2 else 3
    torch.set_num_threads(target)
    try:
        profiler = TorchCPUProfiler(threads=1, protocol=Protocol(
            warmup=2, min_runs=5, max_runs=20, max_seconds=0.5))
        result = profiler.time_runs(model, x)
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(previous)
    assert 0 < result["latency_ms"] <= result["latency_p90_ms"]
    assert 5 <= result["runs"] <= 20
    assert result["latency_spread"] >= 0
    assert model.training


def test_at_least_five_runs_even_past_the_deadline():
    model = build_tiny("tiny_mlp")
    profiler = TorchCPUProfiler(protocol=Protocol(warmup=0, min_runs=5, max_runs=50,
                                                  max_seconds=0, target_spread=0.0))
    assert profiler.time_runs(model, example_input(model))["runs"] == 5


def test_summarize():
    stats = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats["latency_ms"] == 3.0 and stats["latency_p90_ms"] == 5.0 and stats["runs"] == 5
    assert summarize([2.0])["latency_spread"] == 0.0


# --- profile --------------------------------------------------------------------------------


def test_profile_of_a_pruned_model_is_smaller(digits):
    model, x = digits
    names = [layer.name for layer in compressible_layers(model, x) if not layer.is_output]
    plan = CompressionPlan.from_dict({"layers": {n: {"prune": {"ratio": 0.5}} for n in names}})
    student = apply_plan(model, plan, x)
    before, after = profile(model, x, measure=False), profile(student, x, measure=False)
    assert after.macs < before.macs
    assert after.params < before.params
    assert after.size_bytes < before.size_bytes
    assert after.weight_bytes < before.weight_bytes
    assert before.params == count_params(model)
    assert before.size_bytes == len(to_bytes(model))
    assert before.latency_ms is None and before.runs == 0 and before.batch_size == 4


def test_profile_measures_latency(digits):
    model, x = digits
    m = profile(model, x, warmup=1, repeats=5, max_seconds=0.2, threads=1)
    assert m.runs >= 5 and m.latency_ms <= m.latency_p90_ms
    assert m.runtime.startswith("torch ") and m.threads == 1


def test_profile_size_counts_quantization(digits):
    model, x = digits
    names = [layer.name for layer in compressible_layers(model, x)]
    plan = CompressionPlan.from_dict({"layers": {n: {"quantize": {"bits": 4}} for n in names}})
    quantized = profile(apply_plan(model, plan, x), x, measure=False)
    original = profile(model, x, measure=False)
    steps = sum(layer.shape[0] for layer in compressible_layers(model, x))
    assert quantized.params == original.params + steps  # one learned step per channel
    assert quantized.macs == original.macs
    assert quantized.size_bytes < original.size_bytes / 4
    assert quantized.weight_bytes < original.weight_bytes / 4


def test_budgets_name_a_target_and_key_their_metric_by_it():
    default, onnx = parse_budgets(["latency_ms<=2", "latency_ms<=1@cpu-onnxruntime"])
    assert (default.key, onnx.key) == ("latency_ms", "latency_ms/cpu-onnxruntime")
    assert onnx.on_default("cpu-onnxruntime").key == "latency_ms"
    assert str(Budget.parse("latency_p90_ms<=3@cuda")) == "latency_p90_ms<=3@cuda"
    metrics = {"latency_ms": 1.5, "latency_ms/cpu-onnxruntime": 1.5}
    assert violations([default, onnx], metrics) == [pytest.approx(-0.25), pytest.approx(0.5)]
    with pytest.raises(KeyError, match="latency_ms/cuda"):
        violations([Budget.parse("latency_ms<=1@cuda")], metrics)


@pytest.mark.parametrize("text, message", [
    ("size_kb<=60@cpu-torch", "does not depend on the hardware target"),
    ("bops<=1e9@cuda", "drop '@cuda'"),
])
def test_a_target_on_a_device_independent_metric_is_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        Budget.parse(text)


def test_measurement_counts_bit_operations_and_peak_memory():
    from autocompress.hardware.profilers import get_profiler

    model = build_tiny("tiny_mlp")  # Flatten, Linear(16, 32), ReLU, Linear(32, 10)
    plan = CompressionPlan.from_dict({"layers": {"1": {"quantize": {"bits": 4}}}})
    quant = apply_plan(model, plan, example_input(model))
    x = torch.randn(8, 1, 4, 4)
    analytic = get_profiler("analytic")
    full, low = analytic.measure(model, x), analytic.measure(quant, x)
    assert full.bops == full.macs * 32 * 32
    assert low.bops == 16 * 32 * 4 * 32 + 32 * 10 * 32 * 32
    # weights + the largest input+output pair of one leaf (the ReLU: 2 x 8 x 32 floats)
    assert full.peak_mem_mb == pytest.approx((full.weight_bytes + 2 * 8 * 32 * 4) / 2**20)
