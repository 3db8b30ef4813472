from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autocompress.errors import ConfigError, PlanError
from autocompress.methods.regularizers import (
    HardConcreteGate,
    SparsityConfig,
    SparsityRegularizer,
    attach_l0_gates,
    fold_gates,
    gate_keep_ratios,
    l0_penalty,
    l1_penalty,
    remove_gates,
    select_layers,
)
from autocompress.testing import build_tiny, example_input

L0 = SparsityConfig(kind="l0", strength=1.0)


# --- config ----------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [
    SparsityConfig(kind="l1_bn", strength=1e-4),
    SparsityConfig(kind="l0", strength=0.5, layers="block.*, re:stem\\.\\d"),
])
def test_config_round_trips_including_strings(config):
    assert SparsityConfig.from_dict(config.to_dict()) == config
    as_strings = {k: str(v) for k, v in config.to_dict().items()}
    assert SparsityConfig.from_dict(as_strings) == config


@pytest.mark.parametrize("data, field", [
    ({"kind": "l2"}, "kind"),
    ({"strength": -1.0}, "strength"),
    ({"strength": "nan"}, "strength"),
    ({"layers": "a,,b"}, "layers"),
    ({"layers": "a,"}, "layers"),
    ({"scale": 1}, "scale"),
])
def test_config_validates_fields(data, field):
    with pytest.raises(ConfigError, match=rf"^training\.sparsity\.{field}"):
        SparsityConfig.from_dict(data, where="training.sparsity")


def test_zero_strength_is_identity():
    assert SparsityConfig().is_identity()
    assert not SparsityConfig(strength=0.1).is_identity()


# --- layer selection and L1 ------------------------------------------------------------------

def test_select_layers_by_kind_glob_and_exclude():
    model = build_tiny("tiny_residual")
    assert list(select_layers(model, SparsityConfig())) == ["stem.0", "block.0", "block.3",
                                                             "head.2"]
    assert list(select_layers(model, SparsityConfig(kind="l1_bn"))) == ["stem.1", "block.1",
                                                                         "block.4"]
    # A glob keeps only the layers of the kind's type it matches (block.1 is a BatchNorm).
    assert list(select_layers(model, SparsityConfig(layers="block.*"))) == ["block.0", "block.3"]
    assert list(select_layers(model, SparsityConfig(), exclude=["head.2"]))[-1] == "block.3"


def test_unmatched_glob_names_the_glob_and_valid_layers():
    model = build_tiny("tiny_mlp")
    with pytest.raises(PlanError, match=r"'features\.\*' matches no l1_weights.*1, 3"):
        select_layers(model, SparsityConfig(layers="1, features.*"))


def test_l1_weights_equals_hand_computation():
    model = build_tiny("tiny_mlp")
    config = SparsityConfig(kind="l1_weights", strength=0.01)
    expected = 0.01 * (model[1].weight.abs().sum() + model[3].weight.abs().sum())
    torch.testing.assert_close(l1_penalty(model, config), expected)
    only_hidden = SparsityConfig(strength=0.01, layers="1")
    torch.testing.assert_close(l1_penalty(model, only_hidden), 0.01 * model[1].weight.abs().sum())


def test_l1_bn_only_touches_batchnorm_scales():
    model = build_tiny("tiny_residual")
    with torch.no_grad():
        for bn in (model.stem[1], model.block[1], model.block[4]):
            bn.weight.uniform_(-1, 1)
    config = SparsityConfig(kind="l1_bn", strength=2.0)
    penalty = l1_penalty(model, config)
    expected = 2.0 * sum(bn.weight.abs().sum() for bn in (model.stem[1], model.block[1],
                                                          model.block[4]))
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    touched = {n for n, p in model.named_parameters() if p.grad is not None}
    assert touched == {"stem.1.weight", "block.1.weight", "block.4.weight"}


def test_l1_rejects_an_l0_config():
    with pytest.raises(ValueError, match="attach_l0_gates"):
        l1_penalty(build_tiny("tiny_mlp"), L0)


# --- hard-concrete gates ---------------------------------------------------------------------

def test_expected_gate_is_in_unit_interval_and_saturates():
    gate = HardConcreteGate(5)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-20.0, -1.0, 0.0, 1.0, 20.0]))
    z = gate.expected()
    assert ((z >= 0) & (z <= 1)).all()
    assert z[0] == 0 and z[-1] == 1
    assert gate.deterministic_mask().tolist() == [False, True, True, True, True]


def test_new_gates_start_open():
    gate = HardConcreteGate(4)
    assert gate.expected().tolist() == [1.0] * 4


def test_l0_norm_formula_and_monotonic_in_log_alpha():
    gate = HardConcreteGate(3, init_log_alpha=0.5)
    shift = (2 / 3) * math.log(0.1 / 1.1)
    assert gate.l0_norm().item() == pytest.approx(3 / (1 + math.exp(-(0.5 - shift))))
    before = gate.l0_norm().item()
    with torch.no_grad():
        gate.log_alpha.sub_(1.0)
    assert gate.l0_norm().item() < before


def test_training_samples_follow_the_rng_and_eval_is_deterministic():
    gate = HardConcreteGate(64, init_log_alpha=0.0)
    torch.manual_seed(1)
    first, second = gate.sample(), gate.sample()
    assert not torch.equal(first, second)
    assert ((first >= 0) & (first <= 1)).all()
    torch.manual_seed(1)
    assert torch.equal(gate.sample(), first)
    gate.eval()
    assert torch.equal(gate(), gate())
    assert torch.equal(gate.deterministic_mask(), gate.deterministic_mask())


