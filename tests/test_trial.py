import shutil

import pytest

from autocompress.export import load_compressed
from autocompress.search import trial as trial_mod
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
    assert final["size_kb"] < baseline["size_kb"] / 8
    assert final["params"] < baseline["params"]
    # The reported accuracy is the artifact's, as a user gets it back.
    assert artifact.stat().st_size == final["size_bytes"]
    model = load_compressed(artifact)
    assert evaluate(model, trial_mod.load_splits(ctx.recipe).val) == final["accuracy"]
    assert final["accuracy"] > 0.5
