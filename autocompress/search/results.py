"""A trial's outcome as one typed value, from the trial to the searcher, tracking and front.

Ray Tune carries results as flat dicts (its searchers see them flattened with ``/``), so a
:class:`TrialResult` goes through ``tune.report`` as :meth:`TrialResult.to_report` and comes back
with :meth:`TrialResult.from_report`. The flat form keeps the keys Tune's scheduler and Optuna
read (the quality metric, ``latency_ms``, ``size_kb``, ``final``, ``constraints``) and names each
budget's violation after the budget's metric (``violation/size_kb``), never by position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

__all__ = ["TUNE_KEYS", "TrialResult", "TrialStatus", "violation_name"]

# Tune's own bookkeeping in every result: not metrics of the candidate
TUNE_KEYS = frozenset({
    "timestamp", "training_iteration", "time_since_restore", "iterations_since_restore",
    "pid", "done", "time_total_s_tune", "checkpoint_dir_name", "date", "hostname", "node_ip",
    "should_checkpoint", "trial_id", "experiment_tag",
})
NODE = "node"  # result keys "node" and "node/TARGET" hold Ray node ids
VIOLATION = "violation/"
TRACEBACK_LINES = 30  # how much of a worker's traceback a result carries
_TEXT_KEYS = ("status", "reason", "traceback")
_OWN_KEYS = frozenset({"final", "feasible", "epochs_trained", "constraints", *_TEXT_KEYS})


LOST = ("lost: the search's driver was killed before Ray Tune saved this trial in its "
        "state, so the resumed search could not continue it (another trial took its place)")


def is_lost(reason: str) -> bool:
    """Whether a failed trial's reason says it was lost (see ``LOST``)."""
    return reason.startswith("lost:")


class TrialStatus(str, Enum):
    """How a trial ended (``training`` while it still reports epochs).

    The epoch reports' ``training`` is what the DDP workers write too
    (:func:`autocompress.training.distributed.epoch_result`), so both paths agree.
    """

    RUNNING = "training"
    COMPLETED = "completed"
    PRUNED = "pruned"
    INFEASIBLE = "infeasible"
    FAILED = "failed"
    DIVERGED = "diverged"

    @property
    def ended_badly(self) -> bool:
        """True for a trial whose candidate broke (failed or diverged): no valid metrics."""
        return self in (TrialStatus.FAILED, TrialStatus.DIVERGED)

    @classmethod
    def parse(cls, value: Any) -> TrialStatus:
        """The status named ``value`` (``running`` and an empty one read as training)."""
        if isinstance(value, cls):
            return value
        text = str(value or "")
        if text in ("running", ""):
            return cls.RUNNING
        try:
            return cls(text)
        except ValueError:
            return cls.FAILED  # an unknown status is not a success


def violation_name(budget_key: str, taken: Mapping[str, Any] = ()) -> str:
    """The metric name of a budget's violation, e.g. ``violation/size_kb``, unique in ``taken``."""
    name, n = f"{VIOLATION}{budget_key}", 2
    while name in taken:
        name, n = f"{VIOLATION}{budget_key}#{n}", n + 1
    return name