def test_samples_are_differentiable_in_log_alpha():
    gate = HardConcreteGate(64, init_log_alpha=0.0)
    gate.sample().sum().backward()
    assert gate.log_alpha.grad is not None and gate.log_alpha.grad.abs().sum() > 0


# --- gates on a model ------------------------------------------------------------------------

def test_gates_multiply_conv_outputs_channel_wise():
    conv = nn.Conv2d(2, 4, kernel_size=3).eval()
    model = nn.Sequential(conv)
    x = torch.randn(2, 2, 5, 5)
    plain = model(x)
    gates = attach_l0_gates(model, L0)
    gate = gates["0"]
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([20.0, -20.0, 0.0, 20.0]))
    z = gate.expected()
    assert z.tolist()[:2] == [1.0, 0.0] and 0 < z[2] < 1
    torch.testing.assert_close(model(x), plain * z.view(1, 4, 1, 1))
    remove_gates(gates)
    torch.testing.assert_close(model(x), plain)


def test_gates_multiply_linear_outputs_on_the_last_dim():
    model = build_tiny("tiny_mlp").eval()
    x = example_input(model)
    gates = attach_l0_gates(model, SparsityConfig(kind="l0", strength=1.0, layers="1"))
    with torch.no_grad():
        gates["1"].log_alpha[::2] = -20.0
    hidden = F.linear(x.flatten(1), model[1].weight, model[1].bias) * gates["1"].expected()
    expected = model[3](torch.relu(hidden))
    torch.testing.assert_close(model(x), expected)
    remove_gates(gates)


def test_folding_gates_keeps_the_eval_outputs_and_zeroes_closed_channels():
    model = build_tiny("tiny_concat").eval()
    x = example_input(model)
    gates = attach_l0_gates(model, L0, exclude=["head.2"])
    with torch.no_grad():
        for gate in gates.values():
            gate.log_alpha.uniform_(-4.0, 4.0)
    gated = model(x)
    fold_gates(model, gates)
    assert not any(m._forward_hooks for m in model.modules())
    torch.testing.assert_close(model(x), gated)
    closed = ~gates["fuse.0"].deterministic_mask()
    assert closed.any() and model.fuse[0].weight[closed].abs().sum() == 0


def test_gates_follow_the_layers_training_mode():
    model = build_tiny("tiny_residual")
    x = example_input(model)
    gates = attach_l0_gates(model, L0, exclude=["head.2"])
    for gate in gates.values():
        with torch.no_grad():
            gate.log_alpha.fill_(0.0)  # half-open gates: samples vary
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    remove_gates(gates)


def test_gates_leave_the_model_state_dict_alone():
    model = build_tiny("tiny_residual")
    keys = set(model.state_dict())
    regularizer = SparsityRegularizer(model, L0, exclude=["head.2"])
    assert set(model.state_dict()) == keys
    assert regularizer.names == ("stem.0", "block.0", "block.3")
    assert {n for n, _ in regularizer.named_parameters()} == {
        f"gates.{i}.log_alpha" for i in range(3)}
    regularizer.close()
    assert not any(m._forward_hooks for m in model.modules())


def test_l0_penalty_sums_gate_norms():
    gates = {"a": HardConcreteGate(2), "b": HardConcreteGate(3, init_log_alpha=-1.0)}
    expected = 0.5 * (gates["a"].l0_norm() + gates["b"].l0_norm())
    torch.testing.assert_close(l0_penalty(gates, 0.5), expected)
    assert l0_penalty({}, 0.5).item() == 0.0


def test_keep_ratios_follow_the_deterministic_mask():
    gates = {"a": HardConcreteGate(4), "b": HardConcreteGate(2)}
    with torch.no_grad():
        gates["a"].log_alpha[:3] = -20.0
    assert gate_keep_ratios(gates) == {"a": 0.25, "b": 1.0}


@pytest.mark.parametrize("strength, lowered", [(0.0, False), (1000.0, True)])
def test_large_l0_strength_lowers_keep_ratio(strength, lowered):
    model = build_tiny("tiny_residual")
    x, y = example_input(model, batch=8), torch.arange(8)
    regularizer = SparsityRegularizer(model, SparsityConfig(kind="l0", strength=strength),
                                      exclude=["head.2"])
    assert set(regularizer.keep_ratios().values()) == {1.0}
    params = [*model.parameters(), *regularizer.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1)
    for _ in range(5):
        loss = F.cross_entropy(model(x), y) + regularizer.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ratios = regularizer.keep_ratios()
    assert set(ratios) == {"stem.0", "block.0", "block.3"}
    assert all((r < 1.0) == lowered for r in ratios.values())
    regularizer.close()


def test_regularizer_l1_kinds_have_no_parameters():
    model = build_tiny("tiny_mlp")
    config = SparsityConfig(kind="l1_weights", strength=0.1)
    regularizer = SparsityRegularizer(model, config)
    assert list(regularizer.parameters()) == [] and regularizer.keep_ratios() == {}
    torch.testing.assert_close(regularizer.penalty(), l1_penalty(model, config))
    regularizer.close()


def test_attach_rejects_l1_configs():
    with pytest.raises(ValueError, match="l0"):
        attach_l0_gates(build_tiny("tiny_mlp"), SparsityConfig(kind="l1_bn"))
