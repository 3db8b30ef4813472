"""CompressionPlan: the concrete, serialisable per-layer choices of one candidate.

The plan's dict form is the same value everywhere: the Ray Tune trial config (keys nested with
``/``), the MLflow params (flattened with ``/``) and YAML::

    {"layers": {"features.0": {"prune": {"ratio": 0.25}, "quantize": {"bits": 4}}},
     "distillation": {"temperature": 4.0, "alpha": 0.5}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from autocompress.errors import PlanError
from autocompress.methods.base import SPARSIFY, STAGE_NAMES, MethodConfig, get_method
from autocompress.methods.distillation import DistillConfig
from autocompress.methods.feature_distillation import AttentionTransferConfig, HintConfig
from autocompress.methods.layers import overrides_forward
from autocompress.methods.regularizers import SparsityConfig

SEP = "/"
# Training-time methods (no change to the layers): plan key -> config class.
TRAINING = {"distillation": DistillConfig, "attention_transfer": AttentionTransferConfig,
            "hint": HintConfig, "sparsity": SparsityConfig}
CHOOSE, DEFAULTS = "choose", "defaults"  # search-space bookkeeping found in trial configs


@dataclass(frozen=True)
class CompressionPlan:
    """Per-layer method configs, in stage order, plus the distillation settings.

    Attributes:
        layers: Layer name -> configs, ordered prune -> factorize -> quantize.
        distillation: Distillation settings for fine-tuning; None trains on hard labels only.

    Examples:
        >>> plan = CompressionPlan.from_dict({"layers": {
        ...     "features.0": {"quantize": {"bits": 4}, "prune": {"ratio": 0.25}},
        ...     "classifier": {"svd": {"rank_ratio": 1.0}}}})  # full rank: an identity, dropped
        >>> [config.method for config in plan.layers["features.0"]], list(plan.layers)
        (['prune', 'quantize'], ['features.0'])
    """

    layers: Mapping[str, tuple[MethodConfig, ...]] = field(default_factory=dict)
    distillation: DistillConfig | None = None
    attention_transfer: AttentionTransferConfig | None = None
    hint: HintConfig | None = None
    sparsity: SparsityConfig | None = None

    def __post_init__(self):
        for name, configs in self.layers.items():
            _check_combination(name, configs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionPlan:
        """Build a plan from its dict form; identity choices (ratio 0, 32 bits...) are dropped.

        Raises:
            PlanError: the plan's structure is wrong (a key, a layer name, a non-mapping).
            ConfigError: a method's field has a wrong type or value.
        """
        if not isinstance(data, Mapping):
            raise PlanError(f"plan: expected a mapping with keys layers, {', '.join(TRAINING)}; "
                            f"got {data!r}")
        unknown = sorted((k for k in data if k not in ("layers", *TRAINING)), key=repr)
        if unknown:
            raise PlanError(f"plan: unknown key {unknown[0]!r}; "
                            f"allowed: layers, {', '.join(TRAINING)}")
        layers = {}
        for name, methods in _mapping(data.get("layers") or {}, "layers").items():
            if not isinstance(name, str) or not name:
                raise PlanError(f"layers: invalid layer name {name!r}; allowed: a module name")
            configs = _layer_configs(name, methods)
            if configs:
                layers[name] = configs
        training = {key: config_cls.from_dict(data[key], key)
                    for key, config_cls in TRAINING.items() if data.get(key) is not None}
        return cls(layers, **training)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain nested dicts (YAML / JSON ready)."""
        out: dict[str, Any] = {
            "layers": {n: {c.method: c.to_dict() for c in cs} for n, cs in self.layers.items()}
        }
        for key in TRAINING:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
        return out

    def to_params(self) -> dict[str, str]:
        """Flatten to ``{"layers/fc1/prune/ratio": "0.5", ...}`` (MLflow params)."""
        return {k: str(v) for k, v in _flatten(self.to_dict()).items()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CompressionPlan:
        """Inverse of :meth:`to_params`; keys that are not plan keys are ignored."""
        nested: dict[str, Any] = {}
        for key, value in params.items():
            parts = str(key).split(SEP)
            if parts[0] not in ("layers", *TRAINING):
                continue
            node = nested
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise PlanError(f"plan param {key!r}: {part!r} is both a value and a group")
            if isinstance(node.get(parts[-1]), dict):
                raise PlanError(f"plan param {key!r}: {parts[-1]!r} is both a value and a group")
            node[parts[-1]] = value
        return cls.from_dict(nested)

    def check(self, model: nn.Module) -> None:
        """Raise a PlanError if a layer is unknown or a method does not apply to its type."""
        modules = dict(model.named_modules())
        for name, configs in self.layers.items():
            if name not in modules:
                raise PlanError(f"{name}: no such layer in the model")
            for config in configs:
                types = get_method(config.method).layer_types
                if not isinstance(modules[name], types):
                    allowed = ", ".join(t.__name__ for t in types)
                    raise PlanError(
                        f"{name}: {config.method} applies to {allowed}, "
                        f"not {type(modules[name]).__name__}"
                    )
                if overrides_forward(modules[name]) and not get_method(config.method).in_place:
                    raise PlanError(
                        f"{name}: {type(modules[name]).__name__} overrides forward(); "
                        f"{config.method} would replace it with a layer that computes "
                        "differently (only in-place methods apply: prune)")

    def summary(self) -> str:
        """A short human-readable description, one clause per compressed layer."""
        parts = [
            f"{n}[" + ",".join(f"{c.method}:{_short(c)}" for c in cs) + "]"
            for n, cs in self.layers.items()
        ]
        return "; ".join(parts) or "uncompressed"


def _mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise PlanError(f"{where}: expected a mapping, got {value!r}")
    return value


def _layer_configs(name: str, methods: Any) -> tuple[MethodConfig, ...]:
    """One layer's non-identity method configs, in stage order."""
    configs = []
    for method, fields in _mapping(methods, f"layers.{name}").items():
        if method == CHOOSE:  # the searched choice between alternatives, kept for the record
            continue
        where = f"layers.{name}.{method}"
        config_cls = get_method(method, f"layers.{name}").config
        fields = {k: v for k, v in _mapping(fields or {}, where).items() if k != DEFAULTS}
        configs.append(config_cls.from_dict(fields, where))
    return tuple(sorted((c for c in configs if not c.is_identity()), key=lambda c: c.stage))


def _check_combination(name: str, configs: tuple[MethodConfig, ...]) -> None:
    stages = [c.stage for c in configs]
    for i, config in enumerate(configs):
        later = [c.method for c in configs[i + 1:] if c.stage >= SPARSIFY]
        if later and get_method(config.method).replaces_weights:
            raise PlanError(f"{name}: {config.method} replaces the layer's weights with its own "
                            f"format; {', '.join(later)} cannot follow it")
    if stages != sorted(stages):
        raise PlanError(
            f"{name}: methods must be ordered prune -> factorize -> sparsify -> quantize or share"
        )
    for stage in set(stages):
        if stages.count(stage) > 1:
            clash = [c.method for c in configs if c.stage == stage]
            raise PlanError(
                f"{name}: at most one {STAGE_NAMES[stage]} method per layer, got {clash}"
            )


def _short(config: MethodConfig) -> str:
    return "/".join(str(v) for v in config.to_dict().values())


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{SEP}{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat
