from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.methods.feature_distillation import (
    AttentionTransferConfig,
    FeatureCapture,
    FeatureDistiller,
    HintConfig,
    attention_map,
    attention_pair_loss,
    attention_transfer_loss,
    hint_loss,
    make_regressor,
)
from autocompress.testing import build_tiny, example_input


@pytest.fixture
def pair(digits):
    """A digits_cnn student, its frozen deep-copied teacher and a batch."""
    student, x = digits
    return student, copy.deepcopy(student).eval().requires_grad_(False), x


def _forward_both(student, teacher, x):
    logits = student(x)
    with torch.no_grad():
        teacher(x)
    return logits


# --- configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    AttentionTransferConfig(pairs="features.2:features.2, features.9", beta=500.0, p=4),
    HintConfig(pairs="features.3:features.6", weight=0.25),
])
def test_configs_round_trip_including_strings(config):
    data = config.to_dict()
    assert isinstance(data["pairs"], str)
    assert type(config).from_dict(data) == config
    as_strings = {k: str(v) for k, v in data.items()}  # how MLflow params come back
    assert type(config).from_dict(as_strings) == config


def test_pair_list_parses_spaces_and_shared_names():
    config = AttentionTransferConfig(pairs=" a.1 : b.2 ,c")
    assert config.pair_list() == (("a.1", "b.2"), ("c", "c"))


@pytest.mark.parametrize("cls, data, field", [
    (AttentionTransferConfig, {}, "pairs"),
    (AttentionTransferConfig, {"pairs": "a:b:c"}, "pairs"),
    (AttentionTransferConfig, {"pairs": "a:b,"}, "pairs"),
    (AttentionTransferConfig, {"pairs": "a:b, a:b"}, "pairs"),
    (AttentionTransferConfig, {"pairs": "a", "beta": -1}, "beta"),
    (AttentionTransferConfig, {"pairs": "a", "p": 0}, "p"),
    (AttentionTransferConfig, {"pairs": "a", "p": "1.5"}, "p"),
    (AttentionTransferConfig, {"pairs": "a", "gamma": 1}, "gamma"),
    (HintConfig, {"pairs": ":b"}, "pairs"),
    (HintConfig, {"pairs": "a", "weight": "-0.1"}, "weight"),
])
def test_configs_validate_fields(cls, data, field):
    with pytest.raises(ConfigError, match=rf"^training\.fd\.{field}"):
        cls.from_dict(data, where="training.fd")


# --- attention transfer ----------------------------------------------------------------------

def test_attention_map_has_unit_norm_per_sample():
    features = torch.randn(3, 5, 6, 7)
    q = attention_map(features)
    assert q.shape == (3, 42)
    torch.testing.assert_close(q.norm(dim=1), torch.ones(3))
    expected = F.normalize(features.pow(2).mean(1).flatten(1), dim=1)  # the paper's at(x)
    torch.testing.assert_close(q, expected)


def test_attention_map_uses_absolute_values_for_odd_p():
    features = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(attention_map(features, p=3), attention_map(features.abs(), p=3))


def test_attention_loss_zero_for_identical_features_positive_otherwise():
    s = torch.randn(2, 4, 6, 6)
    config = AttentionTransferConfig(pairs="a")
    assert attention_transfer_loss([s], [s.clone()], config).item() == 0.0
    loss = attention_transfer_loss([s], [torch.randn(2, 8, 6, 6)], config)
    assert loss.item() > 0


def test_attention_loss_is_beta_half_times_sum_of_pair_means():
    s1, t1, s2, t2 = (torch.randn(2, 3, 4, 4) for _ in range(4))
    config = AttentionTransferConfig(pairs="a,b", beta=10.0)
    pair_means = [(attention_map(s) - attention_map(t)).pow(2).mean() for s, t in [(s1, t1),
                                                                                 (s2, t2)]]
    expected = 5.0 * (pair_means[0] + pair_means[1])
    torch.testing.assert_close(attention_transfer_loss([s1, s2], [t1, t2], config), expected)


