"""Tests of autocompress.space: the search-space YAML, binding to a model and sampling plans."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from autocompress.errors import ConfigError, PlanError
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers
from autocompress.space import Choice, Constant, Range, SearchSpace, bind, parse_distribution

ray_util = pytest.importorskip("ray.tune.utils.util")  # where Ray 2.60's OptunaSearch gets it
unflatten_dict = ray_util.unflatten_dict

ROOT = Path(__file__).resolve().parents[1]
CNN_DEFAULT = ROOT / "search_spaces" / "cnn_default.yaml"

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def layers(digits):
    model, x = digits
    return compressible_layers(model, x)


def space(*rules, distillation=None) -> SearchSpace:
    raw = {"layers": list(rules)}
    if distillation is not None:
        raw["distillation"] = distillation
    return SearchSpace.from_dict(raw)


def rule(select, **methods):
    return {"select": select, "methods": methods}


def knob_map(bound) -> dict:
    return {k.key: k.distribution for k in bound.knobs}


def define_by_run(bound, trial) -> dict:
    """What Ray's OptunaSearch returns for a define-by-run space (before unflattening)."""
    constants = bound.sample(trial)
    return {**trial.params, **constants}


# --- parsing --------------------------------------------------------------------------------


def test_default_space_parses():
    parsed = SearchSpace.from_yaml(CNN_DEFAULT)
    assert parsed.name == "cnn_default"
    assert [r.types for r in parsed.rules] == [("Conv2d",), ("Linear",)]
    conv, linear = parsed.rules
    assert conv.knobs["prune"]["ratio"] == Range(0.0, 0.75, 0.125)
    assert conv.knobs["quantize"]["bits"] == Choice((2, 4, 8, 32))
    assert set(linear.knobs) == {"prune", "svd", "quantize"}
    assert parsed.training["distillation"] == {"temperature": Range(1.0, 8.0),
                                               "alpha": Range(0.1, 0.9)}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4, Constant(4)),
        ("l1", Constant("l1")),
        ({"choices": [2, 4]}, Choice((2, 4))),
        ({"low": 1, "high": 8}, Range(1, 8)),
        ({"low": 0.01, "high": 1.0, "log": True}, Range(0.01, 1.0, None, True)),
    ],
)
def test_distribution_forms(raw, expected):
    assert parse_distribution(raw, "x") == expected


