"""The shipped method contract (autocompress.testing.methods), run over every registered method."""

import dataclasses

import pytest

from autocompress.methods import METHODS, CompressionPlan, QuantizeConfig, get_method
from autocompress.methods.base import Method, register
from autocompress.testing import (
    EXAMPLES,
    MethodContract,
    check_method,
    contract_model,
    example_config,
)
from autocompress.testing.methods import check_config_round_trips, check_input_untouched


def test_every_registered_method_has_an_example():
    get_method("prune")  # registers the built-ins
    assert set(EXAMPLES) == set(METHODS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_method_meets_the_contract(name):
    model, x = contract_model()
    config, layer, identity = example_config(name)
    check_method(config, model, layer, x, identity=identity)


class TestQuantizeAsAPluginWould(MethodContract):
    """The contract as a plugin author runs it: a subclass naming a config and a layer."""

    config = QuantizeConfig(bits=4)
    layer = "classifier.1"
    identity = QuantizeConfig(bits=32)


@dataclasses.dataclass(frozen=True)
class _Lossy(QuantizeConfig):
    """A config whose dict form forgets a field: it must fail the round trip."""

    method = "lossy_quantize"

    def to_dict(self):
        return {"bits": self.bits}


def test_the_contract_catches_a_config_that_does_not_round_trip():
    with pytest.raises(AssertionError, match="round trip"):
        check_config_round_trips(_Lossy(bits=4, per_channel=False))


@dataclasses.dataclass(frozen=True)
class _Meddling(QuantizeConfig):
    method = "meddling_quantize"


def test_the_contract_catches_a_method_that_changes_its_input():
    model, x = contract_model()

    def meddle(student, targets, ctx):
        configs = {name: QuantizeConfig(bits=c.bits) for name, c in targets.items()}
        METHODS["quantize"].apply(student, configs, ctx)
        for name in targets:  # the caller's model, not the copy it was given
            model.get_submodule(name).weight.data.mul_(0.5)

    register(Method(_Meddling, METHODS["quantize"].layer_types, meddle))
    try:
        plan = CompressionPlan.from_dict({"layers": {"features.0": {"meddling_quantize": {}}}})
        with pytest.raises(AssertionError, match="changed its input"):
            check_input_untouched(model, plan, x)
    finally:
        METHODS.pop("meddling_quantize")
