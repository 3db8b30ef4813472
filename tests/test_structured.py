"""Tests of autocompress.methods.structured: block-circulant and hashed linear layers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.export import load_compressed, save_compressed
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.methods.structured import (
    CirculantConfig,
    CirculantLinear,
    HashedConfig,
    HashedLinear,
    circulant_linear,
    hash_tables,
    hashed_linear,
    project_block_circulant,
)
from autocompress.zoo import build_model


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def dense(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


SHAPES = [(16, 16, 4), (20, 12, 8), (7, 5, 3), (12, 30, 5)]  # (in, out, block)


# --- block-circulant ------------------------------------------------------------------------


@pytest.mark.parametrize(("inp", "out", "block"), SHAPES)
def test_fft_forward_is_the_dense_block_circulant_product(inp, out, block):
    layer = CirculantLinear(inp, out, block)
    weight = layer.dense_weight()
    assert weight.shape == (out, inp)
    for i in range(0, out, block):  # every block is circulant: C[i, j] = c[(i - j) mod b]
        for j in range(0, inp, block):
            c = layer.weight[i // block, j // block].tolist()
            for r in range(min(block, out - i)):
                row = [c[(r - k) % block] for k in range(min(block, inp - j))]
                assert weight[i + r, j:j + block].tolist() == row
    x = torch.randn(3, 2, inp)
    torch.testing.assert_close(layer(x), x @ weight.T + layer.bias, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("inp", "out", "block"), SHAPES)
def test_a_block_circulant_weight_is_reproduced_exactly(inp, out, block):
    source = CirculantLinear(inp, out, block)
    layer = circulant_linear(dense(source.dense_weight(), source.bias), block)
    torch.testing.assert_close(layer.dense_weight(), source.dense_weight())
    if inp % block == 0 and out % block == 0:  # no padded cell: the vectors themselves
        torch.testing.assert_close(layer.weight, source.weight)
    x = torch.randn(4, inp)
    torch.testing.assert_close(layer(x), source(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("inp", "out", "block"), SHAPES)
def test_projection_is_the_least_squares_fit(inp, out, block):
    weight = torch.randn(out, inp, dtype=torch.float64)
    fitted = CirculantLinear(inp, out, block).double()
    with torch.no_grad():
        fitted.weight.copy_(project_block_circulant(weight, block))
    residual = weight - fitted.dense_weight().detach()
    for _ in range(3):  # the residual is orthogonal to every block-circulant direction
        direction = CirculantLinear(inp, out, block).double().dense_weight().detach()
        assert abs(torch.sum(residual * direction).item()) < 1e-9


def test_block_one_is_the_dense_layer():
    layer = nn.Linear(6, 4)
    x = torch.randn(3, 6)
    torch.testing.assert_close(circulant_linear(layer, 1)(x), layer(x), atol=1e-5, rtol=1e-5)
    assert CirculantConfig(block=1).is_identity() and not CirculantConfig().is_identity()
    assert CompressionPlan.from_dict({"layers": {"fc": {"circulant": {"block": 1}}}}).layers == {}


@pytest.mark.parametrize(("inp", "out", "block", "bias"), [
    (1024, 128, 64, True), (20, 12, 8, True), (128, 10, 8, False), (7, 5, 3, True),
])
def test_circulant_parameter_count(inp, out, block, bias):
    layer = CirculantLinear(inp, out, block, bias)
    blocks = -(-out // block) * -(-inp // block)
    assert n_params(layer) == blocks * block + (out if bias else 0)
    assert layer.weight.shape == (-(-out // block), -(-inp // block), block)


@pytest.mark.parametrize(("inp", "out", "block"), [
    (1024, 128, 64), (128, 10, 8), (5, 100, 4), (3, 3, 2), (1, 7, 1),
])
def test_default_block_is_a_power_of_two_up_to_64(inp, out, block):
    assert CirculantConfig().block_for(nn.Linear(inp, out)) == block


def test_a_block_larger_than_the_layer_is_refused_by_name():
    with pytest.raises(PlanError, match="fc2: circulant block 40 exceeds"):
        CirculantConfig(block=40).block_for(nn.Linear(30, 20), "fc2")


def test_circulant_gradients_reach_the_vectors():
    layer = CirculantLinear(12, 8, 4)
    layer(torch.randn(5, 12)).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


# --- hashed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("compression", "size"), [(1e-6, 1), (0.125, 240), (1.0, 1920)])
def test_hashed_parameter_count(compression, size):
    layer = nn.Linear(64, 30)
    config = HashedConfig(compression=compression)
    assert config.size_for(layer) == size
    hashed = hashed_linear(layer, size)
    assert n_params(hashed) == size + 30
    assert set(hashed.state_dict()) == {"weight", "bias"}  # hash tables are not stored


def test_hash_tables_are_deterministic_and_seeded():
    a, b = HashedLinear(40, 30, 100, seed=3), HashedLinear(40, 30, 100, seed=3)
    assert torch.equal(a.index, b.index) and torch.equal(a.sign, b.sign)
    index, sign = hash_tables(40, 30, 100, seed=4)
    assert not torch.equal(index, a.index)
    assert index.shape == sign.shape == (30, 40)
    assert index.min() >= 0 and index.max() < 100
    assert set(sign.unique().tolist()) == {-1.0, 1.0}
    assert abs(sign.mean().item()) < 0.1  # balanced signs
    assert torch.bincount(index.reshape(-1), minlength=100).min() > 0  # no idle weight


def test_hashed_gradient_is_the_signed_sum_over_each_bucket():
    layer = HashedLinear(10, 6, 7, seed=1)
    x = torch.randn(4, 10)
    upstream = torch.randn(4, 6)
    (layer(x) * upstream).sum().backward()
    cell_grad = upstream.T @ x  # dL/dV
    expected = torch.zeros(7).index_add_(0, layer.index.reshape(-1),
                                         (layer.sign * cell_grad).reshape(-1))
    torch.testing.assert_close(layer.weight.grad, expected)


def test_a_hashed_weight_is_reproduced_exactly():
    source = HashedLinear(24, 16, 50, seed=7)
    layer = hashed_linear(dense(source.virtual_weight().detach(), source.bias), 50, seed=7)
    torch.testing.assert_close(layer.weight, source.weight)
    x = torch.randn(3, 24)
    torch.testing.assert_close(layer(x), source(x))


def test_hashed_projection_is_the_least_squares_fit():
    original = dense(torch.randn(16, 24)).double()
    weight = original.weight.detach()
    layer = hashed_linear(original, 40, seed=2)
    residual = layer.sign * (weight - layer.virtual_weight().detach())
    per_weight = torch.zeros(40, dtype=torch.float64).index_add_(
        0, layer.index.reshape(-1), residual.reshape(-1))
    torch.testing.assert_close(per_weight, torch.zeros_like(per_weight))  # zero gradient


def test_compression_one_keeps_the_size_but_works():
    layer = nn.Linear(32, 16)
    plan = CompressionPlan.from_dict({"layers": {"0": {"hashed": {"compression": 1.0}}}})
    hashed = apply_plan(nn.Sequential(layer), plan, torch.randn(2, 32))[0]
    assert isinstance(hashed, HashedLinear)
    assert hashed.weight.numel() == layer.weight.numel()
    used = hashed.index.unique().numel()
    assert used < hashed.size  # a hash is no permutation: some cells still collide
    x = torch.randn(8, 32)
    error = (hashed(x) - layer(x)).square().mean()
    assert torch.isfinite(error) and error < layer(x).square().mean()


def test_eval_cache_follows_weight_updates():
    layer = HashedLinear(8, 4, 10).eval()
    with torch.no_grad():
        first = layer.virtual_weight()
        assert layer.virtual_weight() is first
        layer.weight.add_(1.0)
        second = layer.virtual_weight()
    assert second is not first
    torch.testing.assert_close(second, first + layer.sign)


@pytest.mark.parametrize("layer", [HashedLinear(9, 5, 11, seed=2**31, bias=False),
                                   CirculantLinear(9, 5, 4)])
def test_export_args_round_trip_through_json(layer):
    rebuilt = type(layer).from_export_args(json.loads(json.dumps(layer.export_args())))
    rebuilt.load_state_dict(layer.state_dict(), strict=True)
    x = torch.randn(2, 9)
    torch.testing.assert_close(rebuilt(x), layer(x))


# --- plans, configs and artifacts -----------------------------------------------------------


@pytest.mark.parametrize("methods", [
    {"classifier.1": {"circulant": {}}, "classifier.3": {"circulant": {"block": "4"}}},
    {"classifier.1": {"hashed": {"compression": "0.05", "seed": "9"}},
     "classifier.3": {"hashed": {}}},
])
def test_apply_plan_and_save_load_reproduce_outputs(methods, tmp_path):
    model = build_model("digits_cnn", width=8)
    x = torch.randn(8, 1, 8, 8)
    student = apply_plan(model, CompressionPlan.from_dict({"layers": methods}), x).eval()
    kind = CirculantLinear if "circulant" in methods["classifier.1"] else HashedLinear
    assert isinstance(student.classifier[1], kind) and isinstance(student.classifier[3], kind)
    if kind is CirculantLinear:  # Linear(256, 128): default block 64
        assert student.classifier[1].block == 64 and student.classifier[3].block == 4
    else:
        assert student.classifier[1].size == round(0.05 * 256 * 128)
    save_compressed(student, tmp_path / "model.acz")
    loaded = load_compressed(tmp_path / "model.acz")
    assert type(loaded.classifier[1]) is kind
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("config", [
    CirculantConfig(), CirculantConfig(block=16), HashedConfig(compression=0.3, seed=12),
])
def test_config_round_trips_through_strings(config):
    as_strings = {k: str(v) for k, v in config.to_dict().items()}
    assert type(config).from_dict(as_strings) == config
    plan = CompressionPlan.from_dict({"layers": {"classifier.1": {config.method: as_strings}}})
    assert CompressionPlan.from_params(plan.to_params()) == plan
    assert plan.layers["classifier.1"] == (config,)


@pytest.mark.parametrize(("cls", "data", "field"), [
    (CirculantConfig, {"block": "0"}, "circulant.block"),
    (CirculantConfig, {"block": "2.5"}, "circulant.block"),
    (HashedConfig, {"compression": "0"}, "hashed.compression"),
    (HashedConfig, {"compression": 1.5}, "hashed.compression"),
    (HashedConfig, {"seed": -1}, "hashed.seed"),
    (HashedConfig, {"seed": 2**32}, "hashed.seed"),
])
def test_bad_config_names_the_field(cls, data, field):
    with pytest.raises(ConfigError, match=rf"^{field}: invalid value"):
        cls.from_dict(data)


def test_methods_refuse_convolutions(digits):
    model, x = digits
    plan = CompressionPlan.from_dict({"layers": {"features.0": {"hashed": {}}}})
    with pytest.raises(PlanError, match="features.0: hashed applies to Linear"):
        apply_plan(model, plan, x)
