"""The remote profiler on a real two-node local Ray cluster: it times on the node that carries the
target's resource, from the driver and from inside a Tune trial (placement group escaped)."""

import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402

from autocompress.errors import ConfigError  # noqa: E402
from autocompress.hardware.profilers import Protocol, get_profiler  # noqa: E402
from autocompress.hardware.remote import RemoteProfiler, release  # noqa: E402
from autocompress.zoo import build_model  # noqa: E402
from cluster.local_cluster import LocalCluster, NodeSpec  # noqa: E402

FAST = Protocol(warmup=2, min_runs=5, max_runs=30, max_seconds=0.3)
RESOURCE = "target:cpu-onnxruntime"
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():  # another module's Ray must not be the one we talk to
        ray.shutdown()
    with LocalCluster([NodeSpec("profiler", resources={RESOURCE: 1})],
                      head_cpus=1, head_resources={"trainer": 1},
                      env={"PYTHONPATH": f"{HERE}:{HERE.parent}"}) as local:  # our trainables
        try:
            local.connect()
            yield local
        finally:
            ray.shutdown()


def _digits(seed=0):
    torch.manual_seed(seed)
    return build_model("digits_cnn", width=8).eval(), torch.randn(4, 1, 8, 8)


@pytest.mark.slow
def test_measures_on_the_node_with_the_resource(cluster):
    model, x = _digits()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    m = RemoteProfiler("cpu-onnxruntime", protocol=FAST).measure(model, x)
    assert not model.training and all(torch.equal(v, model.state_dict()[k])
                                      for k, v in state.items())
    assert m.node == cluster.node_ids["profiler"] != cluster.node_ids["head"]
    assert m.target == "cpu-onnxruntime" and m.runtime.startswith("onnxruntime")
    assert FAST.min_runs <= m.runs and 0 < m.latency_ms <= m.latency_p90_ms
    reference = get_profiler("analytic").measure(model, x)  # counted costs: same everywhere
    assert (m.params, m.macs, m.size_bytes) == (reference.params, reference.macs,
                                                 reference.size_bytes)
    big = build_model("digits_cnn", width=32).eval()
    paired = RemoteProfiler("cpu-onnxruntime", protocol=FAST).measure(model, x, reference=big)
    assert paired.node == cluster.node_ids["profiler"]  # both timed there, runs alternating
    assert 0 < paired.latency_ms < paired.reference_latency_ms


@pytest.mark.slow
def test_the_driver_side_cache_serves_an_identical_model(cluster):
    model, x = _digits(seed=1)
    profiler = RemoteProfiler("cpu-onnxruntime", protocol=FAST)
    first = profiler.measure(model, x)
    again = profiler.measure(model, x)
    assert not first.cached and first.node == cluster.node_ids["profiler"]
    assert again.cached and again.latency_ms == first.latency_ms and again.node == first.node


def _measure_in_trial(config):
    model, x = _digits()
    m = RemoteProfiler("cpu-onnxruntime", protocol=FAST, timeout_s=60).measure(model, x)
    tune.report({"node": m.node, "latency_ms": m.latency_ms,
                 "trial_node": ray.get_runtime_context().get_node_id(),
                 "in_placement_group": float(ray.util.get_current_placement_group() is not None)})


@pytest.mark.slow
def test_a_trial_escapes_its_placement_group_to_the_profiling_node(cluster, tmp_path):
    assert release(RESOURCE)  # the trial must create the actor, from inside its placement group
    trainable = tune.with_resources(_measure_in_trial, {"CPU": 1, "trainer": 1})
    results = tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=1),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    (result,) = list(results)
    assert result.error is None
    assert result.metrics["in_placement_group"] == 1.0
    assert result.metrics["trial_node"] == cluster.node_ids["head"]
    assert result.metrics["node"] == cluster.node_ids["profiler"]
    assert result.metrics["latency_ms"] > 0


@pytest.mark.slow
def test_a_missing_resource_fails_fast_with_the_available_ones(cluster):
    started = time.perf_counter()
    available = r"\['target:cpu-onnxruntime', 'trainer'\]"
    with pytest.raises(ConfigError, match=r"'target:cuda'.*" + available):
        RemoteProfiler("cuda", protocol=FAST).measure(*_digits())
    assert time.perf_counter() - started < 5


@pytest.mark.slow
def test_stop_leaves_no_process_of_the_cluster(cluster):
    ray.shutdown()
    assert cluster.pids()
    cluster.stop()
    assert cluster.pids() == []
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, cluster)]
    assert leftovers == []


def _mentions(proc: Path, cluster: LocalCluster) -> bool:
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    zombie = stat[stat.rindex(")") + 2] == "Z"
    return not zombie and str(cluster.base_dir).encode() in cmdline


def test_without_ray_or_with_a_bad_target_it_says_why():  # no cluster: fast
    with pytest.raises(ConfigError, match="remote.target.*'cpu-onnxruntime'"):
        RemoteProfiler("tpu")
    with pytest.raises(ConfigError, match="remote.int9.*an option of 'cpu-onnxruntime'"):
        RemoteProfiler("cpu-onnxruntime", int9=True)
    if not ray.is_initialized():
        with pytest.raises(ConfigError, match="Ray is not initialised"):
            RemoteProfiler("cpu-onnxruntime").measure(*_digits())
        with pytest.raises(ConfigError, match="no Ray cluster answers at '127.0.0.1:1'"):
            RemoteProfiler("cpu-onnxruntime", address="127.0.0.1:1").measure(*_digits())
