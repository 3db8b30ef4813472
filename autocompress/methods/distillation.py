"""Knowledge distillation losses (a training-time method: no change to the student's layers)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from autocompress.errors import invalid
from autocompress.methods.base import MethodConfig, check_range


@dataclass(frozen=True)
class DistillConfig(MethodConfig):
    """Softened-softmax distillation from the uncompressed teacher (Hinton et al., 2015).

    Attributes:
        temperature: Softmax temperature T applied to both teacher and student logits.
        alpha: Weight of the hard-label cross-entropy; ``1 - alpha`` weighs the soft loss.
    """

    method = "distillation"
    temperature: float = 4.0
    alpha: float = 0.5

    def __post_init__(self):
        if not self.temperature > 0:
            raise invalid("distillation.temperature", self.temperature, "a number > 0")
        check_range("distillation.alpha", self.alpha, 0.0, 1.0)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets: torch.Tensor,
    config: DistillConfig,
) -> torch.Tensor:
    """``alpha * CE(student, y) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``.

    The ``T^2`` factor keeps the soft term's gradient scale independent of T. With
    ``alpha == 1`` (or no teacher) this is plain cross-entropy.
    """
    hard = F.cross_entropy(student_logits, targets)
    if teacher_logits is None or config.alpha == 1.0:
        return hard
    t = config.temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits.detach() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return config.alpha * hard + (1.0 - config.alpha) * t * t * soft