def test_integer_range_is_sampled_as_integers():
    assert Range(1, 8).is_int() and not Range(1, 8.0).is_int() and not Range(0, 1, 0.5).is_int()
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert isinstance(Range(1, 9, 2).suggest(trial, "k"), int)
    assert trial.params["k"] in (1, 3, 5, 7, 9)


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ({"layers": [], "searchh": 1},
         r"^space\.searchh: unknown key; allowed keys: attention_transfer, description, "),
        ([1, 2], r"^space: invalid value \[1, 2\]"),
        ({"layers": {"a": 1}}, r"^space\.layers: invalid value .*a list of rules"),
        ({"layers": [{"select": {"type": "Conv2d"}, "method": {}}]},
         r"^space\.layers\[0\]\.method: unknown key; did you mean 'methods'\?"),
        ({"layers": [{"methods": {}}]}, r"^space\.layers\[0\]\.select: invalid value"),
        ({"layers": [{"select": {"kind": "Conv2d"}}]},
         r"^space\.layers\[0\]\.select\.kind: unknown key; allowed keys: name, type"),
        ({"layers": [{"select": {"name": 3}}]}, r"^space\.layers\[0\]\.select\.name: invalid"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratioo": 0.5})]},
         r"^space\.layers\[0\]\.methods\.prune\.ratioo: unknown key; did you mean 'ratio'\? "
         r"allowed keys: importance, ratio, round_to"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"lo": 0, "high": 0.5}})]},
         r"^space\.layers\[0\]\.methods\.prune\.ratio: invalid distribution keys \['high', 'lo'\]"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"low": 0.6, "high": 0.5}})]},
         r"^space\.layers\[0\]\.methods\.prune\.ratio\.low: invalid value 0\.6; "
         r"allowed: a number <= high \(0\.5\)"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"low": "a", "high": 0.5}})]},
         r"^space\.layers\[0\]\.methods\.prune\.ratio\.low: invalid value 'a'"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"low": 0, "high": 0.5,
                                                               "step": 0}})]},
         r"\.prune\.ratio\.step: invalid value 0"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"choices": []}})]},
         r"\.prune\.ratio\.choices: invalid value \[\]; allowed: a non-empty list"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": [0.1, 0.2]})]},
         r"\.prune\.ratio: invalid value \[0\.1, 0\.2\]; allowed: a constant, \{choices"),
        ({"layers": [rule({"type": "Conv2d"}, quantize={"bits": {"choices": [0, 4]}})]},
         r"^space\.layers\[0\]\.methods\.quantize\.bits: invalid value 0; allowed: one of 1,"),
        ({"layers": [rule({"type": "Conv2d"}, prune={"ratio": {"low": 0.0, "high": 1.0}})]},
         r"^space\.layers\[0\]\.methods\.prune\.ratio: invalid value 1\.0; allowed: a number "
         r"in \[0\.0, 1\.0\)"),
        ({"layers": [rule({"type": "Linear"}, svd={"rank": 0})]},
         r"^space\.layers\[0\]\.methods\.svd\.rank: invalid value 0"),
        ({"layers": [], "distillation": {"beta": 1.0}},
         r"^space\.distillation\.beta: unknown key; allowed keys: alpha, temperature"),
        ({"layers": [], "distillation": {"alpha": {"low": 0.5, "high": 1.5}}},
         r"^space\.distillation\.alpha: invalid value 1\.5"),
    ],
)
def test_errors_name_the_field(raw, pattern):
    with pytest.raises(ConfigError, match=pattern):
        SearchSpace.from_dict(raw)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^space\.layers\[1\]\.methods: invalid value 'hash'; "
                                          r"allowed: one of .*'prune'.*'quantize'.*'svd'"):
        space(rule({"type": "Conv2d"}), rule({"type": "Linear"}, hash={}))


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="search space: file not found"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        SearchSpace.from_yaml(bad)


# --- binding --------------------------------------------------------------------------------


def test_default_space_binds_to_digits_cnn(layers):
    bound = bind(SearchSpace.from_yaml(CNN_DEFAULT), layers)
    keys = set(knob_map(bound))
    for conv in ("features.0", "features.3", "features.7"):
        assert {f"layers/{conv}/prune/ratio", f"layers/{conv}/quantize/bits"} <= keys
        assert f"layers/{conv}/svd/rank_ratio" not in keys
    assert "layers/classifier.1/prune/ratio" in keys
    assert "layers/classifier.3/prune/ratio" not in keys  # the output layer keeps its width
    assert "layers/classifier.3/svd/rank_ratio" in keys
    assert {"distillation/temperature", "distillation/alpha"} <= keys
    assert bound.searched() == [k.key for k in bound.knobs]


def test_select_by_type(layers):
    bound = bind(space(rule({"type": "Conv2d"}, quantize={"bits": 4})), layers)
    assert set(knob_map(bound)) == {
        "layers/features.0/quantize/bits",
        "layers/features.3/quantize/bits",
        "layers/features.7/quantize/bits",
    }


@pytest.mark.parametrize(
    ("pattern", "selected"),
    [
        ("classifier.*", {"classifier.1", "classifier.3"}),
        ("features.[03]", {"features.0", "features.3"}),
        ("*.7", {"features.7"}),
        (r"re:features\.(0|7)", {"features.0", "features.7"}),
        ("re:classifier", set()),  # a regex must match the whole name
    ],
)
def test_select_by_name_pattern(layers, pattern, selected):
    raw = space(rule({"name": pattern}, quantize={"bits": 4}))
    if not selected:
        with pytest.raises(ConfigError, match=r"space\.layers\[0\]: selects no layer"):
            bind(raw, layers)
        return
    keys = knob_map(bind(raw, layers))
    assert {k.split("/")[1] for k in keys} == selected


def test_name_and_type_must_both_match(layers):
    raw = space(rule({"name": ["features.0", "classifier.*"], "type": "Linear"},
                     quantize={"bits": 4}))
    layer_names = {k.split("/")[1] for k in knob_map(bind(raw, layers))}
    assert layer_names == {"classifier.1", "classifier.3"}


