"""Failures are data: what broke a trial, in words and as the tail of its traceback.

A candidate that fails by itself (its plan, training or export) reports a ``failed``
:class:`~autocompress.search.results.TrialResult` naming the real exception; one whose loss,
outputs or weights turn NaN/inf stops as ``diverged`` with the epoch. A trial whose worker dies
before it can report (e.g. it cannot import torch) leaves Ray's error file: its text, not Tune's
"Could not fetch metrics", is the reason.
"""

from __future__ import annotations

import math
import os
import traceback as tb
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from autocompress.search.results import TRACEBACK_LINES, TrialResult, TrialStatus

__all__ = ["Diverged", "check_finite", "error_file_text", "failure_result", "reason_of",
           "tail"]


class Diverged(RuntimeError):
    """The candidate's loss, outputs or weights became NaN or infinite."""

    def __init__(self, what: str, epoch: int):
        super().__init__(f"{what} became non-finite in epoch {epoch}")
        self.epoch = epoch


def tail(text: str, lines: int = TRACEBACK_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [line for line in text.rstrip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def reason_of(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def failure_result(exc: BaseException, worst: Mapping[str, float],
                   nodes: Mapping[str, str]) -> TrialResult:
    """The final result of a trial broken by ``exc`` (``diverged`` for :class:`Diverged`).

    Args:
        exc: What was raised.
        worst: The metrics to report in place of measured ones (the worst quality, NaN costs).
        nodes: Where it ran (``{"node": id}``).
    """
    status = TrialStatus.DIVERGED if isinstance(exc, Diverged) else TrialStatus.FAILED
    trace = tail("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))
    return TrialResult(status, metrics=dict(worst), final=True,
                       epoch=getattr(exc, "epoch", 0), reason=reason_of(exc), traceback=trace,
                       nodes=dict(nodes))


def check_finite(model: nn.Module, epoch: int) -> None:
    """Raise :class:`Diverged` when a parameter of ``model`` holds NaN or inf."""
    for name, value in model.state_dict().items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(
                value).all():
            raise Diverged(f"weight {name}", epoch)


def check_loss(loss: Any, epoch: int) -> None:
    """Raise :class:`Diverged` when a training step's loss is NaN or inf."""
    value = loss.get("loss") if isinstance(loss, Mapping) else loss
    if value is None:
        return
    number = float(value.detach()) if torch.is_tensor(value) else float(value)
    if not math.isfinite(number):
        raise Diverged("the training loss", epoch)


def error_file_text(path: str | None) -> tuple[str, str]:
    """The reason (the exception's line) and the traceback tail in a Ray trial's error file.

    Ray writes the worker's whole traceback there; its last ``Error: ...`` line names the
    real exception. Returns ``("", "")`` without a readable file.
    """
    if not path or not os.path.exists(path):
        return "", ""
    with open(path, errors="replace") as f:
        text = f.read()
    return _last_exception_line(text.splitlines()), tail(text)


def _last_exception_line(lines: Iterable[str]) -> str:
    kept = [line.strip() for line in lines if line.strip()]
    for line in reversed(kept):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            return line
    return kept[-1] if kept else ""
