"""A student of another architecture (``model.student``): built, checked and shipped to trials.

Without ``model.student`` every candidate is a compressed copy of the teacher. With it, the
driver builds the student once (its checkpoint, or fresh weights drawn from the search seed, so
every trial starts from the same ones), binds the search space to the student's layers and
ships its weights in the :class:`~autocompress.search.trial.SearchContext`; each trial applies
its plan to a copy of that student and trains it by distillation from the teacher. The teacher
stays the baseline. The student is built with :func:`~autocompress.zoo.build_model`, so its
artifacts name the student's factory as their base.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from autocompress.data import call_model, outputs_of
from autocompress.errors import ConfigError
from autocompress.recipe import Recipe, StudentConfig, TrainingConfig
from autocompress.zoo import build_model


def initial_student(recipe: Recipe) -> nn.Module | None:
    """The recipe's student before any plan, in eval mode; None without ``model.student``.

    Raises:
        ConfigError: The checkpoint is missing or does not fit the student's architecture.
    """
    config = recipe.model.student
    if config is None:
        return None
    with torch.random.fork_rng():
        torch.manual_seed(recipe.search.seed)
        student = _build(config)
    if config.checkpoint:
        from autocompress.search.checkpoint import load_checkpoint

        load_checkpoint(student, recipe.resolve(config.checkpoint), "model.student.checkpoint",
                        config.name)
    return student.eval()


def build_student(recipe: Recipe, state: dict[str, torch.Tensor]) -> nn.Module:
    """The student architecture with the weights :func:`initial_student` gave, in eval mode."""
    student = _build(recipe.model.student)
    student.load_state_dict(state)
    return student.eval()


def _build(config: StudentConfig) -> nn.Module:
    return build_model(config.name, **config.kwargs)


def check_student(training: TrainingConfig, student: nn.Module, teacher: nn.Module,
                  inputs: Any, different: bool) -> None:
    """Refuse, in the driver, a student its teacher cannot teach (see the checks below).

    Args:
        training: The recipe's training section.
        student: The model the plans apply to (the student, or the teacher itself).
        teacher: The model distilled from.
        inputs: A small batch of model inputs both models accept.
        different: Whether the student is another architecture.

    Raises:
        ConfigError: Feature pairs name a missing layer, or the two models' outputs differ in
            shape (softened-logit distillation compares them element by element).
    """
    check_feature_pairs(training, student, teacher, different)
    if not different:
        return
    with torch.no_grad():
        shapes = [tuple(outputs_of(call_model(m, inputs)).shape) for m in (student, teacher)]
    if shapes[0] != shapes[1]:
        raise ConfigError(f"model.student: its outputs have shape {shapes[0]}, the teacher's "
                          f"{shapes[1]}; distillation needs the same outputs (e.g. the same "
                          "num_classes in model.student.kwargs)")


def check_feature_pairs(training: TrainingConfig, student: nn.Module, teacher: nn.Module,
                        different: bool) -> None:
    """Refuse attention-transfer / hint pairs that name a layer one of the two models lacks.

    Args:
        training: The recipe's training section.
        student: The model the plans apply to (the student, or the teacher itself).
        teacher: The model distilled from.
        different: Whether the student is another architecture (worded in the error).

    Raises:
        ConfigError: Naming the field, the missing layer, its model and close valid names.
    """
    for key in ("attention_transfer", "hint"):
        config = getattr(training, key)
        if config is None:
            continue
        for s, t in config.pair_list():
            for name, model, label in ((s, student, "student"), (t, teacher, "teacher")):
                _check_layer(f"training.{key}.pairs", name, model,
                             label if different else "model")


def _check_layer(where: str, name: str, model: nn.Module, label: str) -> None:
    names = [n for n, _ in model.named_modules() if n]
    if name in names:
        return
    near = difflib.get_close_matches(name, names, n=5) or names[:8]
    more = ", ..." if len(names) > len(near) else ""
    raise ConfigError(f"{where}: {name!r} is not a layer of the {label} "
                      f"({type(model).__name__}); its layers include {', '.join(near)}{more}. "
                      "Pairs read 'student_layer:teacher_layer'")
