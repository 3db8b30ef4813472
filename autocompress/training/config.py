"""The training sections of a recipe, as plain data: fine-tuning, pretraining, distribution.

Nothing here imports Lightning, Ray or DeepSpeed: the machinery that reads these configs
(:mod:`autocompress.training.module`, :mod:`autocompress.training.distributed`,
:mod:`autocompress.training.schedule`) takes them as arguments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from autocompress.config import bounded, build, check_fields, choice, to_dict
from autocompress.errors import ConfigError, invalid
from autocompress.methods.distillation import DistillConfig
from autocompress.methods.feature_distillation import AttentionTransferConfig, HintConfig
from autocompress.methods.regularizers import SparsityConfig

OPTIMIZERS = ("adam", "adamw", "sgd")
CLIP_ALGORITHMS = ("norm", "value")
LOSSES = ("cross_entropy", "mse", "l1")
STRATEGIES = ("ddp", "deepspeed")
WORKER_RESOURCE_AMOUNT = 0.001  # a token amount: it selects nodes, it does not limit them

SCHEDULES = ("none", "cosine", "linear", "step")


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate schedule fields shared by ``training`` and ``model.pretrain``.

    A config class that inherits these also defines ``lr`` and ``epochs``, and names its
    recipe section in ``section`` (for error messages).

    Attributes:
        schedule: ``none`` (constant after the warm-up), ``cosine`` (half a cosine from ``lr``
            down to ``min_lr`` over the steps after the warm-up), ``linear`` (a straight line
            down to ``min_lr``) or ``step`` (``lr`` times ``gamma`` every ``step_size`` epochs,
            never below ``min_lr``).
        warmup_epochs: Length of the linear warm-up in epochs (fractions allowed), or ...
        warmup_steps: ... in optimizer steps; give at most one of the two.
        step_size: Epochs between two decays of ``step`` (fractions allowed); required by
            ``step``, refused by the others.
        gamma: The factor of each ``step`` decay, in (0, 1].
        min_lr: The floor the decaying schedules end at (``cosine``, ``linear``) or never go
            under (``step``); at most ``lr``.
    """

    section: ClassVar[str] = "training"

    schedule: str = choice("none", SCHEDULES)
    warmup_epochs: float = bounded(0.0, ge=0)
    warmup_steps: int = bounded(0, ge=0)
    step_size: float | None = bounded(None, gt=0)
    gamma: float = bounded(0.1, gt=0, le=1)
    min_lr: float = bounded(0.0, ge=0)

    def __post_init__(self):
        check_fields(self, self.section)  # each field's type and range, also when built in code
        self._check_schedule()

    def _check_schedule(self) -> None:
        """The rules between fields (each field's own range is declared on it)."""
        where = self.section
        if self.schedule not in SCHEDULES:
            raise invalid(f"{where}.schedule", self.schedule, SCHEDULES)
        if self.warmup_epochs > 0 and self.warmup_steps > 0:
            raise ConfigError(f"{where}.warmup_steps: give warmup_epochs or warmup_steps, not "
                              f"both (got {self.warmup_epochs!r} and {self.warmup_steps!r})")
        epochs = getattr(self, "epochs", None)
        if epochs is not None and self.warmup_epochs >= epochs:
            raise invalid(f"{where}.warmup_epochs", self.warmup_epochs,
                          f"a number of epochs < {where}.epochs ({epochs})")
        if (self.schedule == "step") != (self.step_size is not None):
            raise ConfigError(
                f"{where}.step_size: {self.step_size!r} with schedule {self.schedule!r}; "
                "schedule 'step' needs step_size (epochs between decays), the others take none")
        lr = getattr(self, "lr", None)
        if lr is not None and self.min_lr > lr:
            raise invalid(f"{where}.min_lr", self.min_lr, f"a number <= {where}.lr ({lr:g})")
        if self.schedule == "none" and self.min_lr > 0:
            raise ConfigError(f"{where}.min_lr: {self.min_lr!r} with schedule 'none', which "
                              "never decays; choose cosine, linear or step")

    @property
    def changes_lr(self) -> bool:
        """True when the learning rate changes during a run (a decay or a warm-up)."""
        return self.schedule != "none" or self.warmup_epochs > 0 or self.warmup_steps > 0

    def schedule_fields(self) -> dict[str, object]:
        """The schedule's fields, e.g. to give a pretraining's schedule to a TrainingConfig."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(LRSchedule)}


@dataclass(frozen=True)
class PretrainConfig(LRSchedule):
    """How to train the baseline when the recipe gives no checkpoint.

    Takes the learning-rate schedule of :class:`~autocompress.training.schedule.LRSchedule`.
    """

    section: ClassVar[str] = "model.pretrain"

    epochs: int = bounded(10, ge=1)
    lr: float = bounded(1e-3, gt=0)


@dataclass(frozen=True)
class DistributedConfig:
    """How one candidate is fine-tuned: ``workers`` Ray Train workers, DDP or DeepSpeed.

    Attributes:
        workers: Ray Train workers per trial; 1 keeps the single-process path.
        strategy: ``ddp`` (CPU or GPU) or ``deepspeed`` (ZeRO; CUDA GPUs only).
        deepspeed: DeepSpeed config passthrough (ZeRO stage, offload, precision); None means
            ZeRO stage 2. Read with strategy ``deepspeed`` only.
        use_gpu: One GPU per worker.
        cpus_per_worker: CPUs reserved per worker (also its torch thread count).
        worker_resource: A custom node resource the workers ask a token amount of, so they
            land on the nodes that carry it (``trainer``, as trials do); ignored when no node
            carries it; None places workers anywhere.
        find_unused_parameters: DDP's option, for plans whose loss leaves a trainable
            parameter out (none of the built-in methods does; it costs a graph walk per step).
    """

    workers: int = bounded(1, ge=1)
    strategy: str = field(default="ddp", metadata={"choices": STRATEGIES})
    deepspeed: dict[str, Any] | None = None
    use_gpu: bool = False
    cpus_per_worker: float = bounded(1.0, gt=0)
    worker_resource: str | None = "trainer"
    find_unused_parameters: bool = False

    def __post_init__(self):
        if type(self.workers) is not int or self.workers < 1:
            raise invalid("distributed.workers", self.workers, "an integer >= 1")
        if self.strategy not in STRATEGIES:
            raise invalid("distributed.strategy", self.strategy, STRATEGIES)
        if self.deepspeed is not None and not isinstance(self.deepspeed, Mapping):
            raise invalid("distributed.deepspeed", self.deepspeed, "a DeepSpeed config mapping")
        if self.deepspeed is not None and self.strategy != "deepspeed":
            raise ConfigError("distributed.deepspeed: given, but strategy is "
                              f"{self.strategy!r}; set strategy: deepspeed or drop it")
        if self.strategy == "deepspeed" and not self.use_gpu:
            raise ConfigError("distributed.strategy: 'deepspeed' runs on CUDA GPUs only "
                              "(Lightning refuses the CPU accelerator); set use_gpu: true, "
                              "or use strategy 'ddp' on CPUs")
        if type(self.cpus_per_worker) not in (int, float) or not self.cpus_per_worker > 0:
            raise invalid("distributed.cpus_per_worker", self.cpus_per_worker, "a number > 0")
        if self.worker_resource is not None and (
                not isinstance(self.worker_resource, str) or not self.worker_resource):
            raise invalid("distributed.worker_resource", self.worker_resource,
                          "a custom resource name, e.g. 'trainer'")

    @property
    def enabled(self) -> bool:
        """True when training leaves the trial process (more than one worker, or GPUs)."""
        return self.workers > 1 or self.use_gpu

    def worker_bundle(self, cluster: Mapping[str, float]) -> dict[str, float]:
        """Ray resources of one worker; the custom resource only if ``cluster`` has it."""
        bundle = {"CPU": float(self.cpus_per_worker), **({"GPU": 1.0} if self.use_gpu else {})}
        if self.worker_resource and cluster.get(self.worker_resource, 0) > 0:
            bundle[self.worker_resource] = WORKER_RESOURCE_AMOUNT
        return bundle

    def per_worker_batch(self, batch_size: int) -> int:
        """Per-worker batch size, so that the global batch stays the recipe's."""
        return max(1, math.ceil(batch_size / self.workers))

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (round-trips through :meth:`from_dict`)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> DistributedConfig:
        """Build strictly from a dict: unknown keys and wrong types are ConfigErrors."""
        return build(cls, raw, "distributed")


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
        check_loss(self.loss)
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


def check_loss(name: str) -> None:
    """Raise ConfigError unless ``name`` is a built-in loss or an import path (not imported)."""
    if name not in LOSSES and ":" not in str(name):
        raise invalid("training.loss", name, f"one of {', '.join(LOSSES)} or "
                                             "package.module:function")