@dataclass(frozen=True)
class TrialResult:
    """One report of a trial: an epoch while it trains, or how it ended.

    Attributes:
        status: How the trial stands or ended.
        metrics: The candidate's measured numbers (quality on val, ``latency_ms``, ``size_kb``,
            timings, ...); NaN where it was not measured.
        violations: Each budget's violation (> 0 breaks it), keyed ``violation/<budget key>``
            in the budgets' order.
        final: True for the trial's last report (an epoch report is not final).
        epoch: Epochs trained so far (for a diverged trial: the epoch it diverged in).
        reason: Why it failed, diverged or is infeasible (empty otherwise).
        traceback: The tail of the worker's traceback for a failed trial.
        nodes: Ray node ids, ``node`` (where it ran) and ``node/TARGET`` (where measured).
        artifact: A local folder holding ``model.acz`` (not reported: Tune's checkpoint is).
        plan: The trial's compression plan as a dict, when known (not reported: it is the
            trial's config).
    """

    status: TrialStatus
    metrics: Mapping[str, float] = field(default_factory=dict)
    violations: Mapping[str, float] = field(default_factory=dict)
    final: bool = True
    epoch: int = 0
    reason: str = ""
    traceback: str = ""
    nodes: Mapping[str, str] = field(default_factory=dict)
    artifact: str | None = None
    plan: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TrialStatus.parse(self.status))

    @property
    def constraints(self) -> tuple[float, ...]:
        """The violations in the budgets' order (Optuna's constraint values)."""
        return tuple(self.violations.values())

    @property
    def feasible(self) -> bool:
        """True when the candidate ran and every budget holds."""
        return (not self.status.ended_badly and self.status != TrialStatus.INFEASIBLE
                and all(v <= 0 for v in self.violations.values()))

    def with_status(self, status: TrialStatus, reason: str = "") -> TrialResult:
        """The same result with another status (and reason)."""
        return replace(self, status=status, reason=reason or self.reason)

    def to_report(self) -> dict[str, Any]:
        """The flat dict handed to ``tune.report`` (numbers, strings and one list)."""
        out: dict[str, Any] = {**self.metrics, **self.violations, **self.nodes}
        out.update(status=self.status.value, final=float(self.final),
                   feasible=float(self.feasible), epochs_trained=int(self.epoch),
                   constraints=list(self.constraints))
        if self.reason:
            out["reason"] = self.reason
        if self.traceback:
            out["traceback"] = self.traceback
        return out

    @classmethod
    def from_report(cls, result: Mapping[str, Any] | None,
                    artifact: str | None = None) -> TrialResult:
        """Read back a reported dict (as Tune's ``last_result`` or a searcher sees it).

        A result without ``final`` is an epoch report; an empty one reads as a pruned trial
        that never reported.
        """
        result = dict(result or {})
        if not result:
            return cls(TrialStatus.PRUNED, final=False, artifact=artifact)
        violations = {k: float(v) for k, v in result.items() if k.startswith(VIOLATION)}
        if not violations and result.get("constraints"):  # results written before names
            violations = {f"{VIOLATION}{i}": float(v)
                          for i, v in enumerate(result["constraints"])}
        nodes = {k: str(v) for k, v in result.items()
                 if (k == NODE or k.startswith(NODE + "/")) and isinstance(v, str)}
        metrics = {k: float(v) for k, v in result.items()
                   if k not in TUNE_KEYS and k not in _OWN_KEYS and k not in violations
                   and k not in nodes and _number(v)}
        return cls(status=TrialStatus.parse(result.get("status")), metrics=metrics,
                   violations=violations, final=bool(result.get("final")),
                   epoch=int(result.get("epochs_trained") or 0),
                   reason=str(result.get("reason") or ""),
                   traceback=str(result.get("traceback") or ""), nodes=nodes,
                   artifact=artifact)

    def loggable(self) -> dict[str, float]:
        """Finite metrics and violations, as MLflow metrics (``feasible`` included)."""
        values = {**self.metrics, **self.violations, "feasible": float(self.feasible)}
        return {k: float(v) for k, v in values.items() if math.isfinite(v)}

    def outcome(self) -> TrialResult:
        """How the trial ended, judged from its last report.

        A trial without a final report was stopped by the scheduler (pruned); a completed one
        that misses a budget after training (e.g. its accuracy) is infeasible.
        """
        if not self.final:
            return self.with_status(TrialStatus.PRUNED, "stopped early by the scheduler")
        if self.status == TrialStatus.COMPLETED and not self.feasible:
            broken = ", ".join(k[len(VIOLATION):] for k, v in self.violations.items() if v > 0)
            return self.with_status(TrialStatus.INFEASIBLE,
                                    self.reason or f"breaks the budget on {broken}")
        return self


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
