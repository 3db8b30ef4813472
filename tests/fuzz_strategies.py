"""Hypothesis strategies for the parsers' fuzz tests: valid, invalid and junk inputs.

Recipe values are derived from the dataclasses themselves (type hints, ``bounded`` and
``choice`` metadata), so a field added later is fuzzed too.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping

from hypothesis import strategies as st

from autocompress.config import Bounds
from autocompress.hardware.budget import METRICS
from autocompress.methods.base import METHODS, get_method
from autocompress.methods.compact import INITS
from autocompress.methods.plan import TRAINING
from autocompress.methods.pruning import IMPORTANCES
from autocompress.methods.regularizers import KINDS
from autocompress.methods.sparsity import SCOPES

get_method("prune")  # registers the built-in methods
NASTY_NUMBERS = [float("nan"), float("inf"), float("-inf"), 10 ** 400, -(10 ** 400), "1e999",
                 "inf", "nan", "-inf", 1e308, -1, 0, -0.0, 2.5, True, False]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                    st.sampled_from(NASTY_NUMBERS))
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-3, 3)), inner, max_size=3)),
    max_leaves=6)
TOKENS = st.sampled_from([*IMPORTANCES, *INITS, *SCOPES, *KINDS, "bogus", "", "L2", "None"])


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One scalar-ish field of a config tree: its dotted path, type and metadata."""

    path: tuple[str, ...]
    hint: typing.Any
    field: dataclasses.Field

    @property
    def kinds(self) -> set:
        return {self.hint, *typing.get_args(self.hint)}

    @property
    def declared(self) -> bool:
        """True when the field's valid values are all declared (bounds, choices or a bool)."""
        return bool({"bounds", "choices"} & set(self.field.metadata)) or self.hint is bool


def leaves(cls: type, path: tuple[str, ...] = ()) -> list[Leaf]:
    """Every non-dataclass field under ``cls`` (nested sections and method configs walked)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        hint = hints[f.name]
        nested = [k for k in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(k)]
        if nested:
            out += leaves(nested[0], (*path, f.name))
        else:
            out.append(Leaf((*path, f.name), hint, f))
    return out


def _number(kinds: set, bounds: Bounds | None) -> st.SearchStrategy:
    low = bounds.ge if bounds and bounds.ge is not None else (bounds.gt if bounds else None)
    high = bounds.le if bounds and bounds.le is not None else (bounds.lt if bounds else None)
    if int in kinds and float not in kinds:
        lo = math.ceil(low + (1e-9 if bounds and bounds.gt is not None else 0)) if (
            low is not None) else -5
        hi = math.floor(high - (1e-9 if bounds and bounds.lt is not None else 0)) if (
            high is not None) else lo + 500
        return st.integers(lo, hi)
    return st.floats(low if low is not None else -1e6, high if high is not None else 1e6,
                     exclude_min=bool(bounds and bounds.gt is not None),
                     exclude_max=bool(bounds and bounds.lt is not None),
                     allow_nan=False, allow_infinity=False)


def valid_value(leaf: Leaf) -> st.SearchStrategy:
    """Values the field's declaration allows (other rules of its section may still refuse)."""
    options = leaf.field.metadata.get("choices")
    if options is not None:
        return st.sampled_from(options)
    kinds, inner = leaf.kinds, st.nothing()
    if bool in kinds:
        inner = st.booleans()
    elif kinds & {int, float}:
        inner = _number(kinds, leaf.field.metadata.get("bounds"))
    elif str in kinds:
        inner = st.text(max_size=8)
    elif typing.get_origin(leaf.hint) in (dict, Mapping) or leaf.hint is dict:
        inner = st.dictionaries(st.text(max_size=5), st.integers(0, 9), max_size=2)
    elif typing.get_origin(leaf.hint) is tuple:
        inner = st.just(())
    return st.one_of(st.none(), inner) if type(None) in kinds else inner


def invalid_value(leaf: Leaf) -> st.SearchStrategy:
    """Values the field's type or declaration refuses, whatever the rest of the recipe."""
    kinds, origin = leaf.kinds, typing.get_origin(leaf.hint)
    if origin in (dict, Mapping) or leaf.hint is dict:
        bad: list = [[1], 5, {1: 2}]
    elif origin is tuple:
        bad = [{"a": 1}, 5, [1]]
    elif bool in kinds:
        bad = ["yes", 1, 0.0, [1]]
    elif kinds & {int, float}:
        bad = [float("nan"), float("inf"), "1e999", True, "x", [1], {"a": 1}]
        bad += [] if float in kinds else [2.5, 1e-3]
        bounds = leaf.field.metadata.get("bounds") or Bounds()
        bad += [edge + delta for edge, delta in ((bounds.ge, -1), (bounds.gt, 0),
                                                 (bounds.le, 1), (bounds.lt, 0))
                if edge is not None]
    elif str in kinds:
        bad = [5, 1.5, True, [1]]
    else:
        return st.nothing()  # Any: every value is the factory's to judge
    if leaf.field.metadata.get("choices") is not None:
        bad.append("not-a-choice")
    return st.sampled_from(bad)


