"""Tests of autocompress.methods.decomposition: Tucker-2 and CP factorizations of convs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.export import load_compressed, save_compressed
from autocompress.methods import CompressedConv2d, CompressionPlan, apply_plan
from autocompress.methods.base import ApplyContext, get_method
from autocompress.methods.decomposition import (
    CPConfig,
    CPConv2d,
    TuckerConfig,
    TuckerConv2d,
    cp_conv,
    cp_max_rank,
    tucker_conv,
)
from autocompress.testing import example_input
from autocompress.zoo import build_model

GEOMETRIES = [
    {"kernel_size": 3, "stride": 1, "padding": 0},
    {"kernel_size": 3, "stride": 2, "padding": 1},
    {"kernel_size": (3, 5), "stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)},
    {"kernel_size": 3, "padding": "same"},
    {"kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def relative_error(new: nn.Module, conv: nn.Conv2d, x: torch.Tensor) -> float:
    with torch.no_grad():
        y = conv(x)
        return ((new(x) - y).norm() / y.norm()).item()


def assert_reproduces(new: nn.Module, conv: nn.Conv2d, x: torch.Tensor, rtol: float) -> None:
    with torch.no_grad():
        y = conv(x)
        torch.testing.assert_close(new(x), y, rtol=0, atol=rtol * y.abs().max().item())


def cp_kernel(c_out: int, c_in: int, kh: int, kw: int, rank: int) -> torch.Tensor:
    """A conv weight of CP rank ``rank`` exactly."""
    a, b, c, d = (torch.randn(n, rank) for n in (c_out, c_in, kh, kw))
    return torch.einsum("or,ir,yr,xr->oiyx", a, b, c, d) / rank


# --- Tucker ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_full_rank_tucker_reproduces_the_conv(stride, padding, bias):
    conv = nn.Conv2d(6, 10, 3, stride=stride, padding=padding, bias=bias)
    new = tucker_conv(conv, 6, 10)
    assert isinstance(new, TuckerConv2d) and (new.last.bias is not None) == bias
    assert_reproduces(new, conv, torch.randn(2, 6, 9, 9), 1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES[2:], ids=["anisotropic", "same", "reflect"])
def test_full_rank_tucker_keeps_any_geometry(geometry):
    conv = nn.Conv2d(4, 5, **geometry)
    assert_reproduces(tucker_conv(conv, 4, 5), conv, torch.randn(2, 4, 9, 10), 1e-5)


def test_reduced_tucker_has_the_formula_parameter_count():
    conv = nn.Conv2d(16, 24, 3, padding=1)
    r_in, r_out = TuckerConfig(rank_ratio=0.5).ranks_for(conv)
    assert (r_in, r_out) == (8, 12)
    new = tucker_conv(conv, r_in, r_out)
    assert n_params(new) == r_in * 16 + r_in * r_out * 9 + r_out * 24 + 24 < n_params(conv)
    assert new(torch.randn(1, 16, 6, 6)).shape == (1, 24, 6, 6)


def test_absolute_tucker_ranks_override_the_ratio():
    conv = nn.Conv2d(16, 24, 3)
    assert TuckerConfig(rank_ratio=0.5, in_rank=3).ranks_for(conv) == (3, 12)
    assert TuckerConfig(out_rank=5).ranks_for(conv) == (16, 5)
    assert TuckerConfig(rank_ratio=0.0).ranks_for(conv) == (1, 1)


def test_tucker_error_falls_with_rank():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(4, 8, 8, 8)
    errors = [relative_error(tucker_conv(conv, r, 2 * r), conv, x) for r in (2, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5


# --- CP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["plain", "strided", "anisotropic",
                                                      "same", "reflect"])
def test_cp_at_a_kernels_exact_rank_reproduces_the_conv(geometry):
    conv = nn.Conv2d(6, 10, **geometry)
    conv.weight.data = cp_kernel(*conv.weight.shape, rank=4)
    new = cp_conv(conv, 4)
    assert isinstance(new, CPConv2d)
    assert new.vertical.groups == new.horizontal.groups == 4
    assert_reproduces(new, conv, torch.randn(2, 6, 11, 12), 1e-4)


def test_cp_has_the_formula_parameter_count_and_output_shape():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
    new = cp_conv(conv, 10)
    assert n_params(new) == 10 * (8 + 3 + 3 + 16) + 16 < n_params(conv)
    assert new(torch.randn(2, 8, 9, 9)).shape == conv(torch.randn(2, 8, 9, 9)).shape


def test_cp_error_falls_with_rank_on_a_random_conv():
    # An i.i.d. kernel has no low-rank structure: the worst case. Measured relative output
    # errors (8 -> 16 channels, 3x3, break-even rank 38): 0.91 / 0.78 / 0.55 / 0.36 / 0.16 at
    # ranks 4 / 10 / 19 / 28 / 38. The bounds leave room for BLAS differences only.
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    x = torch.randn(4, 8, 8, 8)
    assert cp_max_rank(conv) == 8 * 16 * 9 // (8 + 16 + 3 + 3) == 38
    errors = [relative_error(cp_conv(conv, r), conv, x) for r in (4, 10, 19, 28, 38)]
    assert errors == sorted(errors, reverse=True)
    assert errors[2] < 0.65 and errors[-1] < 0.25


def test_cp_is_deterministic():
    conv = nn.Conv2d(4, 6, 3)
    first, second = cp_conv(conv, 5), cp_conv(conv, 5)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cp_rank_comes_from_the_break_even_rank():
    conv = nn.Conv2d(8, 16, 3)
    assert CPConfig(rank_ratio=0.5).rank_for(conv) == 19
    assert CPConfig(rank=7).rank_for(conv) == 7
    assert CPConfig(rank_ratio=0.0).rank_for(conv) == 1


# --- configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    TuckerConfig(), TuckerConfig(rank_ratio=0.25, in_rank=3, out_rank=None),
    CPConfig(), CPConfig(rank_ratio=0.5, rank=7),
])
def test_configs_round_trip_through_dicts(config):
    assert type(config).from_dict(config.to_dict()) == config
    as_strings = {k: str(v) for k, v in config.to_dict().items()}  # as MLflow returns them
    assert type(config).from_dict(as_strings) == config


def test_full_rank_configs_are_identity_and_dropped_from_plans():
    assert TuckerConfig().is_identity() and CPConfig().is_identity()
    assert not TuckerConfig(out_rank=4).is_identity() and not CPConfig(rank=4).is_identity()
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"tucker": {}, "cp": {}}}})
    assert plan.layers == {}


def test_plan_params_round_trip():
    plan = CompressionPlan.from_dict({"layers": {
        "features.0": {"cp": {"rank": 3}},
        "features.3": {"tucker": {"rank_ratio": 0.5, "out_rank": 6}},
    }})
    assert CompressionPlan.from_params(plan.to_params()) == plan


@pytest.mark.parametrize(("cls", "data", "field"), [
    (TuckerConfig, {"rank_ratio": 1.5}, "tucker.rank_ratio"),
    (TuckerConfig, {"in_rank": 0}, "tucker.in_rank"),
    (TuckerConfig, {"out_rank": "half"}, "tucker.out_rank"),
    (TuckerConfig, {"rank": 4}, "tucker.rank"),
    (CPConfig, {"rank_ratio": -0.1}, "cp.rank_ratio"),
    (CPConfig, {"rank": 0}, "cp.rank"),
])
def test_bad_configs_name_the_field(cls, data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        cls.from_dict(data)


# --- plans and errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("methods", "message"), [
    ({"tucker": {"in_rank": 9}}, r"features\.3: tucker in_rank 9 exceeds the layer's 8 input"),
    ({"tucker": {"out_rank": 17}}, r"features\.3: tucker out_rank 17 exceeds .* 16 output"),
    ({"cp": {"rank": 39}}, r"features\.3: cp rank 39 exceeds the layer's break-even rank 38"),
])
def test_ranks_above_the_layer_are_plan_errors(digits, methods, message):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.3": methods}})
    with pytest.raises(PlanError, match=message):
        apply_plan(model, plan, x)


@pytest.mark.parametrize("method", ["tucker", "cp"])
def test_a_linear_target_is_refused_naming_the_layer(digits, method):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"classifier.1": {method: {"rank_ratio": 0.5}}}})
    with pytest.raises(PlanError, match=rf"classifier\.1: {method} applies to Conv2d, not Linear"):
        apply_plan(model, plan, x)
    with pytest.raises(PlanError, match=r"fc: .* applies to Conv2d, not Linear"):
        TuckerConfig(rank_ratio=0.5).ranks_for(nn.Linear(4, 4), "fc")


@pytest.mark.parametrize("config", [TuckerConfig(rank_ratio=0.5), CPConfig(rank=2)])
def test_a_grouped_conv_is_refused_naming_the_layer(config):
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))
    apply = get_method(config.method).apply
    with pytest.raises(PlanError, match=rf"0: {config.method} needs a dense conv .*groups=2"):
        apply(model, {"0": config}, ApplyContext(torch.randn(1, 4, 5, 5)))


def test_tucker_plan_on_digits_cnn_saves_and_loads(tmp_path):
    model = build_model("digits_cnn").eval()
    x = example_input(model, batch=4)
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"tucker": {"rank_ratio": 0.5}}}})
    student = apply_plan(model, plan, x)
    layer = student.features[3]
    assert isinstance(layer, TuckerConv2d) and (layer.in_rank, layer.out_rank) == (16, 32)
    assert n_params(student) < n_params(model)
    save_compressed(student, tmp_path / "m.acz")
    loaded = load_compressed(tmp_path / "m.acz")
    assert isinstance(loaded.features[3], TuckerConv2d)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("methods", [
    {"tucker": {"rank_ratio": 0.5}, "quantize": {"bits": 4}},
    {"cp": {"rank_ratio": 0.25}, "quantize": {"bits": 4}},
])
def test_factorize_then_quantize_round_trips(digits, tmp_path, methods):
    model, x = digits
    model.eval()
    plan = CompressionPlan.from_dict({"layers": {"features.3": methods}})
    student = apply_plan(model, plan, x)
    leaves = [m for m in student.features[3].children()]
    assert leaves and all(isinstance(m, CompressedConv2d) and m.bits == 4 for m in leaves)
    save_compressed(student, tmp_path / "m.acz")
    loaded = load_compressed(tmp_path / "m.acz")
    assert type(loaded.features[3]) is type(student.features[3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=1e-5)


def test_pruned_then_factorized_ranks_follow_the_pruned_layer(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {
        "features.3": {"prune": {"ratio": 0.5}, "tucker": {"rank_ratio": 0.5}},
    }})
    student = apply_plan(model, plan, x)
    layer = student.features[3]
    assert (layer.in_channels, layer.out_channels) == (8, 8)
    assert (layer.in_rank, layer.out_rank) == (4, 4)
    assert student(x).shape == (4, 10)
