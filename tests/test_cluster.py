"""A real local multi-node Ray cluster: a search submitted as a job; a node killed mid-search.

Nodes: head (the job's driver; no trials), two ``trainer`` nodes and a profiling node carrying
``target:cpu-onnxruntime``. Tracking goes to an MLflow server (cluster/mlflow-server.sh): a
multi-node search refuses a sqlite file. Everything started here is stopped here.
"""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from autocompress.errors import ConfigError
from autocompress.tracking import load_search
from cluster.local_cluster import LocalCluster, NodeSpec
from tests.helpers import ROOT, small_recipe

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
RESOURCE = "target:cpu-onnxruntime"
TRIALS = 4
# the local cluster runs Ray's token auth: clients send the token (~/.ray/auth_token)
CLIENT_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    state = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DIR": str(state), "MLFLOW_PORT": str(port),
           "MLFLOW_WORKERS": "1", "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
    script = str(ROOT / "cluster" / "mlflow-server.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=300)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([script, "stop"], env=env, timeout=60)


@pytest.fixture(scope="module")
def cluster():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    bin_dir = str(Path(sys.executable).parent)
    nodes = [NodeSpec("trainer-a", num_cpus=2, resources={"trainer": 1}),
             NodeSpec("trainer-b", num_cpus=2, resources={"trainer": 1}),
             NodeSpec("profiler", num_cpus=1, resources={RESOURCE: 1})]
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    with LocalCluster(nodes, head_cpus=1, dashboard=True, env=env) as local:
        print(f"\ncluster of {len(local.nodes)} nodes started in {local.start_s:.1f} s")
        yield local
        ray.shutdown()


def _recipe(tmp: Path, uri: str, experiment: str, epochs: int = 1, **search) -> Path:
    recipe = small_recipe(tmp, trials=TRIALS, epochs=epochs, concurrency=2, **search)
    raw = recipe.to_dict()
    raw.pop("base_dir", None)
    (tmp / "space.yaml").write_text((ROOT / "search_spaces" / "cnn_default.yaml").read_text())
    raw.update(space="space.yaml", budgets=["size_kb<=200"],
               tracking={"uri": uri, "experiment": experiment})
    raw["hardware"].update(target="cpu-onnxruntime", resource=RESOURCE)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _assert_placed(search, cluster, trainers):
    ids = cluster.node_ids
    for trial in search.trials:
        assert trial.tags.get("autocompress.node") in {ids[t] for t in trainers}, trial.tags
        if trial.status != "failed":
            assert trial.tags["autocompress.node/cpu-onnxruntime"] == ids["profiler"]


def test_a_search_submitted_as_a_job_trains_on_trainers_and_times_on_the_target(
        cluster, mlflow_server, tmp_path):
    recipe = _recipe(tmp_path, mlflow_server, "job")
    submitted = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "autocompress.cli", "submit", str(recipe), "--address",
         cluster.dashboard_url, "--follow", "--storage", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=900, env=CLIENT_ENV)
    wall = time.perf_counter() - submitted
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert "job finished: SUCCEEDED" in out.stderr
    job_id = out.stdout.splitlines()[0]
    status = subprocess.run([sys.executable, "-m", "autocompress.cli", "jobs", "status", job_id,
                             "--address", cluster.dashboard_url], capture_output=True, text=True,
                            env=CLIENT_ENV)
    assert status.stdout.startswith(f"{job_id}: SUCCEEDED")
    search = load_search(mlflow_server, "job")
    assert len(search.trials) == len({t.trial_id for t in search.trials}) == TRIALS
    _assert_placed(search, cluster, ("trainer-a", "trainer-b"))
    print(f"job of {TRIALS} trials: {wall:.1f} s from submission to the end")


def test_a_multi_node_search_refuses_a_sqlite_store(cluster, tmp_path):
    import ray

    from autocompress.recipe import Recipe
    from autocompress.search import run_search

    recipe = Recipe.from_yaml(_recipe(tmp_path, f"sqlite:///{tmp_path}/m.db", "x"))
    cluster.connect()
    try:
        with pytest.raises(ConfigError, match="local sqlite file, but the Ray cluster has 4"):
            run_search(recipe, verbose=0)
    finally:
        ray.shutdown()


def test_a_node_killed_mid_search_loses_nothing(cluster, mlflow_server, tmp_path):
    """Runs last: it kills trainer-b. Its trials are retried on trainer-a."""
    import ray

    from autocompress.recipe import Recipe
    from autocompress.search import run_search
    from autocompress.tracking.store import client

    recipe = Recipe.from_yaml(_recipe(tmp_path, mlflow_server, "faults", epochs=6,
                                      max_failures=3, scheduler="none"))
    victim = cluster.node_ids["trainer-b"]
    killed, killed_processes = threading.Event(), []

    def kill_when_busy():
        c = client(mlflow_server)
        deadline = time.time() + 600
        while not killed.is_set() and time.time() < deadline:
            exp = c.get_experiment_by_name("faults")
            runs = c.search_runs([exp.experiment_id], "tags.`autocompress.status` = 'running'"
                                 ) if exp else []
            if any(r.data.tags.get("autocompress.node") == victim for r in runs):
                killed_processes.append(cluster.kill_node("trainer-b"))
                killed.set()
            time.sleep(0.5)

    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    cluster.connect()
    try:
        summary = run_search(recipe, verbose=0)
    finally:
        killed.set()
        ray.shutdown()
    watcher.join(timeout=5)
    assert killed_processes and killed_processes[0] > 0, "trainer-b was never seen busy"
    search = load_search(mlflow_server, "faults")
    ids = [t.trial_id for t in search.trials]
    assert len(ids) == len(set(ids)) == TRIALS == summary.trials
    assert all(t.status in ("completed", "infeasible", "failed", "pruned")
               for t in search.trials)
    retried = [t for t in search.trials if "autocompress.retries" in t.tags]
    lost = [t for t in search.trials if t.status == "failed"]
    assert retried or lost, "the killed node ran a trial: it was retried or recorded failed"
    for t in lost:
        assert t.reason
