"""The task's loss, and distillation that fits the task.

``training.loss`` is ``cross_entropy`` (classification, the default), ``mse``, ``l1``, or
``package.module:function`` taking ``(outputs, targets)`` and returning a scalar tensor.
Classification distils the teacher's softened logits (KL, :func:`distillation_loss`); any other
loss distils the teacher's outputs by mean squared error::

    loss = alpha * task(student, y) + (1 - alpha) * mse(student, teacher)
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F

from autocompress.data.batches import shaped_like
from autocompress.errors import ConfigError
from autocompress.methods import DistillConfig, distillation_loss
from autocompress.training.config import LOSSES, check_loss

__all__ = ["LOSSES", "check_loss", "resolve_loss", "task_loss"]


@functools.lru_cache(maxsize=8)
def resolve_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function ``(outputs, targets) -> scalar`` that ``training.loss`` names."""
    check_loss(name)
    if name == "cross_entropy":
        return F.cross_entropy
    if name in ("mse", "l1"):
        base = F.mse_loss if name == "mse" else F.l1_loss
        return lambda out, y: base(out, shaped_like(y, out).to(out.dtype))
    module_name, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as exc:
        raise ConfigError(f"training.loss: cannot import module {module_name!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"training.loss: module {module_name!r} has no callable {attr!r}")
    return fn


def task_loss(outputs: torch.Tensor, teacher_outputs: torch.Tensor | None,
              targets: torch.Tensor, loss: str, distillation: DistillConfig) -> torch.Tensor:
    """The training loss of one batch: the task's loss, with distillation when a teacher is given.

    Args:
        outputs: The student's predictions.
        teacher_outputs: The teacher's predictions on the same batch, or None.
        targets: The batch's targets.
        loss: ``training.loss``.
        distillation: Its ``alpha`` weighs the task loss; ``temperature`` applies to the KL of
            classifiers only.
    """
    if loss == "cross_entropy":
        return distillation_loss(outputs, teacher_outputs, targets, distillation)
    hard = resolve_loss(loss)(outputs, targets)
    if teacher_outputs is None or distillation.alpha == 1.0:
        return hard
    soft = F.mse_loss(outputs, teacher_outputs.detach().to(outputs.dtype))
    return distillation.alpha * hard + (1.0 - distillation.alpha) * soft