def test_later_rule_overrides_earlier(layers):
    raw = space(
        rule({"type": "Conv2d"}, quantize={"bits": {"choices": [2, 4]}},
             prune={"ratio": {"low": 0.0, "high": 0.5}}),
        rule({"name": "features.3"}, quantize={"bits": 8}),
    )
    knobs = knob_map(bind(raw, layers))
    assert knobs["layers/features.3/quantize/bits"] == Constant(8)
    assert knobs["layers/features.0/quantize/bits"] == Choice((2, 4))
    assert knobs["layers/features.3/prune/ratio"] == Range(0.0, 0.5)  # other knobs stay


def test_rule_selecting_no_layer_lists_the_layers(layers):
    raw = space(rule({"type": "Conv2d"}), rule({"name": "encoder.*"}, quantize={"bits": 4}))
    with pytest.raises(ConfigError, match=r"^space\.layers\[1\]: selects no layer; layers are: "
                                          r"features\.0 \(Conv2d\)"):
        bind(raw, layers)


def test_svd_selected_on_a_conv_by_name_raises(layers):
    raw = space(rule({"name": "features.0"}, svd={"rank_ratio": 0.5}))
    with pytest.raises(ConfigError, match=r"^space\.layers\[0\]: svd applies to Embedding, Linear; "
                                          r"selected layer features\.0 is Conv2d"):
        bind(raw, layers)


def test_prune_is_never_offered_for_output_layers(layers):
    raw = space(rule({"name": "classifier.*"}, prune={"ratio": {"low": 0.0, "high": 0.5}}))
    assert set(knob_map(bind(raw, layers))) == {"layers/classifier.1/prune/ratio"}


# --- sampling -------------------------------------------------------------------------------


def test_sampled_keys_nest_into_the_plan_with_ray(layers):
    bound = bind(SearchSpace.from_yaml(CNN_DEFAULT), layers)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    flat = define_by_run(bound, trial)
    assert set(flat) == set(knob_map(bound))
    assert all("/" in key for key in flat)
    nested = unflatten_dict(flat)
    assert set(nested) == {"layers", "distillation"}
    assert "features.0" in nested["layers"]  # the dots of layer names are kept
    assert set(nested["layers"]["classifier.1"]) == {"prune", "svd", "quantize"}
    plan = bound.plan(nested)
    assert plan == bound.plan(flat)
    assert plan.distillation.temperature == flat["distillation/temperature"]
    assert plan == CompressionPlan.from_dict(nested)


def test_constants_reach_the_plan(layers):
    raw = space(rule({"type": "Conv2d"}, quantize={"bits": 4},
                     prune={"ratio": {"low": 0.25, "high": 0.5}}),
                distillation={"temperature": 2.0, "alpha": {"low": 0.1, "high": 0.9}})
    bound = bind(raw, layers)
    assert bound.searched() == ["layers/features.0/prune/ratio", "layers/features.3/prune/ratio",
                                "layers/features.7/prune/ratio", "distillation/alpha"]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    flat = define_by_run(bound, trial)
    assert "layers/features.0/quantize/bits" not in trial.params  # not searched by Optuna
    plan = bound.plan(unflatten_dict(flat))
    assert {c.method: c for c in plan.layers["features.3"]}["quantize"].bits == 4
    assert plan.distillation.temperature == 2.0


def test_dot_joined_keys_would_not_nest():
    """The trap: Ray nests config keys on "/" only, and layer names contain dots."""
    dotted = {"layers.features.0.quantize.bits": 4, "distillation.alpha": 0.5}
    assert unflatten_dict(dotted) == dotted  # left flat: no "layers" key for the plan
    assert CompressionPlan.from_dict(
        {k: v for k, v in unflatten_dict(dotted).items() if k in ("layers", "distillation")}
    ) == CompressionPlan()  # the trial would silently run uncompressed
    split_on_dots = unflatten_dict(dotted, delimiter=".")
    assert "features.0" not in split_on_dots["layers"]  # and splitting on "." breaks names


