import dataclasses
import shutil

import pytest

from autocompress.export import load_compressed
from autocompress.search import trial as trial_mod
from autocompress.search.results import TrialResult, TrialStatus
from autocompress.search.runner import prepare
from autocompress.training import evaluate
from tests.helpers import small_recipe

# A plan that compresses a lot: 2-bit everywhere, pruned convs.
HEAVY = {
    "layers": {
        "features.0": {"quantize": {"bits": 2}},
        "features.3": {"prune": {"ratio": 0.5}, "quantize": {"bits": 2}},
        "features.7": {"prune": {"ratio": 0.5}, "quantize": {"bits": 2}},
        "classifier.1": {"svd": {"rank_ratio": 0.25}, "quantize": {"bits": 4}},
        "classifier.3": {"quantize": {"bits": 4}},
    },
    "distillation": {"temperature": 4.0, "alpha": 0.5},
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trial")
    return tmp, prepare(small_recipe(tmp, epochs=2))


def collect(tmp_path):
    reports = []

    def report(metrics, artifact_dir):
        saved = None
        if artifact_dir:
            saved = tmp_path / f"artifact{len(reports)}.acz"
            shutil.copy(f"{artifact_dir}/model.acz", saved)
        reports.append((metrics, saved))

    return reports, report


def test_infeasible_candidate_is_reported_at_once_without_training(prepared, tmp_path,
                                                                   monkeypatch):
    _, (ctx, _, _) = prepared
    tight = ctx.__class__(ctx.recipe, ctx.teacher_state, ctx.space, ctx.output_layers,
                          small_recipe(tmp_path, budgets=["size_kb<=1"]).parsed_budgets())

    def no_training(*args, **kwargs):
        raise AssertionError("an infeasible candidate must not be trained")

    monkeypatch.setattr(trial_mod, "_fine_tune", no_training)
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, tight, report)
    assert len(reports) == 1
    metrics, artifact = reports[0]
    assert metrics["status"] == "infeasible" and metrics["feasible"] == 0.0
    assert metrics["epochs_trained"] == 0 and metrics["final"] == 1.0
    assert metrics["constraints"][0] > 0
    assert artifact is None


def test_feasible_candidate_reports_each_epoch_then_its_artifact(prepared, tmp_path):
    _, (ctx, baseline, _) = prepared
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, ctx, report)
    statuses = [m["status"] for m, _ in reports]
    assert statuses == ["training", "training", "completed"]
    assert [m["final"] for m, _ in reports] == [0.0, 0.0, 1.0]
    final, artifact = reports[-1]
    assert final["feasible"] == 1.0 and final["constraints"][0] <= 0
    # timed paired with the baseline, anchored to the baseline's recorded latency
    assert final["latency_ms"] == pytest.approx(final["latency_ratio"] * baseline["latency_ms"])
    assert final["latency_ratio"] == pytest.approx(
        final["latency_measured_ms"] / final["reference_latency_ms"])
    assert final["size_kb"] < baseline["size_kb"] / 8
    assert final["params"] < baseline["params"]
    # The reported accuracy is the artifact's, as a user gets it back.
    assert artifact.stat().st_size == final["size_bytes"]
    model = load_compressed(artifact)
    assert evaluate(model, trial_mod.load_splits(ctx.recipe).val) == final["accuracy"]
    assert final["accuracy"] > 0.5


# Every family in one model: low-rank and compact convs, pruned + sparse + 4-bit linear, a shared
# output layer, and distillation with attention transfer and an l1 regulariser.
FAMILIES = {
    "layers": {
        "features.0": {"quantize": {"bits": 8}},
        "features.3": {"prune": {"ratio": 0.25, "importance": "taylor"},
                       "tucker": {"rank_ratio": 0.5}, "quantize": {"bits": 4}},
        "features.7": {"depthwise": {"init": "lstsq"}, "share": {"bits": 4}},
        "classifier.1": {"prune": {"ratio": 0.5}, "svd": {"rank_ratio": 0.5},
                         "sparsify": {"sparsity": 0.5}, "quantize": {"bits": 4}},
        "classifier.3": {"share": {"bits": 3}},
    },
    "distillation": {"temperature": 4.0, "alpha": 0.5},
    "attention_transfer": {"pairs": "features.3:features.3", "beta": 500.0},
    "sparsity": {"kind": "l1_weights", "strength": 1e-5},
}