def test_attention_loss_pools_the_larger_map():
    student, teacher = torch.randn(2, 4, 8, 8), torch.randn(2, 16, 4, 4)
    loss = attention_pair_loss(student, teacher)
    energy = F.adaptive_avg_pool2d(student.pow(2).mean(1, keepdim=True), 4)
    q_s = F.normalize(energy.flatten(1), dim=1)
    torch.testing.assert_close(loss, (q_s - attention_map(teacher)).pow(2).mean())
    assert attention_pair_loss(teacher, student).item() == pytest.approx(loss.item())


def test_attention_loss_does_not_differentiate_the_teacher():
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    attention_pair_loss(s, t).backward()
    assert s.grad is not None and t.grad is None


# --- hints -----------------------------------------------------------------------------------

@pytest.mark.parametrize("student_shape, teacher_shape, kind", [
    ((2, 4, 5, 5), (2, 16, 5, 5), nn.Conv2d),
    ((2, 12), (2, 32), nn.Linear),
])
def test_regressor_maps_student_to_teacher_channels(student_shape, teacher_shape, kind):
    regressor = make_regressor(torch.Size(student_shape), torch.Size(teacher_shape))
    assert isinstance(regressor, kind)
    assert regressor(torch.randn(student_shape)).shape == teacher_shape


def test_regressor_starts_as_identity_when_widths_match():
    features = torch.randn(2, 6, 3, 3)
    regressor = make_regressor(features.shape, features.shape)
    assert hint_loss(features, features, regressor, weight=1.0).item() == pytest.approx(0.0)


def test_regressor_rejects_unsupported_shapes():
    with pytest.raises(ValueError, match="2-D"):
        make_regressor(torch.Size((2, 3, 4)), torch.Size((2, 3, 4)))


