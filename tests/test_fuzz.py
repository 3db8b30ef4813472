"""Property-based fuzzing of the public parsers: bad input raises the project's errors only.

Each parser gets 500 generated cases (derandomized: the same cases on every run). Invalid
input must raise an AutocompressError (ConfigError / PlanError), never a raw TypeError,
AttributeError, OverflowError or KeyError; valid input must round-trip through its dict form.
"""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autocompress.errors import AutocompressError
from autocompress.hardware.budget import Budget
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.methods.base import METHODS
from autocompress.recipe import Recipe
from autocompress.space.binding import bind
from autocompress.space.schema import SearchSpace
from tests.fuzz_strategies import (
    JUNK,
    budget_texts,
    declared_messages,
    invalid_value,
    leaves,
    method_fields,
    plans,
    spaces,
    valid_plans,
    valid_value,
)

CASES = 500
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
BASE = {"name": "r", "model": {"name": "digits_cnn"}, "data": {"name": "digits"},
        "space": "space.yaml"}
LEAVES = leaves(Recipe)
LAYERS = ["features.0", "features.3", "features.7", "classifier.1", "classifier.3"]


def parse(fn, *args):
    """``(result, None)`` or ``(None, error)``; any other exception fails the test."""
    try:
        return fn(*args), None
    except AutocompressError as exc:
        return None, exc


def put(raw: dict, path: tuple[str, ...], value) -> None:
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def mutation(kind: str):
    def draw(leaf):
        values = {"valid": valid_value, "invalid": invalid_value}.get(kind)
        return st.tuples(st.just(leaf), st.just(kind), values(leaf) if values else JUNK)
    return st.sampled_from(LEAVES).flatmap(draw)


MUTATIONS = st.lists(st.one_of(mutation("valid"), mutation("valid"), mutation("invalid"),
                               mutation("junk")), max_size=4)


def test_recipe_fuzz():
    seen = Counter()

    @FUZZ
    @given(MUTATIONS, st.sampled_from([None, None, None, None, "name", "model", "space",
                                       "colour"]))
    def check(mutations, spoil):
        raw = copy.deepcopy(BASE)
        planted = {}
        for leaf, kind, value in mutations:
            put(raw, leaf.path, value)
            planted[leaf.path] = kind
        if spoil == "colour":
            raw["colour"] = "blue"
        elif spoil:
            del raw[spoil]
        recipe, error = parse(Recipe.from_dict, raw)
        seen["refused" if error else "parsed"] += 1
        if "invalid" in planted.values() or spoil:
            assert error is not None, f"accepted {raw}"
        if recipe is not None:
            assert Recipe.from_dict(recipe.to_dict()) == recipe

    check()
    assert seen["parsed"] > 50 and seen["refused"] > 200, seen


def test_valid_recipe_values_are_accepted_and_round_trip():
    declared = [leaf for leaf in LEAVES if leaf.declared]
    seen = Counter()

    @FUZZ
    @given(st.lists(st.sampled_from(declared).flatmap(
        lambda leaf: st.tuples(st.just(leaf), valid_value(leaf))), min_size=1, max_size=3))
    def check(mutations):
        raw = copy.deepcopy(BASE)
        for leaf, value in mutations:
            put(raw, leaf.path, value)
        recipe, error = parse(Recipe.from_dict, raw)
        seen["refused" if error else "parsed"] += 1
        if error is not None:  # a rule across fields may refuse; the declaration must not
            for leaf, value in mutations:
                assert str(error) not in declared_messages(leaf, value)
        else:
            assert Recipe.from_dict(recipe.to_dict()) == recipe

    check()
    assert seen["parsed"] > 0.5 * CASES, seen


def test_budget_fuzz():
    seen = Counter()

    @FUZZ
    @given(budget_texts())
    def check(text):
        budget, error = parse(Budget.parse, text)
        seen["refused" if error else "parsed"] += 1
        if budget is not None:
            assert math.isfinite(budget.limit) and budget.limit >= 0
            assert Budget.parse(str(budget)) == budget

    check()
    assert seen["parsed"] > 100 and seen["refused"] > 100, seen


def test_method_config_fuzz():
    seen = Counter()

    @FUZZ
    @given(st.sampled_from(sorted(METHODS)).flatmap(lambda name: st.tuples(
        st.just(METHODS[name].config), method_fields(METHODS[name].config))))
    def check(case):
        config_cls, fields = case
        config, error = parse(config_cls.from_dict, fields)
        seen["refused" if error else "parsed"] += 1
        if config is not None:
            assert config_cls.from_dict(config.to_dict()) == config
            as_params = {k: str(v) for k, v in config.to_dict().items()}  # MLflow: strings
            assert config_cls.from_dict(as_params) == config

    check()
    assert seen["parsed"] > 100 and seen["refused"] > 100, seen


def test_plan_fuzz():
    seen = Counter()

    @FUZZ
    @given(plans(LAYERS))
    def check(data):
        plan, error = parse(CompressionPlan.from_dict, data)
        seen["refused" if error else "parsed"] += 1
        if plan is not None:
            assert CompressionPlan.from_dict(plan.to_dict()) == plan
            assert CompressionPlan.from_params(plan.to_params()) == plan

    check()
    assert seen["parsed"] > 50 and seen["refused"] > 100, seen


@pytest.fixture(scope="module")
def digits():
    from autocompress.methods import compressible_layers
    from autocompress.methods.apply import find_output_layers
    from autocompress.zoo import build_model

    torch.manual_seed(0)
    model = build_model("digits_cnn", width=4).eval()
    example = torch.randn(2, 1, 8, 8)
    outputs = frozenset(find_output_layers(model, example))
    return model, example, compressible_layers(model, example), outputs


def test_space_fuzz(digits):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _, _, layers, _ = digits
    seen = Counter()

    @FUZZ
    @given(spaces(), st.integers(0, 2 ** 16))
    def check(raw, seed):
        space, error = parse(SearchSpace.from_dict, raw)
        seen["refused" if error else "parsed"] += 1
        if space is None:
            return
        assert SearchSpace.from_dict(space.raw) == space
        bound, error = parse(bind, space, layers)
        if bound is None:
            return
        seen["bound"] += 1
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed)).ask()
        constants = bound.sample(trial)
        bound.plan({**trial.params, **constants})  # a valid space only yields valid plans

    check()
    assert seen["bound"] > 20, seen


def test_apply_plan_fuzz(digits):
    model, example, _, outputs = digits
    calibration = (torch.randn(8, 1, 8, 8), torch.arange(8) % 10)
    seen = Counter()

    @settings(max_examples=50, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(valid_plans(LAYERS))
    def check(data):
        plan, error = parse(CompressionPlan.from_dict, data)
        assume(plan is not None)
        compressed, error = parse(apply_plan, model, plan, example, outputs, calibration)
        seen["refused" if error else "applied"] += 1
        if compressed is not None:
            with torch.no_grad():
                out = compressed(example)
            assert out.shape == (2, 10) and torch.isfinite(out).all()

    check()
    assert seen["applied"] > 25, seen