def declared_messages(leaf: Leaf, value: object) -> set[str]:
    """The errors a field's own declaration gives ``value`` (a valid one must get none)."""
    from autocompress.errors import invalid

    path = ".".join(leaf.path)
    allowed = ["a finite number", "an integer", "a string", "true or false"]
    bounds = leaf.field.metadata.get("bounds")
    if bounds is not None:
        allowed.append(bounds.describe("a number" if float in leaf.kinds else "an integer"))
    if leaf.field.metadata.get("choices") is not None:
        allowed.append(leaf.field.metadata["choices"])
    return {str(invalid(path, value, a)) for a in allowed}


def budget_texts() -> st.SearchStrategy:
    """Budget expressions, well-formed or not."""
    metric = st.sampled_from([*METRICS, "top5_accuracy", "speed", "Latency_ms", ""])
    op = st.sampled_from(["<=", ">=", "<", "==", ""])
    limit = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.floats(0, 1e12).map(repr), st.floats(0, 1e12).map(str),
                      st.integers(-5, 10 ** 6).map(str),
                      st.sampled_from(["inf", "1e999", "-1", "nan", "0", "1_0", "0x10", "", "a"]))
    target = st.sampled_from(["", "", "", "@cpu-torch", "@cuda", "@x", "@", "@a b"])
    grammar = st.builds(lambda m, o, li, t: f"{m}{o}{li}{t}", metric, op, limit, target)
    right_op = st.builds(lambda m, li, t: f"{m}{METRICS[m]}{li}{t}",
                         st.sampled_from(list(METRICS)), limit, target)
    plain = st.builds(lambda m, li: f"{m}{METRICS[m]}{li}", st.sampled_from(list(METRICS)),
                      st.one_of(st.floats(0, 1e12).map(repr), st.integers(0, 10 ** 9).map(str)))
    return st.one_of(plain, right_op, grammar, grammar.map(lambda s: f"  {s} "),
                     st.text(max_size=20))


METHOD_NAMES = sorted(METHODS)
FIELD_NAMES = sorted({f.name for m in METHODS.values() for f in dataclasses.fields(m.config)})


def method_field_value(hint: typing.Any) -> st.SearchStrategy:
    """A plausible, possibly invalid, value of a method config field (MLflow strings too)."""
    kinds = {hint, *typing.get_args(hint)}
    if bool in kinds:
        base = st.one_of(st.booleans(), st.sampled_from(["true", "False", "yes", 1]))
    elif int in kinds:
        base = st.one_of(st.integers(-2, 40), st.integers(-2, 40).map(str),
                         st.sampled_from([2.0, 2.5, "2.0", "inf", "1e999", True]))
    elif float in kinds:
        base = st.one_of(st.floats(-0.5, 1.5, allow_nan=False), st.sampled_from(
            [0.0, 0.5, 1.0, "0.25", "nan", float("inf"), "1e999", True, None]))
    else:
        base = TOKENS
    return st.one_of(base, st.none(), JUNK) if type(None) in kinds else st.one_of(
        base, base, base, JUNK)


def method_fields(config_cls: type) -> st.SearchStrategy:
    """A field dict for ``config_cls``: some known fields with plausible values, maybe junk."""
    hints = typing.get_type_hints(config_cls)
    known = st.fixed_dictionaries({}, optional={
        f.name: method_field_value(hints[f.name]) for f in dataclasses.fields(config_cls)})
    plausible = st.fixed_dictionaries({}, optional=VALID_FIELDS.get(config_cls.method, {}))
    return st.one_of(plausible, known, known, st.dictionaries(st.sampled_from(
        [*FIELD_NAMES, "bogus", "defaults"]), JUNK, max_size=2), JUNK)


def plans(layer_names: list[str]) -> st.SearchStrategy:
    """Plan dicts over ``layer_names`` (and a few names that are not layers)."""
    methods = st.one_of(*(st.fixed_dictionaries({name: method_fields(METHODS[name].config)})
                          for name in METHOD_NAMES))
    layer = st.one_of(st.lists(methods, max_size=3).map(
        lambda ds: {k: v for d in ds for k, v in d.items()}), JUNK)
    names = st.one_of(st.sampled_from(layer_names), st.sampled_from(["", "nope", 3]))
    training = st.fixed_dictionaries({}, optional={
        key: method_fields(cls) for key, cls in TRAINING.items()})
    body = st.builds(lambda ls, tr: {"layers": ls, **tr},
                     st.dictionaries(names, layer, max_size=4), training)
    return st.one_of(valid_plans(layer_names), body, body, JUNK)


