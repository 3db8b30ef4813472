"""Every recipe, space, budget and plan field is type- and range-checked, with a clear error."""

import dataclasses
import typing

import pytest

from autocompress.config import Bounds, bounded, build
from autocompress.errors import AutocompressError, ConfigError, PlanError
from autocompress.hardware.budget import parse_budgets
from autocompress.methods import CompressionPlan, MethodConfig
from autocompress.recipe import Recipe
from autocompress.space.schema import SearchSpace

BASE = {"name": "r", "model": {"name": "digits_cnn"}, "data": {"name": "digits"},
        "space": "space.yaml"}


def recipe_with(section, key, value):
    return {**BASE, section: {**BASE.get(section, {}), key: value}}


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("training", "lr", float("nan"), "a finite number"),
        ("training", "lr", -1, "a number > 0"),
        ("training", "lr", float("inf"), "a finite number"),
        ("training", "lr", "1e999", "a finite number"),
        ("hardware", "repeats", -5, "an integer >= 1"),
        ("hardware", "batch_size", -1, "an integer >= 1"),
        ("hardware", "threads", 0, "an integer >= 1"),
        ("hardware", "threads", True, "an integer >= 1"),
        ("hardware", "warmup", 2.5, "an integer >= 0"),
        ("hardware", "max_seconds", float("nan"), "a finite number"),
        ("hardware", "quiet", "yes", "true or false"),
        ("data", "batch_size", 0, "an integer >= 1"),
        ("search", "cpus_per_trial", float("nan"), "a finite number"),
        ("search", "trials", 2.5, "an integer >= 1"),
        ("search", "seed", -1, "an integer >= 0"),
        ("tracking", "uri", 5, "a string"),
        ("model", "kwargs", [1], "a mapping"),
        ("model", "pretrain", {"epochs": -1}, "an integer >= 1"),
    ],
)
def test_nonsense_numbers_are_refused_naming_field_value_and_range(section, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        Recipe.from_dict(recipe_with(section, key, value))
    message = str(info.value)
    assert message.startswith(f"{section}.{key}")
    assert allowed in message


def test_an_integral_float_is_an_integer():
    assert Recipe.from_dict(recipe_with("search", "trials", 8.0)).search.trials == 8


def test_a_recipe_without_name_names_the_missing_key():
    with pytest.raises(ConfigError, match="recipe: missing required key 'name'"):
        Recipe.from_dict({k: v for k, v in BASE.items() if k != "name"})


def test_non_string_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown key"):
        Recipe.from_dict({**BASE, 1: 2, "x": 3})
    with pytest.raises(ConfigError, match="model.kwargs key: invalid value 1"):
        Recipe.from_dict(recipe_with("model", "kwargs", {1: 2}))


def test_replace_is_checked_like_a_parsed_recipe():
    recipe = Recipe.from_dict(BASE)
    with pytest.raises(ConfigError, match="search.trials: invalid value 0"):
        recipe.replace(search={"trials": 0})
    with pytest.raises(ConfigError, match="hardware.max_seconds: invalid value nan"):
        recipe.replace(hardware={"max_seconds": float("nan")})


def _numeric_leaves(cls, path=""):
    """(dotted path, field) of every int / float field under ``cls``, methods' own excluded."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kinds = {hint, *typing.get_args(hint)}
        nested = [k for k in kinds if dataclasses.is_dataclass(k)]
        if nested and not issubclass(nested[0], MethodConfig):  # methods check __post_init__
            yield from _numeric_leaves(nested[0], f"{path}{f.name}.")
        elif kinds & {int, float} and not f.metadata.get("internal"):
            yield f"{path}{f.name}", f


def test_every_numeric_recipe_field_declares_its_range():
    """A field added later must say what it allows: ``bounded(...)`` or ``choice(...)``."""
    leaves = list(_numeric_leaves(Recipe))
    assert len(leaves) > 20
    undeclared = [path for path, f in leaves
                  if "bounds" not in f.metadata and "choices" not in f.metadata]
    assert undeclared == []


def test_bounds_describe_and_hold():
    assert Bounds(ge=1).describe("an integer") == "an integer >= 1"
    assert Bounds(gt=0, le=1).describe("a number") == "a number > 0 and <= 1"
    assert Bounds(ge=0, lt=1).holds(0) and not Bounds(ge=0, lt=1).holds(1)


def test_bounded_fields_of_a_new_section_are_checked():
    @dataclasses.dataclass(frozen=True)
    class Section:
        count: int = bounded(1, ge=1)
        ratio: float | None = bounded(None, gt=0, le=1)

    assert build(Section, {"ratio": None}, "s") == Section()
    with pytest.raises(ConfigError, match=r"s.ratio: invalid value 1.5; allowed: a number > 0 "
                                          r"and <= 1"):
        build(Section, {"ratio": 1.5}, "s")
    with pytest.raises(ConfigError, match="s.count: invalid value 'x'; allowed: an integer >= 1"):
        build(Section, {"count": "x"}, "s")


@pytest.mark.parametrize(
    ("plan", "error", "message"),
    [
        ({"layers": {"features.0": {"quantize": {"bits": "inf"}}}}, ConfigError,
         "layers.features.0.quantize.bits: invalid value 'inf'; allowed: an integer"),
        ({"layers": {"features.0": {"prune": 0.5}}}, PlanError,
         "layers.features.0.prune: expected a mapping, got 0.5"),
        ({"layers": {"features.0": {"prune": {"ratio": float("nan")}}}}, ConfigError,
         "prune.ratio: invalid value nan"),
        ({"layers": {"features.0": {"quantize": {"bits": True}}}}, ConfigError,
         "quantize.bits: invalid value True"),
        ({"layers": {"features.0": {"quantize": {"per_channel": 1}}}}, ConfigError,
         "quantize.per_channel: invalid value 1; allowed: true or false"),
        ({"layers": [1]}, PlanError, "layers: expected a mapping"),
        ({"layers": {3: {}}}, PlanError, "layers: invalid layer name 3"),
        ("layers", PlanError, "plan: expected a mapping"),
        ({"distillation": {"temperature": "inf"}}, ConfigError,
         "distillation.temperature: invalid value 'inf'"),
    ],
)
def test_bad_plans_raise_the_projects_errors(plan, error, message):
    with pytest.raises(error) as info:
        CompressionPlan.from_dict(plan)
    assert message in str(info.value)


def test_plan_params_round_trip_as_strings():
    plan = CompressionPlan.from_dict({"layers": {"fc": {"quantize": {"bits": 4},
                                                        "prune": {"ratio": 0.25}}}})
    assert CompressionPlan.from_params(plan.to_params()) == plan
    with pytest.raises(PlanError, match="both a value and a group"):
        CompressionPlan.from_params({"layers/fc/prune": "x", "layers/fc/prune/ratio": "0.5"})


def _space(knob):
    return {"layers": [{"select": {"type": "Conv2d"}, "methods": {"prune": {"ratio": knob}}}]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_space({"low": 0.0, "high": None}), "prune.ratio.high: invalid value None"),
        (_space({"low": float("nan"), "high": 0.5}), "prune.ratio.low: invalid value nan"),
        (_space({"low": 0.0, "high": 0.5, 1: 2}), "invalid distribution keys ['high', 'low', 1]"),
        (_space({"choices": [0.1, [1]]}), "prune.ratio.choices[1]: invalid value [1]"),
        (_space({"low": 0.1, "high": 0.5, "step": 0.1, "log": True}), "no step when log"),
        ({"layers": [{"select": {"type": "Conv2d"},
                      "methods": {"quantize": {"bits": {"low": 2, "high": 8, "step": 2.5}}}}]},
         "an integer range"),
        ({"layers": [{"select": {"type": "Conv2d"},
                      "methods": {"quantize": {"bits": {"low": 8, "high": 16}}}}]},
         "quantize.bits: invalid value 9"),  # reached inside the range, not at its ends
        ({"layers": [{"select": {"name": "re:(("}, "methods": {}}]}, "a glob or re:REGEX"),
        ({"layers": [], 1: 2}, "space.1: unknown key"),
        ({"name": 5}, "space.name: invalid value 5"),
    ],
)
def test_bad_spaces_are_config_errors(raw, message):
    with pytest.raises(ConfigError) as info:
        SearchSpace.from_dict(raw)
    assert message in str(info.value)


@pytest.mark.parametrize("text", ["size_kb<=inf", "size_kb<=1e999", "size_kb<=nan",
                                  "size_kb<=-1", "latency_ms<=-inf"])
def test_budgets_need_a_finite_limit(text):
    with pytest.raises(ConfigError, match="limit must be a number >= 0 and finite"):
        parse_budgets([text])


def test_a_huge_value_is_shortened_in_the_error():
    with pytest.raises(AutocompressError) as info:
        Recipe.from_dict(recipe_with("tracking", "uri", 10 ** 5000))
    assert str(info.value).startswith("tracking.uri: invalid value <an integer of")
    with pytest.raises(AutocompressError) as info:
        Recipe.from_dict(recipe_with("tracking", "uri", 10 ** 300))
    assert " ... " in str(info.value) and len(str(info.value)) < 150
