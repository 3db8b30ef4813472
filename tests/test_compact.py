"""Tests of autocompress.methods.compact: depthwise-separable and grouped-pointwise convs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.export import load_compressed, save_compressed
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.methods.compact import (
    DepthwiseSeparableConfig,
    DepthwiseSeparableConv2d,
    GroupedPointwiseConfig,
    GroupedPointwiseConv2d,
    depthwise_separable,
    grouped_pointwise,
    layer_input,
    refit_pointwise,
)
from autocompress.zoo import build_model


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def effective_weight(layer: DepthwiseSeparableConv2d | GroupedPointwiseConv2d) -> torch.Tensor:
    """The dense ``(C_out, C_in, kh, kw)`` weight the two convs compose to."""
    spatial, pointwise = layer.spatial.weight, layer.pointwise.weight[:, :, 0, 0]
    groups = layer.spatial.groups
    rank = spatial.shape[0] // groups
    blocks = [
        torch.einsum("om,mckl->ockl", pointwise[:, i * rank:(i + 1) * rank],
                     spatial[i * rank:(i + 1) * rank])
        for i in range(groups)
    ]
    return torch.cat(blocks, dim=1)


def low_rank_conv(c_in: int, c_out: int, groups: int, rank: int, **kwargs) -> nn.Conv2d:
    """A 3x3 conv whose weight, restricted to each input group, has rank ``rank``."""
    conv = nn.Conv2d(c_in, c_out, 3, **kwargs)
    per_group = c_in // groups
    left = torch.randn(groups, c_out, rank)
    right = torch.randn(groups, rank, per_group * 9)
    weight = (left @ right).reshape(groups, c_out, per_group, 3, 3).transpose(0, 1)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(c_out, c_in, 3, 3))
    return conv


def output_mse(layer: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> float:
    with torch.no_grad():
        return torch.mean((layer(x) - conv(x)) ** 2).item()


@pytest.fixture
def calibrated():
    """A digits_cnn (width 8), a calibration batch and the inputs features.3 receives."""
    model = build_model("digits_cnn", width=8).eval()
    inputs = torch.randn(32, 1, 8, 8)
    return model, inputs, layer_input(model, "features.3", inputs)


# --- initialisation -------------------------------------------------------------------------


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize(
    "geometry",
    [{"padding": 1}, {"stride": 2, "padding": 2, "dilation": 2}, {"padding_mode": "reflect",
                                                                   "padding": 1}],
)
def test_a_separable_conv_is_reproduced(multiplier, geometry):
    conv = low_rank_conv(5, 7, groups=5, rank=multiplier, **geometry)  # W[:, c] of rank m
    layer = depthwise_separable(conv, multiplier)
    x = torch.randn(2, 5, 9, 9)
    torch.testing.assert_close(layer(x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [2, 4])
def test_a_grouped_low_rank_conv_is_reproduced(groups):
    conv = low_rank_conv(8, 8, groups=groups, rank=8 // groups, padding=1)
    layer = grouped_pointwise(conv, groups)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(layer(x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("build", "groups", "rank"), [
    (lambda conv: depthwise_separable(conv, 2), 6, 2),
    (lambda conv: grouped_pointwise(conv, 3), 3, 4),
])
def test_svd_init_is_the_best_weight_approximation(build, groups, rank):
    conv = nn.Conv2d(6, 12, 3)
    layer = build(conv)
    error = torch.linalg.matrix_norm((effective_weight(layer) - conv.weight).reshape(12, -1))
    blocks = conv.weight.detach().reshape(12, groups, -1).transpose(0, 1)
    tail = torch.linalg.svdvals(blocks)[:, rank:]  # Eckart-Young, group by group
    torch.testing.assert_close(error, tail.norm(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["depthwise", "grouped"])
def test_lstsq_beats_svd_beats_random_on_calibration_data(calibrated, method):
    model, inputs, x = calibrated
    conv = model.features[3]  # Conv2d(8, 16, 3, padding=1, bias=False)
    errors = {}
    for init in ("svd", "lstsq"):
        plan = CompressionPlan.from_dict({"layers": {"features.3": {method: {"init": init}}}})
        student = apply_plan(model, plan, inputs[:2], calibration=(inputs, None))
        errors[init] = output_mse(student.features[3], conv, x)
    random = (DepthwiseSeparableConv2d(8, 16, 3, padding=1, bias=False) if method == "depthwise"
              else GroupedPointwiseConv2d(8, 16, 3, padding=1, groups=2, bias=False))
    errors["random"] = output_mse(random, conv, x)
    assert errors["lstsq"] < 0.9 * errors["svd"] < 0.9 * errors["random"]


def test_lstsq_fits_the_bias_too(calibrated):
    _, _, x = calibrated
    conv = nn.Conv2d(8, 16, 3, padding=1)
    with torch.no_grad():
        conv.bias.add_(3.0)
    layer = depthwise_separable(conv)
    before = output_mse(layer, conv, x)
    refit_pointwise(layer, conv, x)
    assert output_mse(layer, conv, x) < before
    assert not torch.equal(layer.pointwise.bias, conv.bias)


def test_lstsq_without_calibration_is_the_svd_init(digits):
    model, x = digits
    layers = [
        apply_plan(model, CompressionPlan.from_dict(
            {"layers": {"features.3": {"depthwise": {"init": init}}}}), x).features[3]
        for init in ("svd", "lstsq")
    ]
    svd, lstsq = (layer.state_dict() for layer in layers)
    assert all(torch.equal(svd[key], lstsq[key]) for key in svd)


def test_layer_input_stops_at_the_layer_and_restores_the_mode(calibrated):
    model, inputs, x = calibrated
    model.train()
    with torch.no_grad():
        expected = model.eval().features[:3](inputs)
    model.train()
    torch.testing.assert_close(layer_input(model, "features.3", inputs), expected)
    assert model.training


class _Bypass(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3)

    def forward(self, x):
        return self.used(x)


def test_a_layer_the_batch_never_reaches_is_a_plan_error():
    model = _Bypass()
    with pytest.raises(PlanError, match="unused: the calibration batch never reaches"):
        layer_input(model, "unused", torch.randn(1, 2, 5, 5))


# --- size and refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("multiplier", [1, 2, 9])
def test_depthwise_parameter_count(multiplier):
    layer = depthwise_separable(nn.Conv2d(8, 16, 3, bias=True), multiplier)
    assert n_params(layer) == 8 * multiplier * 9 + 16 * 8 * multiplier + 16
    assert layer.depthwise.groups == 8 and layer.pointwise.kernel_size == (1, 1)


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_grouped_parameter_count(groups):
    layer = grouped_pointwise(nn.Conv2d(8, 16, 3, bias=False), groups)
    assert n_params(layer) == 16 * (8 // groups) * 9 + 16 * 16
    assert layer.grouped.groups == groups


@pytest.mark.parametrize(("conv", "build", "message"), [
    (nn.Conv2d(4, 4, 3, groups=2), depthwise_separable, "groups=1"),
    (nn.Conv2d(4, 4, 1), depthwise_separable, "larger than 1x1"),
    (nn.Conv2d(4, 4, 3), lambda c, name: depthwise_separable(c, 10, name), "10 filters per group"),
    (nn.Conv2d(6, 8, 3), lambda c, name: grouped_pointwise(c, 4, name), "4 groups must divide"),
    (nn.Conv2d(1, 16, 3), lambda c, name: grouped_pointwise(c, 1, name), "more parameters"),
])
def test_unfit_layers_are_refused_by_name(conv, build, message):
    with pytest.raises(PlanError, match=f"conv7: .*{message}"):
        build(conv, name="conv7")


def test_groups_one_is_the_identity():
    assert GroupedPointwiseConfig(groups=1).is_identity()
    assert not DepthwiseSeparableConfig().is_identity()
    assert CompressionPlan.from_dict({"layers": {"f": {"grouped": {"groups": 1}}}}).layers == {}


def test_plan_error_names_the_layer(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"grouped": {"groups": 3}}}})
    with pytest.raises(PlanError, match="features.3: 3 groups"):
        apply_plan(model, plan, x)


# --- plans, configs and artifacts -----------------------------------------------------------


@pytest.mark.parametrize("methods", [
    {"depthwise": {"depth_multiplier": 2}},
    {"grouped": {"groups": 4}},
    {"depthwise": {}, "quantize": {"bits": 4}},
])
def test_apply_plan_and_save_load_reproduce_outputs(methods, tmp_path):
    model = build_model("digits_cnn", width=8)
    inputs = torch.randn(16, 1, 8, 8)
    plan = CompressionPlan.from_dict({"layers": {"features.3": methods}})
    student = apply_plan(model, plan, inputs[:2], calibration=(inputs, None)).eval()
    assert isinstance(student.features[3], (DepthwiseSeparableConv2d, GroupedPointwiseConv2d))
    assert student(inputs).shape == (16, 10)
    save_compressed(student, tmp_path / "model.acz")
    loaded = load_compressed(tmp_path / "model.acz")
    assert type(loaded.features[3]) is type(student.features[3])
    if "quantize" in methods:  # the two convs inside are quantized
        assert type(student.features[3].pointwise) is not nn.Conv2d
        assert type(loaded.features[3].pointwise) is type(student.features[3].pointwise)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), student(inputs), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", [
    DepthwiseSeparableConv2d(4, 6, 3, stride=2, padding=1, depth_multiplier=2),
    GroupedPointwiseConv2d(4, 6, (3, 5), padding="same", groups=2, bias=False),
])
def test_export_args_round_trip_through_json(layer):
    args = json.loads(json.dumps(layer.export_args()))
    rebuilt = type(layer).from_export_args(args)
    rebuilt.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(rebuilt(x), layer(x))


@pytest.mark.parametrize("config", [
    DepthwiseSeparableConfig(depth_multiplier=3, init="svd"),
    GroupedPointwiseConfig(groups=4, init="lstsq"),
])
def test_config_round_trips_through_strings(config):
    as_strings = {k: str(v) for k, v in config.to_dict().items()}
    assert type(config).from_dict(as_strings) == config
    plan = CompressionPlan.from_dict({"layers": {"features.3": {config.method: as_strings}}})
    assert CompressionPlan.from_params(plan.to_params()) == plan
    assert plan.layers["features.3"] == (config,)


@pytest.mark.parametrize(("cls", "data", "field"), [
    (DepthwiseSeparableConfig, {"depth_multiplier": "0"}, "depthwise.depth_multiplier"),
    (DepthwiseSeparableConfig, {"init": "random"}, "depthwise.init"),
    (GroupedPointwiseConfig, {"groups": 0}, "grouped.groups"),
    (GroupedPointwiseConfig, {"groups": "2.5"}, "grouped.groups"),
])
def test_bad_config_names_the_field(cls, data, field):
    with pytest.raises(ConfigError, match=rf"^{field}: invalid value"):
        cls.from_dict(data)
