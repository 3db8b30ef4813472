"""The test split is never used to choose: selection reads train and val only, and the test
split is scored once per model when asked (the baseline and the front, after the search)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from autocompress.data import DataSplits
from autocompress.hardware import targets
from autocompress.search import trial as trial_mod
from autocompress.search.baseline import holdout_metrics
from autocompress.search.runner import prepare
from autocompress.zoo import load_dataset
from tests.helpers import small_recipe
from tests.test_trial import HEAVY


class Guarded(Dataset):
    """A test split that counts every read."""

    reads = 0

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        Guarded.reads += 1
        return self.data[index]


def guarded_digits(**kwargs):
    """Digits whose test split counts its reads (a data factory named by import path)."""
    splits = load_dataset("digits", **kwargs)
    return DataSplits(splits.train, splits.val, Guarded(splits.test), "guarded",
                      input_shape=splits.input_shape, num_classes=splits.num_classes)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("holdout")
    recipe = small_recipe(tmp, epochs=1).replace(data={"name": "tests.test_holdout:guarded_digits"})
    prepared = prepare(recipe)
    # the factory's module may be a second copy of this one: count on the class it used
    guard = type(trial_mod.load_splits(recipe).test)
    assert guard.__name__ == "Guarded"
    return recipe, prepared, guard


def test_training_calibration_timing_and_selection_never_read_the_test_split(guarded, tmp_path,
                                                                            monkeypatch):
    recipe, (ctx, baseline, _), guard = guarded
    splits = trial_mod.load_splits(recipe)
    seen = {}
    real_apply, real_profiler = trial_mod.apply_plan, targets.profiler_for

    def apply_plan(model, plan, example, outputs, calibration):
        seen["example"], seen["calibration"] = example, calibration
        return real_apply(model, plan, example, outputs, calibration)

    class Spy:
        def __init__(self, profiler):
            self.profiler = profiler

        def measure(self, model, example, **kwargs):
            seen["timed"] = example
            return self.profiler.measure(model, example, **kwargs)

    monkeypatch.setattr(trial_mod, "apply_plan", apply_plan)
    monkeypatch.setattr(targets, "profiler_for", lambda *a: Spy(real_profiler(*a)))
    reports = []
    trial_mod.run_trial(HEAVY, ctx, lambda metrics, artifact: reports.append(metrics))
    assert reports[-1]["status"] == "completed" and "accuracy" in reports[-1]
    assert guard.reads == 0  # baseline, trial, fine-tuning, artifact scoring: no test read
    train_x, train_y = splits.train.tensors
    samples = recipe.training.calibration_samples
    assert torch.equal(seen["calibration"][0], train_x[:samples])
    assert torch.equal(seen["calibration"][1], train_y[:samples])
    val_x = splits.val.tensors[0]
    assert torch.equal(seen["example"], val_x[:1])
    assert torch.equal(seen["timed"], val_x[: recipe.hardware.batch_size])
    assert "test_accuracy" not in baseline


def test_the_test_split_is_read_only_when_reporting(guarded):
    recipe, (ctx, _, _), guard = guarded
    teacher = trial_mod.build_teacher(recipe, ctx.teacher_state)
    reported = holdout_metrics(teacher, recipe)
    assert set(reported) == {"test_accuracy"} and 0.5 < reported["test_accuracy"] <= 1.0
    assert guard.reads == len(trial_mod.load_splits(recipe).test)  # each image once
