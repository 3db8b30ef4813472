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

import math

import torch

from autocompress.errors import invalid
from autocompress.training.config import SCHEDULES, LRSchedule

__all__ = ["SCHEDULES", "LRSchedule", "build_scheduler", "lr_factor", "warmup_length"]

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
