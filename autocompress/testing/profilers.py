"""The profiler contract, shipped so that a plugin's target passes the built-ins' suite.

Every registered target is checked with these functions by ``tests/test_profilers.py``; run them
on your own profiler the same way::

    from autocompress.testing import FAST_PROTOCOL, check_paired_timing, check_profiler

    def test_my_target_meets_the_contract():
        model, x = contract_model()
        check_profiler(MyProfiler(protocol=FAST_PROTOCOL), model, x)

or subclass :class:`ProfilerContract` in a test module (pytest collects a class named
``Test...``). The rules checked are those stated in :mod:`autocompress.hardware.base`.
:class:`FakeProfiler` is a timing target whose "latency" is a fixed function of the MACs: a
deterministic stand-in for tests of code that reads latencies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from autocompress.hardware.analytic import trace_costs
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.profilers import AnalyticProfiler

# a protocol short enough for tests: a handful of runs, at most 0.3 s per measurement
FAST_PROTOCOL = Protocol(warmup=2, min_runs=5, max_runs=30, max_seconds=0.3)

__all__ = ["FAST_PROTOCOL", "FakeProfiler", "ProfilerContract", "check_paired_timing",
           "check_profiler", "contract_model"]


def _expect(condition: bool, message: str) -> None:
    """Fail the contract with ``message`` (an AssertionError, also under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def contract_model(width: int = 8, batch: int = 4) -> tuple[nn.Module, torch.Tensor]:
    """A small zoo CNN in eval mode and a batch for it: what the built-in targets are checked on."""
    from autocompress.zoo import build_model

    generator = torch.Generator().manual_seed(0)
    model = build_model("digits_cnn", width=width).eval()
    return model, torch.randn(batch, 1, 8, 8, generator=generator)


def check_profiler(profiler: BaseProfiler, model: nn.Module, example: torch.Tensor) -> None:
    """Assert the measurement contract of ``profiler`` on ``model`` and ``example``.

    The model and its mode are left as they were; counted costs equal the analytic target's;
    a timing target reports at least ``min_runs`` and at most ``max_runs`` runs of its
    protocol, a positive median no larger than its p90; measuring again is served from cache.

    Raises:
        AssertionError: naming the rule that was broken.
    """
    state = {k: v.clone() for k, v in model.state_dict().items()}
    training = model.training
    m = profiler.measure(model, example)
    _expect(model.training == training, "measure() changed the model's train/eval mode")
    _expect(all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()),
            "measure() changed the model's weights or buffers")
    _expect(m.params == sum(p.numel() for p in model.parameters()),
            f"params {m.params} is not the model's parameter count")
    _expect(m.macs > 0, f"macs {m.macs} must be > 0")
    _expect(m.size_bytes > m.weight_bytes * 0.9,
            f"size_bytes {m.size_bytes} is far below weight_bytes {m.weight_bytes}")
    _expect(m.batch_size == example.shape[0], f"batch_size {m.batch_size} is not the example's")
    _expect(bool(m.runtime), "runtime must name the runtime and its version")
    if not profiler.timed:
        _expect(m.latency_ms is None and m.runs == 0, "a target that does not time reports "
                                                      "no latency and no runs")
    else:
        protocol = profiler.protocol
        _expect(protocol.min_runs <= m.runs <= protocol.max_runs,
                f"runs {m.runs} outside [{protocol.min_runs}, {protocol.max_runs}]")
        _expect(m.latency_ms is not None and 0 < m.latency_ms <= m.latency_p90_ms,
                f"latency_ms {m.latency_ms} must be > 0 and <= p90 {m.latency_p90_ms}")
        _expect(m.latency_spread >= 0, f"latency_spread {m.latency_spread} must be >= 0")
    again = profiler.measure(model, example)
    _expect(again.cached and again.latency_ms == m.latency_ms,
            "measuring an identical model again must be served from the cache")
    reference = AnalyticProfiler().measure(model, example)
    _expect((m.params, m.macs, m.size_bytes) == (reference.params, reference.macs,
                                                 reference.size_bytes),
            "counted costs differ from the analytic target's: they describe the model")


def check_paired_timing(profiler: BaseProfiler, model: nn.Module, example: torch.Tensor,
                        bigger: nn.Module) -> None:
    """Assert that timing ``model`` paired with a slower ``bigger`` carries the reference's time.

    Raises:
        AssertionError: naming the rule that was broken.
    """
    m = profiler.measure(model, example, reference=bigger)
    if not profiler.timed:
        _expect(m.reference_latency_ms is None, "nothing timed, so nothing paired")
        return
    _expect(m.reference_latency_ms is not None
            and 0 < m.reference_latency_ms <= m.reference_latency_p90_ms,
            f"reference_latency_ms {m.reference_latency_ms} must be > 0 and <= its p90")
    _expect(m.latency_ms < m.reference_latency_ms,
            f"the smaller model ({m.latency_ms} ms) must time faster than the reference "
            f"({m.reference_latency_ms} ms)")
    _expect(profiler.measure(model, example, reference=bigger).cached,
            "a paired measurement of identical models must be served from the cache")
    _expect(profiler.measure(model, example).reference_latency_ms is None,
            "an unpaired measurement must not carry the paired one's reference")


class ProfilerContract:
    """The contract as test methods: subclass it as ``TestMyTarget`` and define the factory.

    Attributes:
        protocol: The protocol the factory should use (short, for tests).
    """

    protocol: Protocol = FAST_PROTOCOL

    def make_profiler(self) -> BaseProfiler:
        """Return a new profiler of the target under test, using :attr:`protocol`."""
        raise NotImplementedError("define make_profiler() in the subclass")

    def test_measures_by_the_contract(self):
        check_profiler(self.make_profiler(), *contract_model())

    def test_paired_timing_carries_the_reference(self):
        model, x = contract_model()
        check_paired_timing(self.make_profiler(), model, x, contract_model(width=32)[0])


class FakeProfiler(BaseProfiler):
    """A timing target whose runs take ``ms_per_mmac`` ms per million MACs, exactly.

    Nothing is timed on a clock: each run returns that figure as its device time, so every
    measurement is the same, and a smaller model is always faster. Register it with
    ``autocompress.hardware.registry.register("fake", FakeProfiler)`` to select it by name.
    """

    name = "fake"

    def __init__(self, threads: int = 1, protocol: Protocol | None = None,
                 ms_per_mmac: float = 1.0, **options):
        super().__init__(threads=threads, protocol=protocol, **options)
        self.ms_per_mmac = ms_per_mmac

    @property
    def runtime(self) -> str:  # noqa: D102
        return "fake 1.0"

    @contextlib.contextmanager
    def runner(self, model: nn.Module, example: torch.Tensor
               ) -> Iterator[Callable[[], float | None]]:  # noqa: D102
        ms = trace_costs(model, example, self.activation_bits).macs / 1e6 * self.ms_per_mmac
        yield lambda: ms
