"""Tests of autocompress.methods: plans, apply_plan and each method's real effect."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.methods import (
    METHODS,
    CompressedConv2d,
    CompressedLinear,
    CompressionPlan,
    DistillConfig,
    LowRankLinear,
    PruneConfig,
    QuantizeConfig,
    SVDConfig,
    apply_plan,
    compressible_layers,
    distillation_loss,
    find_output_layers,
    get_method,
)
from autocompress.methods.lowrank import factorize_linear, max_useful_rank
from autocompress.methods.quantizers import INT_BITS, channel_view, fake_quantize, init_scale
from autocompress.testing import build_tiny, example_input
from autocompress.zoo import build_model

MIXED = {
    "layers": {
        "features.0": {"quantize": {"bits": 8}},
        "features.3": {"prune": {"ratio": 0.25}, "quantize": {"bits": 4}},
        "classifier.1": {
            "prune": {"ratio": 0.5, "importance": "l1"},
            "svd": {"rank_ratio": 0.5},
            "quantize": {"bits": 2, "per_channel": False},
        },
        "classifier.3": {"svd": {"rank": 4}, "quantize": {"bits": 16}},
    },
    "distillation": {"temperature": 3.0, "alpha": 0.4},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model_wide() -> nn.Module:
    """digits_cnn with 16, 32, 32 channels and a 128-unit hidden layer."""
    return build_model("digits_cnn", width=16)


def prune_all(model: nn.Module, x: torch.Tensor, ratio: float, **knobs) -> CompressionPlan:
    """A plan pruning every non-output layer of ``model`` by ``ratio``."""
    layers = {
        layer.name: {"prune": {"ratio": ratio, **knobs}}
        for layer in compressible_layers(model, x)
        if not layer.is_output
    }
    return CompressionPlan.from_dict({"layers": layers})


# --- plan serialisation ---------------------------------------------------------------------


def test_plan_dict_round_trip_fills_defaults_and_orders_by_stage():
    plan = CompressionPlan.from_dict(MIXED)
    assert [c.method for c in plan.layers["classifier.1"]] == ["prune", "svd", "quantize"]
    data = plan.to_dict()
    assert data["layers"]["features.3"]["prune"] == {"ratio": 0.25, "importance": "l2",
                                                     "round_to": 1}
    assert data["layers"]["classifier.3"]["svd"] == {"rank_ratio": 1.0, "rank": 4}
    assert CompressionPlan.from_dict(data) == plan


def test_plan_params_round_trip_from_strings():
    plan = CompressionPlan.from_dict(MIXED)
    params = plan.to_params()
    assert all(isinstance(v, str) for v in params.values())  # as MLflow stores them
    assert params["layers/classifier.1/quantize/per_channel"] == "False"
    assert params["layers/features.0/quantize/bits"] == "8"
    assert params["distillation/alpha"] == "0.4"
    other = {"trial_id": "abc", "search/seed": "0"}  # params that are not the plan's
    assert CompressionPlan.from_params({**params, **other}) == plan


def test_plan_yaml_round_trip():
    plan = CompressionPlan.from_dict(MIXED)
    text = yaml.safe_dump(plan.to_dict())
    assert CompressionPlan.from_dict(yaml.safe_load(text)) == plan


def test_method_order_in_the_dict_does_not_matter():
    reordered = {"layers": {"classifier.1": {"quantize": {"bits": 4}, "prune": {"ratio": 0.5}}}}
    plan = CompressionPlan.from_dict(reordered)
    assert [c.method for c in plan.layers["classifier.1"]] == ["prune", "quantize"]


def test_identity_choices_are_dropped():
    plan = CompressionPlan.from_dict({"layers": {
        "a": {"prune": {"ratio": 0.0}, "svd": {"rank_ratio": 1.0}, "quantize": {"bits": 32}},
        "b": {"prune": {"ratio": 0.0}, "quantize": {"bits": 4}},
        "c": {},
    }})
    assert set(plan.layers) == {"b"}
    assert plan.layers["b"] == (QuantizeConfig(bits=4),)
    assert CompressionPlan.from_dict({"layers": {}}).summary() == "uncompressed"


def test_plan_without_distillation_round_trips():
    plan = CompressionPlan.from_dict({"layers": {"x": {"prune": {"ratio": 0.5}}}})
    assert plan.distillation is None
    assert "distillation" not in plan.to_dict()
    assert CompressionPlan.from_params(plan.to_params()) == plan


# --- plan errors ----------------------------------------------------------------------------


def test_unknown_plan_key():
    with pytest.raises(PlanError, match="unknown key 'layer'.*allowed: layers, distillation"):
        CompressionPlan.from_dict({"layer": {}})


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"layers\.fc: invalid value 'hash'") as info:
        CompressionPlan.from_dict({"layers": {"fc": {"hash": {}}}})
    for name in METHODS:
        assert repr(name) in str(info.value)


def test_unknown_layer_is_named(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.99": {"quantize": {"bits": 4}}}})
    with pytest.raises(PlanError, match=r"features\.99: no such layer"):
        apply_plan(model, plan, x)


def test_svd_on_a_conv_is_refused_naming_the_layer(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"svd": {"rank": 2}}}})
    with pytest.raises(PlanError,
                       match=r"features\.3: svd applies to Linear, Embedding, not Conv2d"):
        apply_plan(model, plan, x)


@pytest.mark.parametrize("bits", [0, "0", 3.5, 9, 64])
def test_bad_bit_width_names_the_layer_and_field(bits):
    with pytest.raises(ConfigError, match=r"layers\.classifier\.1\.quantize\.bits: invalid"):
        CompressionPlan.from_dict({"layers": {"classifier.1": {"quantize": {"bits": bits}}}})


def test_bad_bit_width_from_params_names_the_layer():
    with pytest.raises(ConfigError, match=r"layers\.fc\.quantize\.bits: invalid value 0"):
        CompressionPlan.from_params({"layers/fc/quantize/bits": "0"})


def test_rank_above_full_rank_names_the_layer(digits):
    model, x = digits  # classifier.3 is Linear(128, 10): full rank 10
    plan = CompressionPlan.from_dict({"layers": {"classifier.3": {"svd": {"rank": 11}}}})
    with pytest.raises(PlanError, match=r"classifier\.3: svd rank 11 exceeds .* full rank 10"):
        apply_plan(model, plan, x)


def test_wrong_stage_order_is_refused():
    with pytest.raises(PlanError, match="fc: methods must be ordered prune -> factorize"):
        CompressionPlan({"fc": (QuantizeConfig(bits=4), PruneConfig(ratio=0.5))})


def test_two_methods_of_one_stage_are_refused():
    with pytest.raises(PlanError, match=r"fc: at most one quantize or share method .*'quantize'"):
        CompressionPlan({"fc": (QuantizeConfig(bits=4), QuantizeConfig(bits=8))})
    with pytest.raises(PlanError, match="fc: at most one factorize method"):
        CompressionPlan({"fc": (SVDConfig(rank=2), SVDConfig(rank=3))})


def test_prune_on_an_output_layer_is_refused(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"classifier.3": {"prune": {"ratio": 0.5}}}})
    with pytest.raises(PlanError, match=r"classifier\.3: prune is not allowed on an output"):
        apply_plan(model, plan, x)


def test_output_layers_are_found(digits):
    model, x = digits
    outputs = {layer.name for layer in compressible_layers(model, x) if layer.is_output}
    assert outputs == {"classifier.3"}
    residual = build_tiny("tiny_residual")
    layers = compressible_layers(residual, example_input(residual))
    assert [(lay.name, lay.is_output) for lay in layers] == [
        ("stem.0", False), ("block.0", False), ("block.3", False), ("head.2", True)]


class _LogSoftmaxHead(nn.Module):
    """The last Linear's output goes through batch norm, log_softmax and a reshape."""

    def __init__(self):
        super().__init__()
        self.hidden, self.out, self.norm = nn.Linear(4, 8), nn.Linear(8, 3), nn.BatchNorm1d(3)

    def forward(self, x):
        return torch.log_softmax(self.norm(self.out(torch.relu(self.hidden(x)))), -1).view(-1, 3)


