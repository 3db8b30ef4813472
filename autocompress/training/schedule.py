"""Learning-rate schedules: a linear warm-up, then constant, cosine, linear or step decay.

Each schedule is a closed-form factor of the optimizer step (as Hugging Face's
``get_*_schedule_with_warmup``), applied by one ``LambdaLR`` stepped after every optimizer step,
so a warm-up of a few steps works in a fine-tune of a single epoch. The decay spans the run's
planned steps (``trainer.estimated_stepping_batches``): a trial that ASHA stops early stops
part way down it, as it would with any fixed schedule.

Warm-up over ``w`` steps multiplies the learning rate by ``(k + 1) / (w + 1)`` at step ``k``,
so the first step already moves (a factor of 0 would waste it) and step ``w`` runs at the full
rate, where the decay starts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from autocompress.config import bounded, check_fields, choice
from autocompress.errors import ConfigError, invalid

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


def warmup_length(schedule: LRSchedule, steps_per_epoch: int) -> int:
    """The warm-up in optimizer steps."""
    if schedule.warmup_steps:
        return schedule.warmup_steps
    return round(schedule.warmup_epochs * steps_per_epoch)


def lr_factor(schedule: LRSchedule, lr: float, step: int, total_steps: int,
              steps_per_epoch: int) -> float:
    """The multiplier of ``lr`` at optimizer step ``step`` (0-based) of ``total_steps``.

    Args:
        schedule: The schedule.
        lr: The base learning rate (``min_lr`` is relative to it).
        step: The optimizer step; ``total_steps`` gives the rate after the last one.
        total_steps: Optimizer steps of the whole run.
        steps_per_epoch: Optimizer steps per epoch (converts epochs to steps).
    """
    warmup = warmup_length(schedule, steps_per_epoch)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    floor, done = schedule.min_lr / lr, step - warmup
    if schedule.schedule == "none":
        return 1.0
    if schedule.schedule == "step":
        every = max(1, round(schedule.step_size * steps_per_epoch))
        return max(floor, schedule.gamma ** (done // every))
    progress = min(1.0, done / max(1, total_steps - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule.schedule == "cosine" \
        else 1 - progress
    return floor + (1 - floor) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LRSchedule, lr: float,
                    total_steps: int, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`lr_factor` over a run of ``total_steps``.

    Raises:
        ConfigError: The warm-up is not shorter than the run.
    """
    total_steps = max(1, int(total_steps))
    per_epoch = max(1, round(total_steps / max(1, epochs)))
    warmup = warmup_length(schedule, per_epoch)
    if warmup >= total_steps:
        name = "warmup_steps" if schedule.warmup_steps else "warmup_epochs"
        raise invalid(f"{schedule.section}.{name}", getattr(schedule, name),
                      f"a warm-up shorter than the run ({warmup} >= {total_steps} optimizer "
                      "steps)")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, lr, step, total_steps, per_epoch))
