"""Quiet node: latency timings exclude the node's training batches, across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch

import autocompress.hardware.quiet as quiet_mod
from autocompress.hardware.profilers import Protocol, get_profiler
from autocompress.hardware.quiet import QuietNode
from autocompress.recipe import HardwareConfig
from autocompress.zoo import build_model

pytestmark = pytest.mark.skipif(quiet_mod.fcntl is None, reason="needs fcntl (POSIX)")


def _other_process(directory, mode: str, seconds: float) -> subprocess.Popen:
    """A process that holds ``mode`` ("work" or "timing") for ``seconds`` once it prints."""
    body = {"work": "with node.work():", "timing": "with node.timing(60) as q:"}[mode]
    code = textwrap.dedent(f"""
        import sys, time
        from autocompress.hardware.quiet import QuietNode
        node = QuietNode({str(directory)!r})
        {body}
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def node(tmp_path, monkeypatch) -> QuietNode:
    node = QuietNode(tmp_path)
    monkeypatch.setattr(quiet_mod, "_NODE", node)
    return node


def test_timing_waits_for_work_in_flight(node, tmp_path):
    proc = _other_process(tmp_path, "work", 0.6)
    start = time.monotonic()
    with node.timing(30) as quiet:
        waited = time.monotonic() - start
        assert quiet
    assert waited >= 0.45  # the batch in flight (0.6 s) ended before timing began
    proc.wait()


def test_work_waits_while_timing(node, tmp_path):
    proc = _other_process(tmp_path, "timing", 0.6)
    start = time.monotonic()
    with node.work():
        assert time.monotonic() - start >= 0.45  # no batch starts during the 0.6 s timing
    proc.wait()


def test_timing_gives_up_after_timeout_and_work_goes_on(node, tmp_path):
    proc = _other_process(tmp_path, "work", 5)
    try:
        start = time.monotonic()
        with node.timing(0.2) as quiet:
            assert not quiet
            assert 0.15 <= time.monotonic() - start < 2
            assert proc.poll() is None  # the other process's work was not disturbed
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_worker_releases_the_node(node, tmp_path):
    proc = _other_process(tmp_path, "work", 60)
    proc.kill()
    proc.wait()
    with node.timing(5) as quiet:
        assert quiet


def test_timing_inside_own_work_does_not_deadlock(node):
    start = time.monotonic()
    with node.work(), node.work(), node.timing(30) as quiet:  # nested work is re-entrant
        assert not quiet
    assert time.monotonic() - start < 1
    with node.timing(1) as quiet:  # released afterwards
        assert quiet


def test_zero_timeout_never_waits(node):
    with node.timing(0) as quiet:
        assert not quiet


def test_measurements_report_whether_the_node_was_quiet(node, tmp_path):
    model, x = build_model("digits_cnn", width=4).eval(), torch.randn(1, 1, 8, 8)
    fast = Protocol(warmup=1, min_runs=3, max_runs=3, quiet_timeout_s=5)
    assert get_profiler("cpu-torch", protocol=fast).measure(model, x).quiet
    assert not get_profiler("analytic").measure(model, x).quiet  # nothing timed
    proc = _other_process(tmp_path, "work", 5)
    try:
        impatient = Protocol(warmup=1, min_runs=3, max_runs=3, quiet_timeout_s=0.1)
        measured = get_profiler("cpu-torch", protocol=impatient).measure(model, x)
        assert not measured.quiet and measured.latency_ms > 0
        assert measured.metrics()["quiet"] == 0.0
    finally:
        proc.kill()
        proc.wait()


def test_recipe_can_turn_quiet_timing_off():
    assert HardwareConfig().protocol.quiet_timeout_s == 30.0
    assert HardwareConfig(quiet=False).protocol.quiet_timeout_s == 0.0
    assert HardwareConfig(quiet_timeout_s=5).protocol.quiet_timeout_s == 5.0
    with pytest.raises(Exception, match="quiet_timeout_s"):
        HardwareConfig(quiet_timeout_s=-1)


def test_training_batches_hold_the_node(node, tmp_path):
    pytest.importorskip("pytorch_lightning")
    from autocompress.training.module import QuietBatches

    callback = QuietBatches()
    probe = textwrap.dedent(f"""
        from autocompress.hardware.quiet import QuietNode
        with QuietNode({str(tmp_path)!r}).timing(0.2) as q:
            print(int(q))
    """)

    def other_times_quietly() -> bool:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        return out.stdout.strip() == "1"

    callback.on_train_batch_start(None, None, None, 0)
    assert not other_times_quietly()
    callback.on_train_batch_end(None, None, None, None, 0)
    assert other_times_quietly()
    callback.on_validation_batch_start(None, None, None, 0)
    callback.on_exception(None, None, RuntimeError("boom"))  # a failing batch releases too
    assert other_times_quietly()