def test_output_layer_is_found_through_parameter_free_ops():
    model, x = _LogSoftmaxHead(), torch.randn(2, 4)
    assert find_output_layers(model, x) == {"out"}
    plan = CompressionPlan.from_dict({"layers": {"out": {"prune": {"ratio": 0.5}}}})
    with pytest.raises(PlanError, match="out: prune is not allowed on an output layer"):
        apply_plan(model, plan, x)


def test_output_layer_of_a_fully_convolutional_classifier():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 10, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert find_output_layers(model, torch.randn(2, 1, 8, 8)) == {"2"}


def test_output_layers_of_a_frozen_model():
    model = build_tiny("tiny_mlp")
    model.requires_grad_(False)
    assert find_output_layers(model, example_input(model)) == {"3"}


# --- config validation ----------------------------------------------------------------------


def test_config_from_dict_coerces_strings():
    config = PruneConfig.from_dict({"ratio": "0.5", "importance": "l1", "round_to": "4"})
    assert config == PruneConfig(ratio=0.5, importance="l1", round_to=4)
    assert QuantizeConfig.from_dict({"bits": "4.0", "per_channel": "false"}) == QuantizeConfig(
        bits=4, per_channel=False)
    assert SVDConfig.from_dict({"rank": "None", "rank_ratio": "0.25"}) == SVDConfig(0.25, None)


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (PruneConfig, {"ratioo": 0.5}, "prune.ratioo"),
        (PruneConfig, {"ratio": "abc"}, "prune.ratio"),
        (PruneConfig, {"ratio": 1.0}, "prune.ratio"),
        (PruneConfig, {"ratio": -0.1}, "prune.ratio"),
        (PruneConfig, {"importance": "l3"}, "prune.importance"),
        (PruneConfig, {"round_to": 0}, "prune.round_to"),
        (QuantizeConfig, {"per_channel": "maybe"}, "quantize.per_channel"),
        (QuantizeConfig, {"bits": "4.5"}, "quantize.bits"),
        (SVDConfig, {"rank": 0}, "svd.rank"),
        (SVDConfig, {"rank_ratio": 1.5}, "svd.rank_ratio"),
        (DistillConfig, {"temperature": 0}, "distillation.temperature"),
        (DistillConfig, {"alpha": 1.2}, "distillation.alpha"),
        (DistillConfig, {"beta": 1}, "distillation.beta"),
    ],
)
def test_config_from_dict_names_the_bad_field(cls, data, field):
    with pytest.raises(ConfigError, match=rf"^{field}: invalid value"):
        cls.from_dict(data)


