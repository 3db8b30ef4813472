"""Quality metrics: exact streaming values (checked against torchmetrics), directions, budgets,
and task losses with distillation that fits the task."""

from __future__ import annotations

import pytest
import torch
import torchmetrics.functional as tmf
from torch import nn

from autocompress.errors import ConfigError
from autocompress.hardware import Budget, parse_budgets
from autocompress.methods import DistillConfig, distillation_loss
from autocompress.metrics import MetricConfig, evaluate_metric
from autocompress.recipe import Recipe
from autocompress.training.losses import task_loss
from tests.helpers import QUICKSTART


class Fixed(nn.Module):
    """Returns the precomputed outputs for the indices it is given."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs

    def forward(self, index):
        return self.outputs[index]


def batches(targets, size=7):
    index = torch.arange(len(targets))
    return [(index[i:i + size], targets[i:i + size]) for i in range(0, len(targets), size)]


@pytest.fixture
def classified():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 4, generator=g)
    targets = torch.randint(0, 4, (50,), generator=g)
    return Fixed(logits), logits, targets


@pytest.mark.parametrize("config, reference", [
    (MetricConfig(), lambda p, t: tmf.accuracy(p, t, task="multiclass", num_classes=4)),
    (MetricConfig("top_k", k=2),
     lambda p, t: tmf.accuracy(p, t, task="multiclass", num_classes=4, top_k=2)),
    (MetricConfig("macro_f1"),
     lambda p, t: tmf.f1_score(p, t, task="multiclass", num_classes=4, average="macro")),
])
def test_classification_metrics_over_uneven_batches_match_torchmetrics(classified, config,
                                                                       reference):
    model, logits, targets = classified
    value = evaluate_metric(model, batches(targets), config)
    assert value == pytest.approx(float(reference(logits, targets)), abs=1e-6)


@pytest.mark.parametrize("name, reference", [("mse", tmf.mean_squared_error),
                                             ("mae", tmf.mean_absolute_error)])
def test_regression_metrics_match_torchmetrics_and_accept_flat_targets(name, reference):
    g = torch.Generator().manual_seed(1)
    outputs, targets = torch.randn(30, 1, generator=g), torch.randn(30, generator=g)
    value = evaluate_metric(Fixed(outputs), batches(targets, 8), MetricConfig(name))
    assert value == pytest.approx(float(reference(outputs.squeeze(1), targets)), rel=1e-6)


def test_directions_keys_and_budget_comparisons():
    assert (MetricConfig().key, MetricConfig().mode, MetricConfig().op) == ("accuracy", "max", ">=")
    assert MetricConfig("top_k", k=5).key == "top5_accuracy"
    assert (MetricConfig("mse").mode, MetricConfig("mse").op) == ("min", "<=")
    user = MetricConfig("pkg.mod:bleu", direction="maximize")
    assert (user.key, user.mode) == ("bleu", "max")


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "auc"}, "metric.name: invalid value 'auc'"),
    ({"name": "pkg:score"}, "metric.direction: .*must state it"),
    ({"name": "mse", "direction": "maximize"}, "metric.direction: .*'minimize'"),
    ({"name": "accuracy", "direction": "up"}, "metric.direction: invalid value 'up'"),
    ({"name": "top_k", "k": 0}, "metric.k"),
    ({"name": "pkg:Score", "direction": "maximize"}, "metric.name: .*lowercase"),
])
def test_bad_metric_configs_name_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MetricConfig(**kwargs)


def test_a_user_metric_that_cannot_be_imported_names_metric_name():
    with pytest.raises(ConfigError, match="metric.name: cannot import module 'no_such_mod'"):
        MetricConfig("no_such_mod:score", direction="minimize").function()


def test_budgets_on_quality_metrics_take_their_direction():
    assert Budget.parse("mse<=0.1").violation(0.2) > 0
    assert Budget.parse("top5_accuracy>=0.9").violation(0.95) < 0
    with pytest.raises(ConfigError, match="mse takes <=, not >="):
        Budget.parse("mse>=0.1")
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        Budget.parse("bleu>=20")
    assert parse_budgets(["bleu>=20"], {"bleu": ">="})[0].limit == 20


def test_a_recipe_takes_its_metric_loss_and_budgets_on_its_metric():
    raw = Recipe.from_yaml(QUICKSTART).to_dict()
    raw.pop("base_dir")
    raw.update(metric={"name": "tests.x:bleu", "direction": "maximize"},
               budgets=["bleu>=0.5", "size_kb<=60"])
    raw["training"]["loss"] = "mse"
    recipe = Recipe.from_dict(raw)
    assert recipe.metric.key == "bleu" and recipe.training.loss == "mse"
    assert [b.metric for b in recipe.parsed_budgets()] == ["bleu", "size_kb"]
    raw["budgets"] = ["bleu<=0.5"]
    with pytest.raises(ConfigError, match="bleu takes >="):
        Recipe.from_dict(raw)
    raw["budgets"], raw["training"]["loss"] = [], "hinge"
    with pytest.raises(ConfigError, match="training.loss: invalid value 'hinge'"):
        Recipe.from_dict(raw)


def test_classification_keeps_kl_distillation_and_regression_distils_outputs_by_mse():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    labels = torch.randint(0, 3, (8,), generator=g)
    config = DistillConfig(temperature=3.0, alpha=0.3)
    assert torch.equal(task_loss(student, teacher, labels, "cross_entropy", config),
                       distillation_loss(student, teacher, labels, config))
    targets = torch.randn(8, 3, generator=g)
    expected = (0.3 * torch.nn.functional.mse_loss(student, targets)
                + 0.7 * torch.nn.functional.mse_loss(student, teacher))
    assert torch.allclose(task_loss(student, teacher, targets, "mse", config), expected)
    l1 = task_loss(student, None, targets, "l1", config)
    assert torch.allclose(l1, (student - targets).abs().mean())
