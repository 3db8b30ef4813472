"""Compression that must be faster on the real runtime is measured faster (loose ratios).

The figures are printed (``pytest -s``); the asserted ratios are far below the measured ones
(`benchmarks/results/int8_onnx.md`, `benchmarks/results/latency_predictor.md`) so that a busy
CI machine does not fail them.
"""

import pytest
import torch

from autocompress.hardware.profilers import Protocol, get_profiler
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers
from autocompress.zoo import build_model

pytestmark = pytest.mark.slow
PROTOCOL = Protocol(warmup=10, min_runs=30, max_runs=400, max_seconds=1.5, target_spread=0.03)


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    model = build_model("lenet5_caffe").eval()  # conv 20, conv 50, fc 500, fc 10
    return model, torch.randn(16, 1, 28, 28)


def _halved(model, x):
    layers = compressible_layers(model, x[:1])
    plan = {"layers": {info.name: {"prune": {"ratio": 0.5}} for info in layers if info.prunable}}
    return apply_plan(model, CompressionPlan.from_dict(plan), x[:1])


def _ratio(profiler, slow, fast, x) -> float:
    """Baseline latency / candidate latency, best of two interleaved rounds (drift-robust)."""
    rounds = []
    for _ in range(2):
        profiler.clear_cache()
        rounds.append(profiler.measure(slow, x).latency_ms / profiler.measure(fast, x).latency_ms)
    return max(rounds)


@pytest.mark.parametrize("target", ["cpu-torch", "cpu-onnxruntime"])
def test_structured_pruning_measures_faster(lenet, target):
    model, x = lenet
    pruned = _halved(model, x)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    ratio = _ratio(get_profiler(target, protocol=PROTOCOL), model, pruned, x)
    print(f"\n{target}: 50 % channel pruning of lenet5_caffe, batch 16: {ratio:.2f}x faster")
    assert ratio > 1.2


def test_int8_qdq_measures_faster_than_float_for_a_conv_model(lenet):
    model, x = lenet
    float_ort = get_profiler("cpu-onnxruntime", protocol=PROTOCOL)
    int8_ort = get_profiler("cpu-onnxruntime", protocol=PROTOCOL, int8=True, calibration=x)
    ratios = []
    for _ in range(2):
        float_ort.clear_cache()
        int8_ort.clear_cache()
        base, int8 = float_ort.measure(model, x), int8_ort.measure(model, x)
        ratios.append(base.latency_ms / int8.latency_ms)
    print(f"\nONNX Runtime int8 QDQ vs float, lenet5_caffe batch 16: {max(ratios):.2f}x faster")
    assert max(ratios) > 1.1
