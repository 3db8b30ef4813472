"""Data-aware channel importance (Taylor, OBD Hessian) versus magnitude."""

import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.methods import CompressionPlan, PruneConfig, apply_plan


class Dead(nn.Module):
    """Channel 0 of ``fc1`` has the largest weights but nothing downstream reads it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(6, 4)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc1.weight[0] = 5.0
            self.fc1.bias.fill_(3.0)  # every channel active: only channel 0 is useless
            self.fc2.weight[:, 0] = 0.0

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def pruned_rows(importance, calibration):
    model = Dead()
    x = torch.randn(64, 6)
    plan = CompressionPlan.from_dict({"layers": {"fc1": {"prune": {"ratio": 0.25,
                                                                   "importance": importance}}}})
    student = apply_plan(model, plan, x[:1], calibration=calibration)
    kept = student.fc1.weight.detach()
    return [i for i, row in enumerate(model.fc1.weight.detach())
            if not any(torch.equal(row, k) for k in kept)], student


@pytest.mark.parametrize("importance", ["taylor", "hessian"])
def test_data_aware_criteria_remove_the_channel_that_does_not_matter(importance):
    x = torch.randn(64, 6)
    y = torch.randint(0, 3, (64,))
    assert pruned_rows("l2", None)[0] != [0]  # magnitude keeps the big, useless channel
    removed, student = pruned_rows(importance, (x, y))
    assert removed == [0]
    assert student.fc1.out_features == 3 and student.fc2.in_features == 3
    assert all(p.grad is None for p in student.parameters())  # no stale gradients


@pytest.mark.parametrize("importance", ["taylor", "hessian"])
def test_data_aware_criteria_need_calibration_data(importance):
    with pytest.raises(PlanError, match=f"importance '{importance}' needs calibration data"):
        pruned_rows(importance, None)


def test_unknown_importance_lists_the_criteria():
    with pytest.raises(ConfigError, match="'l1', 'l2', 'taylor', 'hessian'"):
        PruneConfig(ratio=0.5, importance="random")