NUMBER = st.one_of(st.floats(0, 1, allow_nan=False), st.integers(0, 64),
                   st.sampled_from(NASTY_NUMBERS), st.none(), st.text(max_size=3))


def distributions() -> st.SearchStrategy:
    """A knob's distribution: a constant, ``{low, high[, step][, log]}`` or ``{choices}``."""
    ranged = st.fixed_dictionaries({"low": NUMBER, "high": NUMBER}, optional={
        "step": NUMBER, "log": st.one_of(st.booleans(), SCALARS)})
    choices = st.fixed_dictionaries({"choices": st.one_of(st.lists(NUMBER, max_size=4), JUNK)})
    return st.one_of(NUMBER, TOKENS, ranged, ranged, choices, choices, JUNK)


def spaces() -> st.SearchStrategy:
    """Search-space dicts: rules with selections, methods, knobs and choices, and training."""
    knobs = st.dictionaries(st.sampled_from([*FIELD_NAMES, "bogus"]), distributions(),
                            max_size=2)
    select = st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["Conv2d", "Linear", ["Conv2d"], 5])}),
        st.fixed_dictionaries({"name": st.sampled_from(
            ["features.*", "classifier.1", "re:features\\.[03]", "re:((", ["*"], 7])}), JUNK)
    choose = st.dictionaries(st.sampled_from(["prune", "factorize", "quantize", "sparsify", "x"]),
                             st.lists(st.sampled_from([*METHOD_NAMES, "none", 1]), max_size=3),
                             max_size=2)
    rule = st.fixed_dictionaries({"select": select}, optional={
        "methods": st.dictionaries(st.sampled_from([*METHOD_NAMES, "bogus"]), knobs,
                                   max_size=3),
        "choose": choose})
    training = st.dictionaries(st.sampled_from(["temperature", "alpha", "beta"]),
                               distributions(), max_size=2)
    body = st.fixed_dictionaries({"layers": st.lists(rule, max_size=3)}, optional={
        "distillation": training, "name": st.one_of(st.text(max_size=4), SCALARS)})
    return st.one_of(body, body, body, JUNK)


_RATIO = st.floats(0.0, 0.9, allow_nan=False)
_SHARE = st.floats(0.01, 1.0, allow_nan=False)
VALID_FIELDS = {  # plausible values of each method's fields (some still refused by a model)
    "prune": {"ratio": _RATIO, "importance": st.sampled_from(IMPORTANCES),
              "round_to": st.sampled_from([1, 2, 4])},
    "quantize": {"bits": st.sampled_from([2, 4, 8, 16, 32]), "per_channel": st.booleans(),
                 "symmetric": st.booleans()},
    "share": {"bits": st.integers(1, 8)},
    "sparsify": {"sparsity": _RATIO, "scope": st.sampled_from(SCOPES)},
    "svd": {"rank_ratio": _SHARE, "rank": st.one_of(st.none(), st.integers(1, 40))},
    "tucker": {"rank_ratio": _SHARE, "in_rank": st.one_of(st.none(), st.integers(1, 8)),
               "out_rank": st.one_of(st.none(), st.integers(1, 8))},
    "cp": {"rank_ratio": _SHARE, "rank": st.one_of(st.none(), st.integers(1, 8))},
    "depthwise": {"depth_multiplier": st.integers(1, 2), "init": st.sampled_from(INITS)},
    "grouped": {"groups": st.sampled_from([1, 2, 4]), "init": st.sampled_from(INITS)},
    "circulant": {"block": st.one_of(st.none(), st.integers(1, 16))},
    "hashed": {"compression": _SHARE, "seed": st.integers(0, 2 ** 31)},
}
LAYER_TYPES = {"features": "Conv2d", "classifier": "Linear"}


def valid_plans(layer_names: list[str]) -> st.SearchStrategy:
    """Plan dicts of plausible values, each method on a layer type it applies to."""
    def layer(name: str) -> st.SearchStrategy:
        kind = LAYER_TYPES[name.split(".")[0]]
        names = [m for m in METHOD_NAMES if kind in {t.__name__ for t in METHODS[m].layer_types}]
        one = st.sampled_from(names).flatmap(lambda m: st.fixed_dictionaries(
            {m: st.fixed_dictionaries({}, optional=VALID_FIELDS[m])}))
        return st.lists(one, min_size=1, max_size=3).map(
            lambda ds: {k: v for d in ds for k, v in d.items()})
    chosen = st.lists(st.sampled_from(layer_names), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(lambda names: st.fixed_dictionaries(
        {"layers": st.fixed_dictionaries({n: layer(n) for n in names})}))
