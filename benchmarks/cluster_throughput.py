"""Cluster figures on one machine: start time, job submission to first trial, trials per hour.

Usage: python benchmarks/cluster_throughput.py [--trials N] [--epochs E]

Starts local Ray clusters (cluster/local_cluster.py) and an MLflow server
(cluster/mlflow-server.sh), all in a temporary folder, and prints a Markdown report:
- cluster start time (head + trainer(s) + profiling node, until all alive and the job API
  answers);
- a search submitted with ``autocompress submit``: submission -> first trial run in MLflow;
- throughput (completed trials per hour) of the same search with 1 and with 2 trainer nodes of
  2 CPUs each. On a 2-core machine the second node adds logical CPUs, not cores: the figure
  measures the orchestration's overhead and scaling, not extra hardware.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cluster.local_cluster import LocalCluster, NodeSpec  # noqa: E402

RESOURCE = "target:cpu-onnxruntime"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_recipe(tmp: Path, uri: str, experiment: str, trials: int, epochs: int,
                 concurrency: int) -> Path:
    raw = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    (tmp / "space.yaml").write_text((ROOT / "search_spaces" / "cnn_default.yaml").read_text())
    raw.update(space="space.yaml", budgets=["size_kb<=200"],
               tracking={"uri": uri, "experiment": experiment})
    raw["model"]["pretrain"] = {"epochs": 5, "lr": 0.003}
    raw["training"]["epochs"] = epochs
    raw["hardware"].update(target="cpu-onnxruntime", resource=RESOURCE, repeats=20,
                           max_seconds=0.3)
    raw["search"].update(trials=trials, concurrency=concurrency, scheduler="none",
                         storage=str(tmp / "runs"))
    path = tmp / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cluster(trainers: int) -> LocalCluster:
    nodes = [NodeSpec(f"trainer-{i}", num_cpus=2, resources={"trainer": 1})
             for i in range(trainers)]
    nodes.append(NodeSpec("profiler", num_cpus=1, resources={RESOURCE: 1}))
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return LocalCluster(nodes, head_cpus=1, dashboard=True, env=env)


def first_trial_s(uri: str, experiment: str, since: float, timeout: float = 600) -> float:
    from autocompress.tracking.store import client

    c = client(uri)
    deadline = time.time() + timeout
    while time.time() < deadline:
        exp = c.get_experiment_by_name(experiment)
        runs = c.search_runs([exp.experiment_id], "tags.`autocompress.role` = 'trial'",
                             order_by=["attributes.start_time ASC"], max_results=1) if exp else []
        if runs:
            return runs[0].info.start_time / 1000 - since
        time.sleep(0.5)
    raise TimeoutError("no trial run appeared")


def run(args, tmp: Path, uri: str, trainers: int) -> dict:
    local = cluster(trainers).start()
    try:
        experiment = f"throughput-{trainers}"
        recipe = write_recipe(tmp, uri, experiment, args.trials, args.epochs, 2 * trainers)
        submitted = time.time()
        out = subprocess.run([sys.executable, "-m", "autocompress.cli", "submit", str(recipe),
                              "--address", local.dashboard_url, "--follow"],
                             capture_output=True, text=True, env=ENV, cwd=tmp)
        ended = time.time()
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        from autocompress.tracking import load_search

        search = load_search(uri, experiment)
        first = first_trial_s(uri, experiment, submitted)
        starts = [search.metrics.get("setup_s", 0.0), search.metrics.get("tune_s", 0.0)]
        completed = sum(t.status == "completed" for t in search.trials)
        return {"trainers": trainers, "start_s": local.start_s, "first_trial_s": first,
                "job_s": ended - submitted, "setup_s": starts[0], "tune_s": starts[1],
                "completed": completed, "per_hour": 3600 * completed / starts[1]}
    finally:
        local.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ac-bench-") as tmp:
        tmp = Path(tmp)
        port = free_port()
        env = {**ENV, "MLFLOW_DIR": str(tmp / "mlflow"), "MLFLOW_PORT": str(port),
               "MLFLOW_WORKERS": "1", "MLFLOW_BIN": str(Path(sys.executable).parent / "mlflow")}
        script = str(ROOT / "cluster" / "mlflow-server.sh")
        t0 = time.perf_counter()
        subprocess.run([script, "start"], env=env, check=True, capture_output=True)
        mlflow_s = time.perf_counter() - t0
        try:
            rows = [run(args, tmp, f"http://127.0.0.1:{port}", n) for n in (1, 2)]
        finally:
            subprocess.run([script, "stop"], env=env, capture_output=True)
    print(f"# Local Ray cluster figures (`python benchmarks/cluster_throughput.py "
          f"--trials {args.trials} --epochs {args.epochs}`)\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; search: quickstart model, "
          f"{args.trials} trials x {args.epochs} epochs, no early stopping, latency timed on "
          f"the profiling node (cpu-onnxruntime); MLflow server start {mlflow_s:.1f} s\n")
    print("| trainer nodes (2 CPUs each) | cluster start s | submission -> first trial s | "
          "job wall s | driver set-up s | Tune s | completed | trials / hour |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trainers']} | {r['start_s']:.1f} | {r['first_trial_s']:.1f} | "
              f"{r['job_s']:.1f} | {r['setup_s']:.1f} | {r['tune_s']:.1f} | {r['completed']} | "
              f"{r['per_hour']:.0f} |")


if __name__ == "__main__":
    main()
