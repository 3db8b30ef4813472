"""search -> pareto -> pick, in three separate processes, on a real local Ray and MLflow store."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from autocompress.export import load_compressed
from autocompress.hardware import parse_budgets
from autocompress.pareto import non_dominated, orient
from autocompress.tracking import OBJECTIVES, front_of, load_search, normalized_hypervolume
from autocompress.training import evaluate
from autocompress.zoo import load_dataset
from tests.helpers import QUICKSTART

pytestmark = pytest.mark.slow
BUDGETS = ["size_kb<=60", "latency_ms<=5"]
SPACE = {
    "layers": [
        {"select": {"type": "Conv2d"},
         "methods": {"prune": {"ratio": {"choices": [0.0, 0.25, 0.5]}},
                     "quantize": {"bits": {"choices": [4, 8]}}}},
        {"select": {"type": "Linear"},
         "methods": {"svd": {"rank_ratio": {"low": 0.25, "high": 0.75, "step": 0.25}},
                     "quantize": {"bits": {"choices": [2, 4]}}}},
    ],
    "distillation": {"temperature": {"low": 2.0, "high": 6.0}, "alpha": 0.5},
}


def cli(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "autocompress.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe.update(
        space="space.yaml", budgets=BUDGETS,
        training={**recipe["training"], "epochs": 2},
        search={**recipe["search"], "trials": 4, "grace_period": 2},
        hardware={**recipe["hardware"], "repeats": 20, "max_seconds": 0.3},
        model={**recipe["model"], "pretrain": {"epochs": 6, "lr": 0.003}},
        tracking={"uri": "sqlite:///mlruns.db", "experiment": "e2e"},
    )
    (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = cli("search", "recipe.yaml", cwd=tmp)  # not a terminal: plain progress lines
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp / "search.out").write_text(result.stdout)
    return tmp, load_search(f"sqlite:///{tmp / 'mlruns.db'}", "e2e")


def test_progress_lines_and_the_optuna_study_kept_in_the_search_storage(searched):
    import optuna

    tmp, search = searched
    out = (tmp / "search.out").read_text().splitlines()
    assert any("baseline training: epoch 6/6 val_accuracy" in line for line in out)
    assert any("baseline measured: accuracy" in line for line in out)
    assert any("search started: 4 trials" in line for line in out)
    trial_lines = [line for line in out if line.startswith("trial t")]
    assert sorted(line.split()[1] for line in trial_lines) == ["t001", "t002", "t003", "t004"]
    statuses = [line for line in out if " done · " in line]
    assert statuses[-1].startswith("4/4 done · 0 running")
    assert not any("Configuration for experiment" in line for line in out)  # Tune is silent
    [study_file] = list((tmp / "autocompress_runs").glob("e2e-*/optuna.db"))
    storage = f"sqlite:///{study_file}"
    [name] = optuna.study.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    assert len(study.trials) == len(search.trials) == 4
    assert len(study.directions) == 3


def test_every_trial_has_a_child_run_with_plan_metrics_and_status(searched):
    _, search = searched
    assert len(search.trials) == 4
    baseline = search.baseline()
    assert {"accuracy", "latency_ms", "size_kb", "macs", "params"} <= set(baseline)
    for trial in search.trials:
        assert trial.status in ("completed", "pruned", "infeasible", "failed")
        if trial.status == "failed":
            assert trial.reason
            continue
        assert any(k.startswith("layers/") for k in trial.params)
        assert {"accuracy", "latency_ms", "size_kb", "macs", "params", "feasible"} <= set(
            trial.metrics)
        assert trial.metrics["size_kb"] < baseline["size_kb"]
        # timed while the node's other trial held its batches (hardware/quiet.py)
        assert trial.metrics["quiet"] == 1.0
    assert baseline["quiet"] == 1.0
    assert any(t.status == "completed" for t in search.trials)
    # The reported hypervolume is the front's, in baseline units (it may be 0 when every
    # member is over twice the baseline's latency).
    expected = normalized_hypervolume(front_of(search.trials), baseline)
    assert search.metrics["hypervolume"] == pytest.approx(expected)
    assert search.metrics["hypervolume"] >= 0
    assert search.metrics["trials"] == 4


def test_pareto_json_is_non_dominated_and_within_budgets(searched):
    tmp, search = searched
    result = cli("pareto", "e2e", "--format", "json", cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    front = json.loads(result.stdout)["trials"]
    assert front and all(t["pareto"] for t in front)
    budgets = parse_budgets(BUDGETS)
    for member in front:
        assert all(b.violation(member[b.metric]) <= 0 for b in budgets)
    candidates = [t for t in search.trials if t.status == "completed" and t.feasible]
    points = [orient(t.metrics, OBJECTIVES) for t in candidates]
    expected = {candidates[i].trial_id for i in non_dominated(points)}
    assert {m["trial"] for m in front} == expected


def test_pick_in_a_fresh_process_writes_a_model_with_the_logged_accuracy(searched):
    tmp, search = searched
    result = cli("pick", "e2e", "--budget", "size_kb<=60", "--output", "picked.acz",
                 "--format", "json", cwd=tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    chosen = json.loads(result.stdout)
    best = max((t for t in search.front() if t.metrics["size_kb"] <= 60),
               key=lambda t: t.metrics["accuracy"])
    assert chosen["trial"] == best.trial_id
    model = load_compressed(tmp / "picked.acz")
    assert (tmp / "picked.acz").stat().st_size == best.metrics["size_bytes"]
    val = load_dataset("digits", val_fraction=0.2, seed=0).val
    assert evaluate(model, val) == pytest.approx(chosen["accuracy"], abs=1e-12)


def test_pareto_table_renders(searched):
    tmp, _ = searched
    result = cli("pareto", "e2e", "--all", "--plans", cwd=tmp)
    assert result.returncode == 0
    assert "baseline" in result.stdout and "Pareto front" not in result.stdout