def test_unknown_field_lists_the_fields():
    with pytest.raises(ConfigError, match=r"'importance', 'ratio', 'round_to'"):
        PruneConfig.from_dict({"ratioo": 0.5})


def test_config_must_be_a_mapping():
    with pytest.raises(ConfigError, match="quantize: invalid value 4"):
        QuantizeConfig.from_dict(4)


def test_get_method_lists_valid_names():
    with pytest.raises(ConfigError, match="allowed: one of .*'prune'.*'quantize'.*'svd'"):
        get_method("hash")


# --- apply_plan -----------------------------------------------------------------------------


def test_apply_plan_never_mutates_its_input(digits):
    model, x = digits
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = {name: type(m) for name, m in model.named_modules()}
    training = model.training
    student = apply_plan(model, CompressionPlan.from_dict(MIXED), x)
    assert student is not model
    assert {name: type(m) for name, m in model.named_modules()} == types
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert model.training == training
    assert isinstance(student.classifier[1], LowRankLinear)


def test_apply_plan_builds_every_method(digits):
    model, x = digits
    student = apply_plan(model, CompressionPlan.from_dict(MIXED), x).eval()
    assert isinstance(student.features[0], CompressedConv2d) and student.features[0].bits == 8
    assert student.features[3].out_channels == 12  # 16 * (1 - 0.25)
    fc = student.classifier[1]
    assert (fc.out_features, fc.rank) == (64, 32)  # pruned to 64, rank 0.5 * min(512, 64)
    assert isinstance(fc.u, CompressedLinear) and fc.u.bits == 2 and not fc.u.per_channel
    assert student.classifier[3].rank == 4 and student.classifier[3].v.bits == 16
    assert student(x).shape == (4, 10)


