"""The profiler contract, run against every registered hardware target."""

import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.hardware.measurement import Measurement
from autocompress.hardware.profilers import (
    PROFILERS,
    Protocol,
    get_profiler,
    repeat_paired,
    repeat_until_stable,
)
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.testing import (
    FAST_PROTOCOL,
    FakeProfiler,
    ProfilerContract,
    check_paired_timing,
    check_profiler,
)
from autocompress.zoo import build_model

FAST = FAST_PROTOCOL


def available(name):
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if name == "remote":
        pytest.skip("needs a Ray cluster: tests/test_remote_profiler.py checks it there")
    if name == "lut":
        pytest.skip("predicts instead of timing: tests/test_lut.py checks it")
    return get_profiler(name, protocol=FAST)


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return build_model("digits_cnn", width=8).eval(), torch.randn(4, 1, 8, 8)


@pytest.mark.parametrize("name", sorted(PROFILERS))
def test_contract(name, model_and_input):
    check_profiler(available(name), *model_and_input)


@pytest.mark.parametrize("name", sorted(PROFILERS))
def test_paired_timing_carries_the_reference_from_the_same_window(name, model_and_input):
    model, x = model_and_input
    check_paired_timing(available(name), model, x, build_model("digits_cnn", width=32).eval())


class TestFakeProfiler(ProfilerContract):
    """The shipped contract, run as a plugin author runs it, over the shipped fake target."""

    def make_profiler(self):
        return FakeProfiler(protocol=self.protocol)


def test_the_fake_profiler_is_deterministic_and_follows_the_macs(model_and_input):
    model, x = model_and_input
    first = FakeProfiler(protocol=FAST).measure(model, x)
    again = FakeProfiler(protocol=FAST).measure(model, x)
    assert first.latency_ms == again.latency_ms == pytest.approx(first.macs / 1e6)
    assert first.latency_spread == 0.0


def test_the_contract_catches_a_profiler_that_changes_the_model(model_and_input):
    class Meddling(FakeProfiler):
        def measure(self, model, example, **kwargs):
            model.train()
            return super().measure(model, example, **kwargs)

    model, x = model_and_input
    with pytest.raises(AssertionError, match="train/eval mode"):
        check_profiler(Meddling(protocol=FAST), model, x)
    model.eval()


def test_paired_runs_alternate_one_by_one():
    calls = []
    protocol = Protocol(warmup=2, min_runs=4, max_runs=6, max_seconds=0.0)
    run, ref = lambda: calls.append("a"), lambda: calls.append("b")
    timing, ref_timing = repeat_paired(run, ref, protocol)
    assert calls == ["a", "b"] * (2 + 4)  # warm-up pairs, then min_runs pairs (deadline passed)
    assert timing["runs"] == ref_timing["runs"] == 4


def test_a_protocol_without_minimum_still_times_once():
    timing = repeat_until_stable(lambda: 1.5, Protocol(warmup=0, min_runs=0, max_runs=5))
    assert timing["runs"] >= 1 and timing["latency_ms"] == 1.5


def test_device_times_returned_by_a_run_are_used():
    timing = repeat_until_stable(lambda: 7.0, Protocol(warmup=0, min_runs=3, max_runs=3))
    assert timing["latency_ms"] == 7.0 and timing["latency_spread"] == 0.0


def test_anchored_latency_is_the_paired_ratio_times_the_baseline():
    m = Measurement(params=1, macs=1, weight_bytes=1, size_bytes=1, latency_ms=2.0,
                    latency_p90_ms=3.0, reference_latency_ms=4.0, reference_latency_p90_ms=5.0)
    out = m.anchored(baseline_ms=10.0, baseline_p90_ms=20.0)
    assert out["latency_ratio"] == 0.5 and out["latency_ms"] == 5.0
    assert out["latency_measured_ms"] == 2.0
    assert out["latency_p90_ms"] == pytest.approx(3.0 / 5.0 * 20.0)
    assert out["latency_measured_p90_ms"] == 3.0
    unpaired = Measurement(params=1, macs=1, weight_bytes=1, size_bytes=1, latency_ms=2.0)
    assert unpaired.anchored(10.0) == unpaired.metrics()  # nothing to anchor
    assert m.anchored(None)["latency_ms"] == 2.0  # no baseline latency: raw


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


def test_cpu_torch_times_a_model_of_several_inputs():
    """A dict-batch model is timed on a tuple of positional inputs (input_ids, attention_mask)."""
    from autocompress.hardware.config import Protocol
    from autocompress.hardware.profilers import TorchCPUProfiler

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x, mask):
            return self.fc(x * mask)

    example = (torch.randn(3, 4), torch.ones(3, 4))
    profiler = TorchCPUProfiler(protocol=Protocol(warmup=1, min_runs=3, max_runs=5))
    measured = profiler.measure(TwoInputs(), example)
    assert measured.latency_ms > 0