def test_hint_loss_decreases_with_training_on_a_fixed_target():
    student = torch.randn(4, 3, 5, 5)
    target = torch.randn(4, 8, 5, 5)
    regressor = make_regressor(student.shape, target.shape)
    optimizer = torch.optim.SGD(regressor.parameters(), lr=0.1)
    losses = []
    for _ in range(10):
        loss = hint_loss(student, target, regressor, weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


# --- FeatureCapture --------------------------------------------------------------------------

def test_feature_capture_stores_latest_outputs_and_closes(pair):
    model, _, x = pair
    with FeatureCapture(model, ["features.0", "classifier.1"]) as capture:
        model(x)
        assert capture["features.0"].shape == (4, 8, 8, 8)
        assert capture["classifier.1"].shape == (4, 128)
    model(x)
    assert capture.features == {}


def test_feature_capture_error_names_the_layer_and_valid_ones(pair):
    model, _, _ = pair
    with pytest.raises(PlanError, match=r"features\.42: no such layer in the teacher.*features"):
        FeatureCapture(model, ["features.0", "features.42"], label="teacher")
    assert not model.features[0]._forward_hooks  # nothing left hooked


def test_missing_capture_is_a_clear_error(pair):
    model, _, _ = pair
    with FeatureCapture(model, ["features.0"]) as capture, pytest.raises(RuntimeError,
                                                                           match="features.0"):
        capture["features.0"]


# --- FeatureDistiller ------------------------------------------------------------------------

def test_distiller_without_configs_returns_zero(pair):
    student, teacher, x = pair
    distiller = FeatureDistiller(student, teacher)
    _forward_both(student, teacher, x)
    loss = distiller.loss()
    assert loss.shape == () and loss.item() == 0.0
    assert list(distiller.parameters()) == []


def test_distiller_trains_student_and_regressors_not_teacher(pair):
    student, teacher, x = pair
    running_mean = student.features[1].running_mean.clone()
    distiller = FeatureDistiller(
        student, teacher,
        attention=AttentionTransferConfig(pairs="features.2, features.6"),
        hint=HintConfig(pairs="features.0:features.4, classifier.2"),
        example_inputs=x,
    )
    torch.testing.assert_close(student.features[1].running_mean, running_mean)  # eval probe
    assert [type(r) for r in distiller.regressors] == [nn.Conv2d, nn.Linear]
    assert distiller.regressors[0].weight.shape == (16, 8, 1, 1)
    names = {n for n, _ in distiller.named_parameters()}
    assert names == {f"regressors.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    with torch.no_grad():  # make the student differ from its teacher
        student.features[0].weight.mul_(-0.5)
    _forward_both(student, teacher, x)
    loss = distiller.loss()
    assert loss.item() > 0
    loss.backward()
    assert student.features[0].weight.grad is not None
    assert all(p.grad is not None for p in distiller.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    distiller.close()
    assert not student.features[2]._forward_hooks and not teacher.features[2]._forward_hooks


def test_distiller_loss_is_zero_for_a_student_equal_to_its_teacher(pair):
    student, teacher, x = pair
    distiller = FeatureDistiller(student.eval(), teacher,
                                 attention=AttentionTransferConfig(pairs="features.5"),
                                 hint=HintConfig(pairs="features.5"), example_inputs=x)
    _forward_both(student, teacher, x)
    assert distiller.loss().item() == pytest.approx(0.0, abs=1e-6)


def test_distiller_loss_consumes_features(pair):
    student, teacher, x = pair
    distiller = FeatureDistiller(student, teacher,
                                 attention=AttentionTransferConfig(pairs="features.2"))
    _forward_both(student, teacher, x)
    distiller.loss()
    student(x)  # a step that forgot the teacher must not reuse its stale features
    with pytest.raises(RuntimeError, match="features.2"):
        distiller.loss()


def test_distiller_matches_maps_of_different_sizes(pair):
    student, teacher, x = pair
    distiller = FeatureDistiller(student, teacher, attention=AttentionTransferConfig(
        pairs="features.2:features.9"), example_inputs=x)  # 8x8 against 4x4
    _forward_both(student, teacher, x)
    assert distiller.loss().item() > 0


def test_distiller_rejects_unmatchable_features_and_unhooks(pair):
    student, teacher, x = pair
    with pytest.raises(PlanError, match="classifier.1:classifier.1"):
        FeatureDistiller(student, teacher, attention=AttentionTransferConfig(pairs="classifier.1"),
                         example_inputs=x)
    with pytest.raises(PlanError, match="hint pair features.2:classifier.1"):
        FeatureDistiller(student, teacher, hint=HintConfig(pairs="features.2:classifier.1"),
                         example_inputs=x)
    with pytest.raises(PlanError, match="features.99: no such layer in the student"):
        FeatureDistiller(student, teacher, hint=HintConfig(pairs="features.99:features.2"),
                         example_inputs=x)
    assert not any(m._forward_hooks for m in [*student.modules(), *teacher.modules()])


def test_hint_needs_example_inputs(pair):
    student, teacher, _ = pair
    with pytest.raises(ValueError, match="example_inputs"):
        FeatureDistiller(student, teacher, hint=HintConfig(pairs="features.2"))


def test_distiller_hooks_a_replaced_layer_by_name():
    teacher = build_tiny("tiny_residual").eval()
    student = copy.deepcopy(teacher)
    student.block[0] = nn.Sequential(student.block[0], nn.Identity())  # like a factorised layer
    x = example_input(teacher)
    distiller = FeatureDistiller(student, teacher,
                                 attention=AttentionTransferConfig(pairs="block.0"),
                                 hint=HintConfig(pairs="block.0"), example_inputs=x)
    _forward_both(student, teacher, x)
    assert distiller.loss().item() == pytest.approx(0.0, abs=1e-6)