# --- structured pruning ---------------------------------------------------------------------


def test_pruning_removes_channels_physically(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"prune": {"ratio": 0.5}}}})
    student = apply_plan(model, plan, x)
    conv, bn, nxt = student.features[3], student.features[4], student.features[7]
    assert conv.weight.shape == (8, 8, 3, 3)
    assert bn.weight.shape == (8,) and bn.running_mean.shape == (8,)
    assert nxt.weight.shape == (16, 8, 3, 3)
    assert n_params(student) < n_params(model)
    assert student.eval()(x).shape == (4, 10)


@pytest.mark.parametrize("ratio", [0.125, 0.25, 0.5, 0.75])
def test_parameter_count_follows_the_ratio(ratio):
    model = build_tiny("tiny_mlp", hidden=32)  # params = hidden * (16 + 1 + 10) + 10
    x = example_input(model)
    student = apply_plan(model, prune_all(model, x, ratio), x)
    keep = student[1].out_features
    assert abs(keep - 32 * (1 - ratio)) <= 1
    assert n_params(student) == keep * 27 + 10
    assert student[3].in_features == keep


@pytest.mark.parametrize("name", ["tiny_residual", "tiny_concat"])
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_residual_and_concat_models_stay_valid(name, ratio):
    model = build_tiny(name, width=8)
    x = example_input(model, batch=3)
    student = apply_plan(model, prune_all(model, x, ratio), x).eval()
    out = student(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert n_params(student) < n_params(model)
    keep = round(8 * (1 - ratio))
    if name == "tiny_residual":  # the addition forces one width on stem and block output
        assert student.stem[0].out_channels == student.block[3].out_channels == keep
    else:  # the fusing conv reads both branches
        branches = student.left[0].out_channels + student.right[0].out_channels
        assert student.fuse[0].in_channels == branches == 2 * keep


def test_pruning_one_side_of_a_residual_prunes_its_coupled_layer():
    model = build_tiny("tiny_residual", width=8)
    x = example_input(model)
    plan = CompressionPlan.from_dict({"layers": {"stem.0": {"prune": {"ratio": 0.5}}}})
    student = apply_plan(model, plan, x)
    assert student.stem[0].out_channels == student.block[3].out_channels == 4
    assert student.block[0].out_channels == 8  # not coupled to the addition
    assert student.head[2].in_features == 4


@pytest.mark.parametrize("round_to", [2, 4, 8])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.6])
def test_round_to_keeps_the_nearest_multiple(round_to, ratio):
    model = build_model_wide()
    x = example_input(model)
    student = apply_plan(model, prune_all(model, x, ratio, round_to=round_to), x)
    for name in ("features.0", "features.3", "features.7", "classifier.1"):
        before, after = model.get_submodule(name), student.get_submodule(name)
        channels = before.weight.shape[0]
        keep = after.weight.shape[0]
        assert keep % round_to == 0, (name, keep)
        assert abs(keep - channels * (1 - ratio)) <= round_to / 2, (name, keep)
    assert student.eval()(x).shape == (2, 10)


def test_round_to_does_not_round_down_to_a_far_multiple():
    model = build_model_wide()  # features.0 has 16 channels: 0.3 keeps 11.2 -> 12, not 8
    x = example_input(model)
    plan = CompressionPlan.from_dict(
        {"layers": {"features.0": {"prune": {"ratio": 0.3, "round_to": 4}}}})
    assert apply_plan(model, plan, x).features[0].out_channels == 12


def test_importance_picks_the_strongest_channels():
    model = build_tiny("tiny_mlp", hidden=8)
    x = example_input(model)
    with torch.no_grad():
        model[1].weight.mul_(0.01)
        model[1].weight[[1, 5]] *= 1000  # channels 1 and 5 dominate
    plan = CompressionPlan.from_dict({"layers": {"1": {"prune": {"ratio": 0.75}}}})
    student = apply_plan(model, plan, x)
    assert torch.equal(student[1].weight, model[1].weight[[1, 5]])


# --- low rank -------------------------------------------------------------------------------