def test_a_plan_mixing_every_family_fine_tunes_saves_and_reloads(prepared, tmp_path):
    _, (ctx, baseline, _) = prepared
    reports, report = collect(tmp_path)
    trial_mod.run_trial(FAMILIES, ctx, report)
    final, artifact = reports[-1]
    assert final["status"] == "completed" and final["epochs_trained"] == 2
    model = load_compressed(artifact)
    assert evaluate(model, trial_mod.load_splits(ctx.recipe).val) == final["accuracy"]
    assert final["accuracy"] > 0.5
    assert final["size_bytes"] == artifact.stat().st_size < baseline["size_bytes"] / 6
    assert type(model.features[3]).__name__ == "TuckerConv2d"
    assert type(model.features[7]).__name__ == "DepthwiseSeparableConv2d"
    assert model.classifier[1].u.sparse and model.classifier[1].u.bits == 4


def test_the_full_space_samples_plans_from_every_family_that_apply():
    import collections

    import optuna
    import torch
    from ray.tune.utils.util import unflatten_dict

    from autocompress.methods import apply_plan, compressible_layers
    from autocompress.space import SearchSpace, bind
    from autocompress.zoo import build_model
    from tests.helpers import ROOT

    model = build_model("digits_cnn", width=8).eval()
    x = torch.randn(2, 1, 8, 8)
    space = SearchSpace.from_yaml(ROOT / "search_spaces" / "cnn_full.yaml")
    bound = bind(space, compressible_layers(model, x))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    calibration = (torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,)))
    used = collections.Counter()
    for _ in range(20):
        trial = study.ask()
        constants = bound.sample(trial)
        plan = bound.plan(unflatten_dict({**trial.params, **constants}))
        used.update(c.method for configs in plan.layers.values() for c in configs)
        assert apply_plan(model, plan, x, calibration=calibration)(x).shape == (2, 10)
        assert plan.attention_transfer is not None and plan.sparsity is not None
    assert set(used) == {"prune", "tucker", "cp", "depthwise", "svd", "circulant", "hashed",
                         "sparsify", "quantize", "share"}


def test_a_budget_on_another_target_is_measured_there_and_rejects_before_training(
        prepared, tmp_path, monkeypatch):
    _, (ctx, _, _) = prepared
    budgets = small_recipe(tmp_path, budgets=["size_kb<=60", "latency_ms<=1e-6@cpu-onnxruntime"]
                           ).parsed_budgets()
    tight = ctx.__class__(ctx.recipe, ctx.teacher_state, ctx.space, ctx.output_layers, budgets)
    monkeypatch.setattr(trial_mod, "_fine_tune", lambda *a, **k: pytest.fail("trained"))
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, tight, report)
    (metrics, _), = reports
    assert metrics["status"] == "infeasible"
    assert metrics["latency_ms/cpu-onnxruntime"] > 0 and metrics["latency_ms"] > 0
    assert metrics["latency_ms/cpu-onnxruntime"] != metrics["latency_ms"]  # timed separately
    size, latency = metrics["constraints"]
    assert size <= 0 < latency


def test_a_candidate_that_fails_by_itself_ends_failed_with_its_reason(prepared, tmp_path,
                                                                      monkeypatch):
    _, (ctx, _, _) = prepared

    def broken(*args, **kwargs):
        raise ValueError("rank 0 is too small")

    monkeypatch.setattr(trial_mod, "apply_plan", broken)
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, ctx, report)  # does not raise: the search goes on
    (metrics, artifact), = reports
    assert metrics["status"] == "failed" and metrics["final"] == 1.0
    assert metrics["reason"] == "ValueError: rank 0 is too small"
    assert {"accuracy", "latency_ms", "size_kb"} <= set(metrics)  # Tune's strict metric check
    assert artifact is None
    # the worker's traceback tail travels with the result: where it broke, not only what
    assert "in broken" in metrics["traceback"] and "Traceback" in metrics["traceback"]
    assert TrialResult.from_report(metrics).status is TrialStatus.FAILED


