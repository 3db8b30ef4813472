"""The Ray Tune traps the search must avoid, each shown on a real local Ray."""

from pathlib import Path
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray")
from ray import tune  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

from autocompress.placement import outside_trial  # noqa: E402
from autocompress.search.tuner import make_searcher, make_tune_config  # noqa: E402
from tests.helpers import small_recipe  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    here = Path(__file__).resolve().parent  # workers unpickle trainables defined in this file
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{here}:{here.parent}"}})
    yield
    ray.shutdown()


def _fit(trainable, tmp_path, **tune_config):
    tune.Tuner(trainable, tune_config=tune.TuneConfig(num_samples=2, **tune_config),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()


def _two_metrics(config):
    x = config["x"] if "x" in config else config["layers"]["fc"]["prune"]["ratio"]
    tune.report({"accuracy": x, "latency_ms": 1 - x, "size_kb": 1.0, "final": 1.0,
                 "constraints": []})


def _space(trial):
    trial.suggest_float("layers/fc/prune/ratio", 0.0, 0.5)


def test_metric_in_tune_config_makes_the_study_single_objective(local_ray, tmp_path):
    """The trap: Tune passes TuneConfig's metric/mode to the searcher, which then optimises one."""
    searcher = OptunaSearch(metric=["accuracy", "latency_ms"], mode=["max", "min"])
    tune.Tuner(_two_metrics, param_space={"x": tune.uniform(0, 1)},
               tune_config=tune.TuneConfig(search_alg=searcher, num_samples=2,
                                           metric="accuracy", mode="max"),
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    assert len(searcher._ot_study.directions) == 1


def test_our_tune_config_keeps_three_objectives(local_ray, tmp_path):
    recipe = small_recipe(tmp_path)
    ctx = SimpleNamespace(space=SimpleNamespace(sample=_space), budgets=())
    config = make_tune_config(recipe, ctx)
    assert config.metric is None and config.mode is None
    tune.Tuner(_two_metrics, tune_config=config,
               run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
    study = config.search_alg.searcher.study if hasattr(config.search_alg, "searcher") else (
        config.search_alg.study)
    assert len(study.directions) == 3
    assert len(study.trials) == recipe.search.trials
    assert make_searcher(recipe, ctx).metric == ["accuracy", "latency_ms", "size_kb"]


@ray.remote(num_cpus=0)
def _placement_group_of_task():
    return ray.util.get_current_placement_group() is not None


def _probe(config):
    captured = ray.get(_placement_group_of_task.remote())
    escaped = ray.get(outside_trial(_placement_group_of_task).remote())
    tune.report({"captured": float(captured), "escaped": float(not escaped)})


def test_tasks_started_in_a_trial_are_captured_unless_they_escape(local_ray, tmp_path):
    results = tune.Tuner(
        _probe,
        tune_config=tune.TuneConfig(num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    (result,) = list(results)
    assert result.error is None
    assert result.metrics["captured"] == 1.0  # the trap: inside the trial's placement group
    assert result.metrics["escaped"] == 1.0   # outside_trial() schedules it normally
