"""The profiler contract, run against every registered hardware target."""

import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.hardware.profilers import PROFILERS, Protocol, get_profiler
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.zoo import build_model

FAST = Protocol(warmup=2, min_runs=5, max_runs=30, max_seconds=0.3)


def available(name):
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if name == "remote":
        pytest.skip("needs a Ray cluster: tests/test_remote_profiler.py checks it there")
    return get_profiler(name, protocol=FAST)


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return build_model("digits_cnn", width=8).eval(), torch.randn(4, 1, 8, 8)


@pytest.mark.parametrize("name", sorted(PROFILERS))
def test_contract(name, model_and_input):
    profiler = available(name)
    model, x = model_and_input
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m = profiler.measure(model, x)
    assert not model.training and all(torch.equal(v, model.state_dict()[k])
                                      for k, v in state.items())
    assert m.params == sum(p.numel() for p in model.parameters())
    assert m.macs > 0 and m.size_bytes > m.weight_bytes * 0.9 and m.batch_size == 4
    assert m.runtime
    if name == "analytic":
        assert m.latency_ms is None and m.runs == 0
    else:
        assert FAST.min_runs <= m.runs <= FAST.max_runs
        assert 0 < m.latency_ms <= m.latency_p90_ms and m.latency_spread >= 0
    again = profiler.measure(model, x)
    assert again.cached and again.latency_ms == m.latency_ms
    reference = get_profiler("analytic").measure(model, x)
    assert (m.params, m.macs, m.size_bytes) == (reference.params, reference.macs,
                                                 reference.size_bytes)


def test_a_changed_model_is_measured_again(model_and_input):
    model, x = model_and_input
    profiler = get_profiler("cpu-torch", protocol=FAST)
    first = profiler.measure(model, x)
    pruned = apply_plan(model, CompressionPlan.from_dict(
        {"layers": {"features.3": {"prune": {"ratio": 0.5}}}}), x[:1])
    second = profiler.measure(pruned, x)
    assert not second.cached and second.params < first.params


@pytest.mark.gpu
def test_cuda_events_time_on_the_gpu(model_and_input):
    profiler = available("cuda")
    m = profiler.measure(*model_and_input)
    assert "cuda" in m.runtime and m.latency_ms > 0


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="hardware.target: invalid value 'tpu'.*'cpu-torch'"):
        get_profiler("tpu")
