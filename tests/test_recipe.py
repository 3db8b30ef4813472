"""Tests of autocompress.recipe: strict parsing of recipe files and their round trip."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from autocompress.errors import ConfigError
from autocompress.hardware import Budget
from autocompress.hardware.targets import build_profiler
from autocompress.methods import DistillConfig
from autocompress.recipe import SAMPLERS, Recipe
from autocompress.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
QUICKSTART = RECIPES / "quickstart.yaml"


def recipe_files() -> list:
    params = [pytest.param(QUICKSTART, id="quickstart")]
    lenet = RECIPES / "lenet5_mnist.yaml"
    params.append(pytest.param(lenet, id="lenet5_mnist", marks=pytest.mark.skipif(
        not lenet.is_file(), reason="recipes/lenet5_mnist.yaml is not written yet")))
    return params


@pytest.fixture
def raw() -> dict:
    """The quickstart recipe as a dict, free to mutate."""
    return yaml.safe_load(QUICKSTART.read_text())


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        Recipe.from_dict(raw)
    return str(info.value)


@pytest.mark.parametrize("path", recipe_files())
def test_shipped_recipes_parse(path):
    recipe = Recipe.from_yaml(path)
    assert recipe.name and recipe.model.name and recipe.data.name
    assert recipe.base_dir == str(path.resolve().parent)
    assert recipe.parsed_budgets()  # every shipped recipe states its budgets
    space_file = recipe.resolve(recipe.space)
    assert space_file.is_file()
    SearchSpace.from_yaml(space_file)


def test_quickstart_values():
    recipe = Recipe.from_yaml(QUICKSTART)
    assert recipe.name == "quickstart" and recipe.experiment == "quickstart"
    assert recipe.model.kwargs == {"width": 16}
    assert recipe.training.distillation == DistillConfig(temperature=4.0, alpha=0.5)
    assert recipe.parsed_budgets() == (Budget("size_kb", "<=", 60.0),
                                       Budget("latency_ms", "<=", 2.0))
    assert recipe.search.sampler == "tpe" and recipe.search.trials == 8
    assert recipe.resolve(recipe.space) == RECIPES / "../search_spaces/cnn_default.yaml"


@pytest.mark.parametrize("path", recipe_files())
def test_dict_round_trip(path):
    recipe = Recipe.from_yaml(path)
    data = recipe.to_dict()
    assert Recipe.from_dict(data) == recipe
    assert Recipe.from_dict(yaml.safe_load(yaml.safe_dump(data))) == recipe
    assert data["budgets"] == list(recipe.budgets)


def test_name_defaults_to_the_file_stem(tmp_path, raw):
    del raw["name"]
    path = tmp_path / "my_search.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe = Recipe.from_yaml(path)
    assert recipe.name == "my_search"
    assert recipe.resolve("x.yaml") == tmp_path.resolve() / "x.yaml"


def test_defaults_fill_missing_sections():
    recipe = Recipe.from_dict({"name": "r", "model": {"name": "lenet5"},
                               "data": {"name": "mnist"}, "space": "s.yaml"})
    assert recipe.search.sampler == "tpe" and recipe.training.distillation == DistillConfig()
    assert recipe.budgets == () and recipe.experiment == "r"


def test_distillation_can_be_turned_off(raw):
    raw["training"]["distillation"] = None
    assert Recipe.from_dict(raw).training.distillation is None


def test_replace_keeps_validation(raw):
    recipe = Recipe.from_dict(raw)
    assert recipe.replace(search={"trials": 3}).search.trials == 3
    with pytest.raises(ConfigError, match="search.sampler: invalid value 'bayes'"):
        recipe.replace(search={"sampler": "bayes"})


# --- errors ---------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_allowed_keys(raw):
    raw["serach"] = {"trials": 2}
    message = error_of(raw)
    assert message.startswith("serach: unknown key; did you mean 'search'? allowed keys: name,")
    assert "base_dir" not in message  # set by the loader, not a user key
    for key in ("model", "data", "space", "budgets", "search", "tracking"):
        assert key in message


def test_unknown_nested_key_lists_allowed_keys(raw):
    raw["search"]["trialz"] = 3
    message = error_of(raw)
    assert message.startswith("search.trialz: unknown key; did you mean 'trials'? "
                              "allowed keys: trials,")
    assert "concurrency" in message


def test_bad_sampler_lists_allowed_ones(raw):
    raw["search"]["sampler"] = "bayes"
    message = error_of(raw)
    assert message.startswith("search.sampler: invalid value 'bayes'")
    for sampler in SAMPLERS:
        assert repr(sampler) in message


@pytest.mark.parametrize(
    ("section", "key", "value", "field"),
    [
        ("search", "trials", "many", "search.trials"),
        ("search", "trials", True, "search.trials"),
        ("search", "trials", 2.5, "search.trials"),
        ("search", "trials", 0, "search.trials"),
        ("search", "reduction_factor", 1, "search.reduction_factor"),
        ("training", "lr", "fast", "training.lr"),
        ("training", "epochs", 0, "training.epochs"),
        ("training", "optimizer", "lbfgs", "training.optimizer"),
        ("hardware", "target", "tpu", "hardware.target"),
        ("model", "kwargs", [16], "model.kwargs"),
        ("model", "name", "", "model.name"),
        ("data", "batch_size", "64x", "data.batch_size"),
    ],
)
def test_wrong_value_names_the_field(raw, section, key, value, field):
    raw[section][key] = value
    assert error_of(raw).startswith(f"{field}: invalid value {value!r}")


def test_wrong_section_type(raw):
    raw["model"] = "digits_cnn"
    assert error_of(raw).startswith("model: invalid value 'digits_cnn'; allowed: a mapping")


def test_bad_distillation_names_the_recipe_field(raw):
    raw["training"]["distillation"] = {"temperature": 0}
    assert error_of(raw).startswith("training.distillation.temperature: invalid value 0")
    raw["training"]["distillation"] = {"temp": 1}
    assert error_of(raw).startswith("training.distillation.temp: unknown key")


@pytest.mark.parametrize("budget", ["size_kb<60", "size_kb<=sixty", "energy<=3",
                                    "accuracy<=0.9", "size_kb<=-1"])
def test_bad_budget_expression(raw, budget):
    raw["budgets"] = ["latency_ms<=2", budget]
    message = error_of(raw)
    assert message.startswith(f"budget {budget!r}:")


def test_budgets_must_be_a_list(raw):
    raw["budgets"] = "size_kb<=60"
    assert error_of(raw).startswith("budgets: invalid value 'size_kb<=60'; allowed: a list")


@pytest.mark.parametrize("key", ["model", "data", "space"])
def test_missing_required_key(raw, key):
    del raw[key]
    assert error_of(raw) == f"recipe: missing required key {key!r}"


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe: file not found: .*absent\.yaml"):
        Recipe.from_yaml(tmp_path / "absent.yaml")


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: [\n")
    with pytest.raises(ConfigError, match=r"recipe .*bad\.yaml: invalid YAML"):
        Recipe.from_yaml(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        Recipe.from_yaml(bad)


def test_from_dict_does_not_mutate_its_input(raw):
    before = copy.deepcopy(raw)
    Recipe.from_dict(raw)
    assert raw == before


def test_budgets_may_name_further_targets_and_named_variants(raw):
    raw["budgets"] = ["latency_ms<=2@cpu-onnxruntime", "latency_ms<=3@cpu-torch",
                      "latency_p90_ms<=1@edge"]
    raw["hardware"] = {"target": "cpu-torch", "threads": 2,
                       "targets": {"edge": {"target": "cpu-onnxruntime", "int8": True}}}
    recipe = Recipe.from_dict(raw)
    budgets = recipe.parsed_budgets()
    assert [b.key for b in budgets] == ["latency_ms/cpu-onnxruntime", "latency_ms",
                                        "latency_p90_ms/edge"]
    assert recipe.hardware.target_names(budgets) == ("cpu-onnxruntime", "edge")
    edge = build_profiler(recipe.hardware, "edge")
    assert edge.name == "cpu-onnxruntime" and edge.int8 and edge.threads == 2
    assert Recipe.from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize("budget, hardware, message", [
    ("latency_ms<=2@tpu", {}, "target: invalid value 'tpu'; allowed: one of"),
    ("latency_ms<=2@analytic", {}, "'analytic' does not time"),
    ("latency_ms<=2@x", {"targets": {"x": {"target": "nope"}}},
     "hardware.targets.x.target: invalid value 'nope'"),
])
def test_a_bad_budget_target_is_refused(raw, budget, hardware, message):
    raw["budgets"] = [budget]
    raw["hardware"] = hardware
    with pytest.raises(ConfigError, match=message):
        Recipe.from_dict(raw)
