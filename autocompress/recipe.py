"""Recipe: everything one search needs, parsed strictly from YAML into frozen dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autocompress.config import bounded, build, check_fields, check_keys, choice, load_yaml, to_dict
from autocompress.errors import ConfigError, invalid
from autocompress.hardware.budget import RELATIVE, TARGETED, Budget, parse_budgets
from autocompress.hardware.config import HardwareConfig
from autocompress.methods import DistillConfig
from autocompress.methods.feature_distillation import AttentionTransferConfig, HintConfig
from autocompress.methods.regularizers import SparsityConfig
from autocompress.metrics import MetricConfig
from autocompress.training.distributed import DistributedConfig
from autocompress.training.losses import check_loss
from autocompress.training.schedule import LRSchedule

SAMPLERS = ("tpe", "nsga2", "random")
SCHEDULERS = ("asha", "none")
OPTIMIZERS = ("adam", "adamw", "sgd")
CLIP_ALGORITHMS = ("norm", "value")


@dataclass(frozen=True)
class PretrainConfig(LRSchedule):
    """How to train the baseline when the recipe gives no checkpoint.

    Takes the learning-rate schedule of :class:`~autocompress.training.schedule.LRSchedule`.
    """

    section: ClassVar[str] = "model.pretrain"

    epochs: int = bounded(10, ge=1)
    lr: float = bounded(1e-3, gt=0)


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
class DataConfig:
    """The data: a zoo name or ``package.module:function`` returning data of any form.

    The factory may return DataSplits / DatasetSplits, a LightningDataModule, or train, val
    (and test) Datasets or DataLoaders as a dict or tuple (see :mod:`autocompress.data.load`).
    ``label_key`` names the targets in dict batches (default: ``labels``, then ``label``).
    """

    name: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = bounded(64, ge=1)
    label_key: str | None = None

    def __post_init__(self):
        check_fields(self, "data")  # each field's type and range, also when built in code


@dataclass(frozen=True)
class TrainingConfig(LRSchedule):
    """Fine-tuning of each candidate (with distillation from the original model).

    Takes the learning-rate schedule of :class:`~autocompress.training.schedule.LRSchedule`;
    ``gradient_clip_val`` clips each step's gradients (``gradient_clip_algorithm``: their total
    ``norm`` or each ``value``); ``limit_train_batches`` / ``limit_val_batches`` cap each epoch at
    a number of batches (an integer) or a fraction of them (a number in (0, 1]), as in Lightning.
    """

    section: ClassVar[str] = "training"

    epochs: int = bounded(3, ge=1)
    optimizer: str = choice("adam", OPTIMIZERS)
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.0, ge=0)
    distillation: DistillConfig | None = field(default_factory=DistillConfig)
    attention_transfer: AttentionTransferConfig | None = None
    hint: HintConfig | None = None
    sparsity: SparsityConfig | None = None
    limit_train_batches: int | float | None = bounded(None, gt=0)
    limit_val_batches: int | float | None = bounded(None, gt=0)
    gradient_clip_val: float | None = bounded(None, gt=0)
    gradient_clip_algorithm: str = choice("norm", CLIP_ALGORITHMS)
    calibration_samples: int = bounded(256, ge=1)
    # the task's loss: cross_entropy (classification), mse, l1, or package.module:fn(out, y)
    loss: str = "cross_entropy"
    # Ray Train workers per trial (Lightning DDP, or DeepSpeed ZeRO on GPUs); 1 trains in-trial
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self):
        super().__post_init__()
        for name in ("limit_train_batches", "limit_val_batches"):
            _check_limit(f"training.{name}", getattr(self, name))
        if self.gradient_clip_algorithm not in CLIP_ALGORITHMS:
            raise invalid("training.gradient_clip_algorithm", self.gradient_clip_algorithm,
                          CLIP_ALGORITHMS)
        if self.gradient_clip_val is not None and self.gradient_clip_algorithm == "value" and (
                self.distributed.strategy == "deepspeed"):
            raise ConfigError("training.gradient_clip_algorithm: DeepSpeed clips by norm only; "
                              "use 'norm' with distributed.strategy 'deepspeed'")


def _check_limit(where: str, value: int | float | None) -> None:
    """Lightning's batch limit: None, an integer >= 1 (batches) or a float in (0, 1] (fraction)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            value >= 1 if isinstance(value, int) else 0 < value <= 1):
        raise invalid(where, value, "an integer >= 1 (batches) or a number in (0, 1] "
                                    "(a fraction of the batches)")


@dataclass(frozen=True)
class SearchConfig:
    """The Ray Tune + Optuna search."""

    trials: int = bounded(16, ge=1)
    concurrency: int = bounded(2, ge=1)
    sampler: str = choice("tpe", SAMPLERS)
    seed: int = bounded(0, ge=0)
    scheduler: str = choice("asha", SCHEDULERS)
    grace_period: int = bounded(1, ge=1)
    reduction_factor: int = bounded(2, ge=2)
    storage: str = "autocompress_runs"
    cpus_per_trial: float = bounded(1.0, gt=0)
    max_failures: int = bounded(2, ge=0)  # retries of a trial whose worker or node was lost

    def __post_init__(self):
        check_fields(self, "search")  # each field's type and range, also when built in code


@dataclass(frozen=True)
class TrackingConfig:
    """Where trials are recorded (MLflow)."""

    uri: str = "sqlite:///mlruns.db"
    experiment: str | None = None


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
        check_loss(self.training.loss)
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
        """Validate a recipe given as a dict."""
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