def test_svd_at_full_rank_reproduces_outputs():
    model = build_tiny("tiny_mlp", hidden=32)  # layer "1" is Linear(16, 32): full rank 16
    x = example_input(model, batch=8)
    student = copy.deepcopy(model)
    student[1] = factorize_linear(model[1], 16)
    assert isinstance(student[1], LowRankLinear) and student[1].rank == 16
    torch.testing.assert_close(student(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("rank", [11, 16])
def test_svd_that_would_grow_the_layer_is_refused(rank):
    model = build_tiny("tiny_mlp", hidden=32)  # Linear(16, 32): rank r stores 48 r values
    x = example_input(model)
    plan = CompressionPlan.from_dict({"layers": {"1": {"svd": {"rank": rank}}}})
    with pytest.raises(PlanError, match=r"^1: svd rank .* not fewer than the layer's 512; "
                                        r"use a rank below 11"):
        apply_plan(model, plan, x)
    assert max_useful_rank(32, 16) == 10


@pytest.mark.parametrize("rank", [1, 4, 9])
def test_reduced_rank_parameter_count(rank):
    model = build_tiny("tiny_mlp", hidden=32)
    x = example_input(model)
    plan = CompressionPlan.from_dict({"layers": {"1": {"svd": {"rank": rank}}}})
    layer = apply_plan(model, plan, x)[1]
    assert n_params(layer) == rank * (16 + 32) + 32
    assert layer.u.weight.shape == (rank, 16) and layer.v.weight.shape == (32, rank)


def test_reduced_rank_is_the_best_approximation():
    layer = nn.Linear(16, 32)
    model = nn.Sequential(layer)
    plan = CompressionPlan.from_dict({"layers": {"0": {"svd": {"rank_ratio": 0.25}}}})
    low = apply_plan(model, plan, torch.randn(2, 16))[0]
    assert low.rank == 4
    product = low.v.weight @ low.u.weight
    singular = torch.linalg.svdvals(layer.weight.detach())
    error = torch.linalg.matrix_norm(layer.weight.detach() - product)  # Eckart-Young
    torch.testing.assert_close(error, singular[4:].norm(), atol=1e-4, rtol=1e-4)


# --- quantization ---------------------------------------------------------------------------


def _quantized(bits: int, per_channel: bool = True, shape=(6, 300)) -> torch.Tensor:
    layer = CompressedLinear(shape[1], shape[0], bits=bits, per_channel=per_channel).eval()
    with torch.no_grad():
        layer.weight.normal_()
        layer.calibrate()  # the step size is state: refit it to the new weights
        return layer.effective_weight()


@pytest.mark.parametrize("bits", INT_BITS)
def test_per_channel_quantization_has_at_most_2_pow_bits_values_per_channel(bits):
    weight = _quantized(bits)
    counts = [row.unique().numel() for row in weight]
    assert max(counts) <= 2**bits
    if bits == 1:
        assert set(counts) == {2}
    else:  # the grid is really used, not collapsed onto a few levels
        assert min(counts) > 2 ** (bits - 2)
    assert weight.unique().numel() > 2**bits  # scales differ across channels


@pytest.mark.parametrize("bits", INT_BITS)
def test_per_tensor_quantization_has_at_most_2_pow_bits_values(bits):
    weight = _quantized(bits, per_channel=False)
    assert weight.unique().numel() <= 2**bits


def test_one_bit_is_sign_times_mean_magnitude_per_channel():
    layer = CompressedLinear(50, 4, bits=1).eval()
    with torch.no_grad():
        q = layer.effective_weight()
    for row, w in zip(q, layer.weight.detach(), strict=True):
        assert row.unique().numel() == 2
        scale = w.abs().mean()
        torch.testing.assert_close(row, torch.where(w >= 0, scale, -scale))


def test_sixteen_bits_is_float16_representable():
    weight = _quantized(16)
    assert torch.equal(weight, weight.half().float())
    assert weight.unique().numel() > 2**8


def _fake_quantize(w: torch.Tensor, bits: int) -> torch.Tensor:
    scale, _ = init_scale(w, bits, per_channel=True, symmetric=True)
    return fake_quantize(w, channel_view(scale, w, True), None, bits)


def test_quantization_error_shrinks_with_bits():
    torch.manual_seed(1)
    w = torch.randn(8, 64)
    errors = [(_fake_quantize(w, b) - w).abs().max().item() for b in range(2, 9)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] <= w.abs().max().item() / 127  # half a step of 8 bits, per channel


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_straight_through_gradient(bits):
    quant = CompressedLinear(16, 8, bits=bits).train()
    x = torch.randn(5, 16)
    (quant(x) ** 2).sum().backward()
    ref = nn.Linear(16, 8)
    with torch.no_grad():
        ref.weight.copy_(quant.effective_weight())
        ref.bias.copy_(quant.bias)
    (ref(x) ** 2).sum().backward()
    torch.testing.assert_close(quant.weight.grad, ref.weight.grad)
    torch.testing.assert_close(quant.bias.grad, ref.bias.grad)
    assert quant.weight.grad.abs().sum() > 0  # rounding alone would give zero gradient


def test_quantized_conv_matches_a_float_conv_with_the_effective_weight():
    conv = CompressedConv2d(3, 4, 3, padding=1, bits=4).eval()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        expected = F.conv2d(x, _fake_quantize(conv.weight, 4), conv.bias, padding=1)
        torch.testing.assert_close(conv(x), expected)


def test_eval_cache_follows_weight_updates():
    layer = CompressedLinear(8, 4, bits=4).eval()
    with torch.no_grad():
        first = layer.effective_weight().clone()
        layer.weight.mul_(2)
        layer.weight_scale.mul_(2)  # same codes, twice the step
        second = layer.effective_weight()
    torch.testing.assert_close(second, first * 2)


# --- distillation ---------------------------------------------------------------------------

STUDENT = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
TEACHER = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
LABELS = torch.tensor([1, 2])


def test_distillation_at_alpha_one_is_cross_entropy():
    config = DistillConfig(temperature=4.0, alpha=1.0)
    expected = F.cross_entropy(STUDENT, LABELS)
    torch.testing.assert_close(distillation_loss(STUDENT, TEACHER, LABELS, config), expected)
    torch.testing.assert_close(
        distillation_loss(STUDENT, None, LABELS, DistillConfig(alpha=0.3)), expected)


def test_distillation_matches_a_hand_computation():
    t, alpha = 2.0, 0.3
    p_student = torch.softmax(STUDENT / t, dim=1)
    p_teacher = torch.softmax(TEACHER / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - p_student.log())).sum() / len(STUDENT)
    probs = torch.softmax(STUDENT, dim=1)
    ce = -(probs[0, 1].log() + probs[1, 2].log()) / 2
    expected = alpha * ce + (1 - alpha) * t * t * kl
    loss = distillation_loss(STUDENT, TEACHER, LABELS, DistillConfig(temperature=t, alpha=alpha))
    torch.testing.assert_close(loss, expected)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-6)


def test_distillation_does_not_backpropagate_into_the_teacher():
    teacher = TEACHER.clone().requires_grad_()
    student = STUDENT.clone().requires_grad_()
    distillation_loss(student, teacher, LABELS, DistillConfig(alpha=0.0)).backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0


def test_coupled_layers_are_one_group_with_one_prune_knob():
    model = build_tiny("tiny_residual", width=8)
    layers = {lay.name: lay for lay in compressible_layers(model, example_input(model))}
    assert layers["stem.0"].coupled == layers["block.3"].coupled == ("stem.0", "block.3")
    assert layers["block.0"].coupled == ("block.0",)
    assert [n for n, lay in layers.items() if lay.prunable] == ["stem.0", "block.0"]


def test_coupled_layers_with_different_ratios_are_refused():
    model = build_tiny("tiny_residual", width=8)
    x = example_input(model)
    plan = CompressionPlan.from_dict({"layers": {"stem.0": {"prune": {"ratio": 0.25}},
                                                 "block.3": {"prune": {"ratio": 0.75}}}})
    with pytest.raises(PlanError, match="stem.0: its output channels are pruned together with "
                                        "block.3.*0.25 and 0.75"):
        apply_plan(model, plan, x)