def test_a_candidate_whose_loss_turns_nan_ends_diverged_with_its_epoch(prepared, tmp_path):
    _, (ctx, _, _) = prepared
    wild = dataclasses.replace(ctx, recipe=ctx.recipe.replace(training={"lr": 1e30}), budgets=())
    reports, report = collect(tmp_path)
    trial_mod.run_trial({"layers": {}}, wild, report)
    final, artifact = reports[-1]
    assert final["status"] == "diverged" and final["final"] == 1.0, final.get("reason")
    assert final["epochs_trained"] == 1 and "non-finite in epoch 1" in final["reason"]
    assert artifact is None and final["feasible"] == 0.0


def test_a_lost_worker_propagates_so_tune_retries_the_trial(prepared, tmp_path, monkeypatch):
    from ray.exceptions import RayActorError

    _, (ctx, _, _) = prepared

    def lost(*args, **kwargs):
        raise RayActorError()

    monkeypatch.setattr(trial_mod, "apply_plan", lost)
    reports, report = collect(tmp_path)
    with pytest.raises(RayActorError):
        trial_mod.run_trial(HEAVY, ctx, report)
    assert reports == []


@pytest.fixture(scope="module")
def predicting(prepared):
    from autocompress.hardware.lut.predictor import load_table

    tmp, (ctx, baseline, space) = prepared
    recipe = ctx.recipe.replace(hardware={"predict": True, "reject_margin": 0.1})
    teacher = trial_mod.build_teacher(recipe, ctx.teacher_state)
    example = trial_mod.load_splits(recipe).val.tensors[0][:1]
    table = load_table(recipe.hardware, teacher, example, tmp / "runs")
    return tmp, (ctx.__class__(recipe, ctx.teacher_state, ctx.space, ctx.output_layers,
                               ctx.budgets, table), baseline, space)


def test_a_plan_predicted_over_the_latency_budget_is_rejected_before_any_build(
        predicting, tmp_path, monkeypatch):
    tmp, (ctx, _, _) = predicting
    assert ctx.latency_table is not None
    assert list((tmp / "runs").glob("latency-table-cpu-torch-*.json"))  # kept with the runs
    tight = ctx.__class__(ctx.recipe, ctx.teacher_state, ctx.space, ctx.output_layers,
                          small_recipe(tmp_path, budgets=["latency_ms<=1e-6"]).parsed_budgets(),
                          ctx.latency_table)
    monkeypatch.setattr(trial_mod, "apply_plan", lambda *a, **k: pytest.fail("built"))
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, tight, report)
    (metrics, artifact), = reports
    assert metrics["status"] == "infeasible" and metrics["predicted_only"] == 1.0
    assert metrics["latency_ms"] == metrics["latency_predicted_ms"] > 0
    assert metrics["constraints"][0] > 0.1 and "not built" in metrics["reason"]


def test_a_built_candidate_logs_the_predictors_error(predicting, tmp_path):
    _, (ctx, _, _) = predicting
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, ctx, report)
    final = reports[-1][0]
    assert final["status"] == "completed"
    assert final["latency_predicted_ms"] > 0
    error = final["latency_predicted_ms"] / final["latency_ms"] - 1
    assert final["latency_prediction_error"] == pytest.approx(error)


def test_a_candidate_timed_in_int8_reports_the_int8_graphs_quality(prepared, tmp_path):
    tmp, (ctx, _, _) = prepared
    recipe = ctx.recipe.replace(hardware={"target": "cpu-onnxruntime", "int8": True,
                                          "warmup": 1, "repeats": 5, "max_seconds": 0.2,
                                          "paired": False})
    int8_ctx = dataclasses.replace(ctx, recipe=recipe, baseline=None)
    reports, report = collect(tmp_path)
    trial_mod.run_trial(HEAVY, int8_ctx, report)
    final, artifact = reports[-1]
    assert final["status"] == "completed", final.get("reason")
    assert "accuracy_pytorch" in final  # the PyTorch model's own score, kept for comparison
    splits = trial_mod.load_splits(recipe)
    model = load_compressed(artifact)
    assert final["accuracy_pytorch"] == trial_mod.quality(model, splits, recipe)
    assert final["accuracy"] == trial_mod.deployed_quality(model, splits, recipe, final)