def test_every_sampled_plan_applies(digits, layers):
    model, x = digits
    bound = bind(SearchSpace.from_yaml(CNN_DEFAULT), layers)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods_seen, built = set(), 0
    for _ in range(10):
        trial = study.ask()
        plan = bound.plan(unflatten_dict(define_by_run(bound, trial)))
        for configs in plan.layers.values():
            methods_seen.update(c.method for c in configs)
            for config in configs:
                if config.method == "prune":
                    assert config.ratio in {i / 8 for i in range(1, 7)}
        # no sampled rank outgrows its layer, even at the widths the plan's pruning leaves
        student = apply_plan(model, plan, x).eval()
        built += 1
        with torch.no_grad():
            out = student(x)
        assert out.shape == (4, 10) and torch.isfinite(out).all()
        study.tell(trial, 0.0)
    assert methods_seen == {"prune", "svd", "quantize"} and built == 10


def test_a_coupled_group_gets_one_prune_knob():
    from autocompress.testing import build_tiny, example_input

    model = build_tiny("tiny_residual", width=8)
    space = SearchSpace.from_dict(
        {"layers": [{"select": {"type": "Conv2d"},
                     "methods": {"prune": {"ratio": {"low": 0.0, "high": 0.5}}}}]})
    bound = bind(space, compressible_layers(model, example_input(model)))
    assert bound.searched() == ["layers/stem.0/prune/ratio", "layers/block.0/prune/ratio"]


CHOICE_SPACE = {"layers": [
    {"select": {"type": "Conv2d"}, "choose": {"factorize": ["none", "tucker", "depthwise"]},
     "methods": {"tucker": {"rank_ratio": {"low": 0.25, "high": 0.75}},
                 "quantize": {"bits": {"choices": [4, 8]}}}},
    {"select": {"name": "classifier.1"},
     "choose": {"factorize": ["none", "svd", "circulant", "hashed"],
                "quantize": ["quantize", "share"]},
     "methods": {"svd": {"rank_ratio": {"low": 0.1, "high": 0.5}},
                 "hashed": {"compression": {"low": 0.05, "high": 0.5}},
                 "quantize": {"bits": {"choices": [4, 8]}},
                 "share": {"bits": {"low": 2, "high": 6}}}},
]}


def test_choose_samples_one_alternative_per_stage_and_only_its_knobs():
    from ray.tune.utils.util import unflatten_dict

    from autocompress.zoo import build_model

    model = build_model("digits_cnn", width=8)
    x = torch.randn(2, 1, 8, 8)
    bound = bind(SearchSpace.from_dict(CHOICE_SPACE), compressible_layers(model, x))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        constants = bound.sample(trial)  # before reading trial.params: sampling fills them
        config = unflatten_dict({**trial.params, **constants})
        fc = config["layers"]["classifier.1"]
        factorize = fc["choose"]["factorize"]
        seen.add(factorize)
        others = {"svd", "circulant", "hashed"} - {factorize}
        assert not others & set(fc)  # knobs of alternatives not picked are never sampled
        if factorize in ("circulant", "hashed"):  # nothing left to quantize after them
            assert "quantize" not in fc and "share" not in fc
        else:
            assert len({"quantize", "share"} & set(fc)) == 1
        plan = bound.plan(config)
        assert apply_plan(model, plan, x)(x).shape == (2, 10)
    assert seen == {"none", "svd", "circulant", "hashed"}


def test_choose_validates_stage_and_names():
    with pytest.raises(ConfigError, match=r"choose.factorize: invalid value 'quantize'"):
        SearchSpace.from_dict({"layers": [{"select": {"type": "Linear"},
                                           "choose": {"factorize": ["none", "quantize"]}}]})
    with pytest.raises(ConfigError,
                       match=r"choose.fold: unknown key; allowed keys: factorize, prune"):
        SearchSpace.from_dict({"layers": [{"select": {"type": "Linear"},
                                           "choose": {"fold": ["none", "svd"]}}]})
    with pytest.raises(ConfigError, match="at least two alternatives"):
        SearchSpace.from_dict({"layers": [{"select": {"type": "Linear"},
                                           "choose": {"factorize": ["svd"]}}]})


def test_quantizing_a_circulant_layer_is_refused_in_the_plan():
    with pytest.raises(PlanError, match="fc: circulant replaces the layer's weights"):
        CompressionPlan.from_dict({"layers": {"fc": {"circulant": {}, "quantize": {"bits": 4}}}})
