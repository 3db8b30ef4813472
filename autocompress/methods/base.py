"""Method configs as data, and the registry that maps a method name to its config and transform.

Every compression method is one frozen dataclass (its knobs) plus one ``apply`` function. The
dataclass validates itself, converts to and from a plain dict (strings included, because MLflow
params come back as strings), and knows its *stage*: within a layer, methods run in the order
prune (0) -> factorize / replace filters (1) -> sparsify (2) -> share or quantize (3).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import nn

from autocompress.config import scalar
from autocompress.errors import ConfigError, invalid

PRUNE, FACTORIZE, SPARSIFY, QUANTIZE = 0, 1, 2, 3
STAGE_NAMES = {PRUNE: "prune", FACTORIZE: "factorize", SPARSIFY: "sparsify",
               QUANTIZE: "quantize or share"}

C = TypeVar("C", bound="MethodConfig")


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's config: a frozen, validated, dict-convertible value."""

    method: ClassVar[str] = ""
    stage: ClassVar[int] = PRUNE

    def is_identity(self) -> bool:
        """Return True when applying this config would leave the layer unchanged."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a plain dict of its fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
        """Build a config from a dict, coercing strings; unknown keys are errors.

        Args:
            data: Field values, possibly as strings (MLflow params).
            where: Dotted location used in error messages.

        Returns:
            The validated config.
        """
        where = where or cls.method
        if not isinstance(data, Mapping):
            raise invalid(where, data, f"a mapping of {sorted(_field_types(cls))}")
        types = _field_types(cls)
        unknown = sorted((k for k in data if k not in types), key=repr)
        if unknown:
            raise invalid(f"{where}.{unknown[0]}", data[unknown[0]], f"fields {sorted(types)}")
        values = {k: _coerce(v, types[k], f"{where}.{k}") for k, v in data.items()}
        try:
            return cls(**values)
        except ConfigError as exc:  # __post_init__ names "<method>.<field>": say where it is
            message = str(exc)
            prefix = f"{cls.method}."
            if message.startswith(prefix):
                raise ConfigError(f"{where}.{message[len(prefix):]}") from None
            raise ConfigError(f"{where}: {message}") from None


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, type_: Any, where: str) -> Any:
    """Coerce ``value`` (possibly a string, as MLflow params are) to ``type_``, strictly.

    ``type_`` is bool, int, float, str or an Optional of one. Numbers must be finite, ints
    whole and never bools, bools ``true``/``false``; the rules are :func:`config.scalar`'s.
    """
    args = typing.get_args(type_)
    if type(None) in args:
        if value is None or value == "None":
            return None
        type_ = next(a for a in args if a is not type(None))
    parsed = _parse_text(value, type_) if isinstance(value, str) and type_ in (bool, int) else value
    try:
        return scalar(parsed, type_, where)
    except ConfigError:
        return scalar(value, type_, where)  # raises again, naming the value as it was given


def _parse_text(text: str, type_: type) -> Any:
    """``"true"`` -> True, ``"4"`` / ``"4.0"`` -> 4 (a text left as is is refused later)."""
    if type_ is bool:
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def check_range(where: str, value: float, low: float, high: float, *, high_open: bool = False):
    """Raise a ConfigError unless ``low <= value <= high`` (or ``< high`` when high_open)."""
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise invalid(where, value, f"a number in [{low}, {high}{bracket}")


@dataclass(frozen=True)
class ApplyContext:
    """What a transform may need besides the model.

    Attributes:
        example_inputs: A small batch the model accepts (traced by dependency-aware methods).
        output_layers: Layers whose output width is the task's (never pruned).
        calibration: Optional ``(inputs, targets)`` batch of real data, for data-aware methods
            (Taylor / Hessian importance, least-squares initialisation); None when absent.
    """

    example_inputs: Any
    output_layers: frozenset[str] = frozenset()
    calibration: tuple[Any, Any] | None = None


ApplyFn = Callable[[nn.Module, Mapping[str, MethodConfig], ApplyContext], None]


@dataclass(frozen=True)
class Method:
    """A registered method: its config class, the layer types it accepts and its transform.

    ``apply(model, {layer_name: config}, ctx)`` transforms ``model`` in place (the caller owns a
    copy). Transforms are model-level so that dependency-aware ones (structured pruning) can act
    on all their layers at once.
    """

    config: type[MethodConfig]
    layer_types: tuple[type[nn.Module], ...]
    apply: ApplyFn
    prunes_outputs: bool = False
    # True when the replacement keeps its own parameter format (circulant, hashed): later
    # sparsify / quantize / share stages have no Linear or Conv2d weight to act on.
    replaces_weights: bool = False
    # True when the method changes the layer in place (pruning resizes it) instead of swapping
    # in a module of its own: the only kind that applies to a subclass overriding forward().
    in_place: bool = False
    # fits(config, weight_shape): False when the config would not compress a layer of that
    # shape (a rank whose factors outgrow it); the space binding keeps such values out.
    fits: Callable[[MethodConfig, tuple[int, ...]], bool] | None = None
    # structure(layer, config, name): the module apply() puts in the layer's place, built by
    # the same constructors and rules but unfitted (its cost skeleton: the latency table
    # predicts a plan from these without building it). Methods after the prune stage declare
    # it; prune methods run for real on a copy instead (see methods/skeleton.py).
    structure: Callable[[nn.Module, Any, str], nn.Module] | None = None


def replace_each(model: nn.Module, targets: Mapping[str, MethodConfig],
                 build: Callable[[nn.Module, Any, str], nn.Module]) -> None:
    """Replace every target layer by ``build(layer, config, name)`` (layer-local transforms)."""
    for name, config in targets.items():
        model.set_submodule(name, build(model.get_submodule(name), config, name))


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Register ``method`` under its config's name; a second registration is an error."""
    name = method.config.method
    if name in METHODS:
        raise ValueError(f"method {name!r} is already registered")
    METHODS[name] = method
    return method


# the modules that register the built-in methods when imported
BUILTIN_MODULES = tuple(f"autocompress.methods.{m}" for m in (
    "pruning", "sparsity", "quantization", "lowrank", "decomposition", "compact", "structured"))


def _load_builtins() -> None:
    """Import the built-in methods' modules (each registers its methods), once."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def get_method(name: str, where: str = "method") -> Method:
    """Look a method up by name, failing with the list of valid names."""
    _load_builtins()
    try:
        return METHODS[name]
    except KeyError:
        raise invalid(where, name, sorted(METHODS)) from None


__all__ = [
    "ApplyContext",
    "ConfigError",
    "FACTORIZE",
    "METHODS",
    "Method",
    "MethodConfig",
    "PRUNE",
    "QUANTIZE",
    "SPARSIFY",
    "check_range",
    "get_method",
    "register",
    "replace_each",
]
