"""Recipe: everything one search needs, parsed strictly from YAML into frozen dataclasses.

The recipe is pure data. Each section's config class lives in its layer's ``config`` module
(``training.config``, ``hardware.config``, ``search.config``, ``tracking.config``,
``data.config``, ``metrics.config``); this module composes them, checks the rules between
sections (budgets against targets), and imports no profiler, trainer, tuner or MLflow code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autocompress.config import build, check_fields, check_keys, load_yaml, to_dict
from autocompress.data.config import DataConfig
from autocompress.errors import ConfigError, invalid
from autocompress.hardware.config import (
    RELATIVE,
    TARGETED,
    Budget,
    HardwareConfig,
    parse_budgets,
)
from autocompress.metrics.config import MetricConfig
from autocompress.search.config import SAMPLERS, SCHEDULERS, SearchConfig
from autocompress.tracking.config import TrackingConfig
from autocompress.training.config import (
    CLIP_ALGORITHMS,
    OPTIMIZERS,
    PretrainConfig,
    TrainingConfig,
)

# the sections' config classes, re-exported: each lives in its layer's config module
__all__ = ["CLIP_ALGORITHMS", "OPTIMIZERS", "SAMPLERS", "SCHEDULERS", "DataConfig",
           "HardwareConfig", "MetricConfig", "ModelConfig", "PretrainConfig", "Recipe",
           "SearchConfig", "StudentConfig", "TrackingConfig", "TrainingConfig"]


@dataclass(frozen=True)
class StudentConfig:
    """Another architecture to distil the model into: a zoo name or ``package.module:factory``.

    Every candidate is this architecture (fresh seeded weights, or ``checkpoint``) with the
    plan applied to its layers, trained by distillation from the recipe's model.
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None

    def __post_init__(self):
        if not self.name:
            raise invalid("student.name", self.name, "a zoo model name or package.module:fn")


@dataclass(frozen=True)
class ModelConfig:
    """The trained model to compress: a zoo name or ``package.module:factory``.

    With ``student``, candidates are that architecture instead of compressed copies of this
    model, which stays the teacher and the baseline.
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    student: StudentConfig | None = None


@dataclass(frozen=True)
class Recipe:
    """A whole search: model, data, space, budgets, hardware, training, search and tracking."""

    name: str
    model: ModelConfig
    data: DataConfig
    space: str
    budgets: tuple[str, ...] = ()
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    base_dir: str = field(default=".", metadata={"internal": True})  # the recipe's folder

    def __post_init__(self):
        check_fields(self)  # types, choices and bounds, also after dataclasses.replace
        # fail early on a bad expression or target
        for budget in parse_budgets(self.budgets, self.quality):
            if budget.target and not self.hardware.knows(budget.target):
                raise invalid(f"budget {budget}: target", budget.target,
                              self.hardware.known_targets())
            kind = self.hardware.targets.get(budget.target, {}).get("target", budget.target)
            if kind == "analytic" or (budget.target is None and budget.metric in TARGETED
                                      and self.hardware.target == "analytic"):
                raise ConfigError(f"budget {budget}: target 'analytic' does not time; name a "
                                  "timing target (cpu-torch, cpu-onnxruntime, cuda, ...)")
            if budget.metric in RELATIVE and not self.hardware.paired:
                raise ConfigError(f"budget {budget}: a relative budget needs the baseline timed "
                                  "paired with each candidate (hardware.paired: true)")
        if not self.model.name:
            raise invalid("model.name", self.model.name, "a zoo model name or package.module:fn")
        if not self.data.name:
            raise invalid("data.name", self.data.name, "a zoo dataset name or package.module:fn")

    @classmethod
    def from_yaml(cls, path: str | Path) -> Recipe:
        """Load a recipe; relative paths in it are relative to the recipe file."""
        path = Path(path)
        raw = load_yaml(path, "recipe")
        raw.setdefault("name", path.stem)
        raw["base_dir"] = str(path.resolve().parent)
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recipe:
        """Validate a recipe given as a dict.

        Examples:
            >>> recipe = Recipe.from_dict({"name": "demo", "model": {"name": "digits_cnn"},
            ...                            "data": {"name": "digits"}, "space": "cnn.yaml",
            ...                            "budgets": ["size_kb<=60"]})
            >>> recipe.search.sampler, recipe.training.epochs, str(recipe.parsed_budgets()[0])
            ('tpe', 3, 'size_kb<=60')
            >>> Recipe.from_dict({**recipe.to_dict(), "search": {"trails": 8}})
            Traceback (most recent call last):
            autocompress.errors.ConfigError: search.trails: unknown key; did you mean 'trials'? ...
        """
        check_keys(cls, raw, "")
        for required in ("model", "data", "space"):
            if required not in raw:
                raise ConfigError(f"recipe: missing required key {required!r}")
        return build(cls, raw, "")

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain dicts (round-trips through :meth:`from_dict`)."""
        return to_dict(self)

    def resolve(self, relative: str) -> Path:
        """A path from the recipe, resolved against the recipe's folder."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def experiment(self) -> str:
        """The MLflow experiment name (defaults to the recipe's name)."""
        return self.tracking.experiment or self.name

    def parsed_budgets(self) -> tuple[Budget, ...]:
        """The budgets as Budget objects; a budget on the default target loses its ``@``."""
        return tuple(b.on_default(self.hardware.target)
                     for b in parse_budgets(self.budgets, self.quality))

    @property
    def quality(self) -> dict[str, str]:
        """The recipe's quality metric and the comparison a budget on it takes."""
        return {self.metric.key: self.metric.op}

    def replace(self, **sections: Any) -> Recipe:
        """A copy with top-level fields replaced; nested dicts update their section."""
        updates = {}
        for key, value in sections.items():
            current = getattr(self, key)
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            updates[key] = value
        return dataclasses.replace(self, **updates)
