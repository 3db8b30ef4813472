"""The method contract, shipped so that a plugin's compression method passes the built-ins' suite.

``tests/test_method_contract.py`` runs :func:`check_method` over every registered method with the
example configs of :data:`EXAMPLES`; run it on your own method the same way::

    from autocompress.testing import check_method, contract_model

    def test_my_method_meets_the_contract():
        model, x = contract_model()
        check_method(MyConfig(knob=3), model, "features.3", x)

A method meets the contract when its config round-trips through a dict, MLflow params (strings)
and YAML; its identity config, when it has one, is dropped from a plan, and the plan left changes
nothing; applying it leaves the input model untouched; the artifact of the compressed model
loads back to the same outputs; and the latency table's kernels predicted from the plan alone are
the built model's.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import yaml
from torch import nn

from autocompress.export.artifact import from_bytes, to_bytes
from autocompress.methods import CompressionPlan, MethodConfig, apply_plan

__all__ = ["EXAMPLES", "IDENTITIES", "MethodContract", "check_artifact_round_trip",
           "check_config_round_trips", "check_identity", "check_input_untouched",
           "check_kernels_match", "check_method", "example_config"]

# A compressing config of each built-in method and the digits_cnn layer it applies to
# (contract_model(): features.0/3/7 are convolutions, classifier.1/3 linear layers).
EXAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "prune": ("features.3", {"ratio": 0.5, "round_to": 4}),
    "svd": ("classifier.1", {"rank_ratio": 0.25}),
    "tucker": ("features.3", {"rank_ratio": 0.5}),
    "cp": ("features.0", {"rank": 3}),
    "depthwise": ("features.3", {"depth_multiplier": 2, "init": "svd"}),
    "grouped": ("features.7", {"groups": 4, "init": "svd"}),
    "sparsify": ("classifier.3", {"sparsity": 0.3}),
    "quantize": ("features.0", {"bits": 8}),
    "share": ("features.3", {"bits": 3}),
    "circulant": ("classifier.1", {"block": 16}),
    "hashed": ("classifier.3", {"compression": 0.2}),
}
# The identity config of the built-in methods that have one (``is_identity()`` is True).
IDENTITIES: dict[str, dict[str, Any]] = {
    "prune": {"ratio": 0.0},
    "svd": {"rank_ratio": 1.0},
    "tucker": {"rank_ratio": 1.0},
    "cp": {"rank_ratio": 1.0},
    "grouped": {"groups": 1},
    "sparsify": {"sparsity": 0.0},
    "quantize": {"bits": 32},
    "circulant": {"block": 1},
}


def _expect(condition: bool, message: str) -> None:
    """Fail the contract with ``message`` (an AssertionError, also under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def _plan(layer: str, config: MethodConfig) -> CompressionPlan:
    return CompressionPlan.from_dict({"layers": {layer: {config.method: config.to_dict()}}})


def check_config_round_trips(config: MethodConfig) -> None:
    """The config, and a plan holding it, come back equal from a dict, params and YAML."""
    cls = type(config)
    _expect(cls.from_dict(config.to_dict()) == config, f"{cls.__name__}: dict round trip")
    as_params = {k: str(v) for k, v in config.to_dict().items()}  # MLflow keeps strings
    _expect(cls.from_dict(as_params) == config, f"{cls.__name__}: params (strings) round trip")
    text = yaml.safe_dump(config.to_dict())
    _expect(cls.from_dict(yaml.safe_load(text)) == config, f"{cls.__name__}: YAML round trip")
    plan = _plan("layer", config)
    _expect(CompressionPlan.from_params(plan.to_params()) == plan,
            f"{cls.__name__}: plan params round trip")
    _expect(CompressionPlan.from_dict(yaml.safe_load(yaml.safe_dump(plan.to_dict()))) == plan,
            f"{cls.__name__}: plan YAML round trip")


def _outputs(model: nn.Module, example: Any) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(example)


def check_identity(model: nn.Module, layer: str, example: Any,
                   identity: MethodConfig | None = None) -> None:
    """The identity config (if any) is dropped, and the plan left changes no output."""
    plan = CompressionPlan.from_dict({"layers": {}})
    if identity is not None:
        _expect(identity.is_identity(), f"{identity!r}.is_identity() must be True")
        plan = _plan(layer, identity)
        _expect(not plan.layers, f"a plan must drop the identity config {identity!r}")
    built = apply_plan(model, plan, example)
    _expect(torch.equal(_outputs(built, example), _outputs(copy.deepcopy(model), example)),
            "the identity plan changed the model's outputs")


def check_input_untouched(model: nn.Module, plan: CompressionPlan, example: Any,
                          calibration: tuple[Any, Any] | None = None) -> nn.Module:
    """Apply ``plan`` and return the student; the input model's modules, weights, mode stay."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    types = {name: type(m) for name, m in model.named_modules()}
    training = model.training
    student = apply_plan(model, plan, example, calibration=calibration)
    _expect(student is not model, "apply_plan must return a new model")
    _expect({name: type(m) for name, m in model.named_modules()} == types,
            "apply_plan replaced modules of its input")
    after = model.state_dict()
    _expect(after.keys() == state.keys() and all(torch.equal(after[k], v)
                                                 for k, v in state.items()),
            "apply_plan changed its input's weights, buffers or shapes")
    _expect(model.training == training, "apply_plan changed its input's train/eval mode")
    return student


def check_artifact_round_trip(student: nn.Module, base: nn.Module, example: Any,
                              atol: float = 1e-5) -> None:
    """The compressed model's artifact loads back (onto ``base``) with the same outputs."""
    loaded = from_bytes(to_bytes(student), "contract artifact", base=base)
    expected, got = _outputs(student, example), _outputs(loaded, example)
    _expect(got.shape == expected.shape and torch.allclose(got, expected, atol=atol, rtol=0),
            f"the reloaded artifact's outputs differ (max {float((got - expected).abs().max())})")


def _dense(kernels) -> list:
    """Kernels without their weight sparsity (a key dense runtimes do not read)."""
    return [(name, dataclasses.replace(k, sparsity=0.0)) for name, k in kernels]


def check_kernels_match(model: nn.Module, plan: CompressionPlan, student: nn.Module,
                        example: Any) -> None:
    """The latency table's kernels predicted from the plan are those of the built student."""
    from autocompress.hardware.lut.kernels import plan_kernels, trace

    predicted, actual = plan_kernels(model, plan, example), trace(student.eval(), example)
    _expect(_dense(predicted.kernels) == _dense(actual.kernels),
            "the kernels predicted from the plan differ from the built model's")
    _expect(predicted.calls == actual.calls, "predicted and built module calls differ")


def check_method(config: MethodConfig, model: nn.Module, layer: str, example: Any, *,
                 identity: MethodConfig | None = None,
                 calibration: tuple[Any, Any] | None = None, kernels: bool = True) -> None:
    """Assert the whole method contract for ``config`` applied to ``layer`` of ``model``.

    Args:
        config: A config of the method that compresses ``layer``.
        model: A model (eval mode) whose ``layer`` the method accepts.
        layer: The layer's name in ``model``.
        example: A batch ``model`` accepts.
        identity: The method's identity config, when it has one.
        calibration: ``(inputs, targets)`` for data-aware methods.
        kernels: Also check the latency table's kernel prediction (a method without a
            structure rule in :mod:`autocompress.hardware.lut.kernels` passes False).

    Raises:
        AssertionError: naming the rule that was broken.
    """
    check_config_round_trips(config)
    check_identity(model, layer, example, identity)
    plan = _plan(layer, config)
    _expect(bool(plan.layers), f"{config!r} is an identity: give a config that compresses")
    student = check_input_untouched(model, plan, example, calibration)
    check_artifact_round_trip(student, model, example)
    if kernels:
        check_kernels_match(model, plan, student, example)


def example_config(name: str, examples: Mapping[str, tuple[str, dict]] = EXAMPLES
                   ) -> tuple[MethodConfig, str, MethodConfig | None]:
    """The example config of a registered method, its layer and its identity config."""
    from autocompress.methods import get_method

    cls = get_method(name).config
    layer, fields = examples[name]
    identity = cls.from_dict(IDENTITIES[name]) if name in IDENTITIES else None
    return cls.from_dict(fields), layer, identity


class MethodContract:
    """The contract as test methods: subclass it as ``TestMyMethod`` and set the attributes.

    Attributes:
        config: A config of the method that compresses ``layer``.
        layer: The layer of :func:`~autocompress.testing.contract_model`'s CNN it applies to.
        identity: The method's identity config, or None.
    """

    config: MethodConfig
    layer: str = "features.3"
    identity: MethodConfig | None = None

    def test_meets_the_method_contract(self):
        from autocompress.testing.profilers import contract_model

        model, x = contract_model()
        check_method(self.config, model, self.layer, x, identity=self.identity)
