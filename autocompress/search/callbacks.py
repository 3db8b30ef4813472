"""The Ray Tune callback that records every trial through the SearchTracker (driver side)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

from ray.tune import Callback

from autocompress.tracking import SearchTracker
from autocompress.tracking.tracker import RETRIES

# Tune's own bookkeeping in every result: not metrics of the candidate
TUNE_KEYS = frozenset({
    "timestamp", "training_iteration", "time_since_restore", "iterations_since_restore",
    "pid", "done", "time_total_s_tune", "checkpoint_dir_name", "date", "hostname", "node_ip",
    "should_checkpoint", "final", "trial_id", "experiment_tag",
})
NODE_PREFIX = "node"  # result keys "node" and "node/TARGET" hold Ray node ids -> MLflow tags


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric results worth logging: the candidate's metrics and constraints."""
    metrics = {k: float(v) for k, v in result.items()
               if k not in TUNE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v)}
    for i, value in enumerate(result.get("constraints") or ()):
        metrics[f"constraint_{i}"] = float(value)
    return metrics


def result_tags(result: dict[str, Any]) -> dict[str, str]:
    """Where the trial ran and where it was measured, as ``autocompress.node...`` tags."""
    return {f"autocompress.{k}": str(v) for k, v in result.items()
            if (k == NODE_PREFIX or k.startswith(NODE_PREFIX + "/")) and v}


class TrackingCallback(Callback):
    """Opens a child run when a trial starts, logs its results, closes it with its status.

    Runs in the driver, so a single process writes the store (sqlite-safe), and trials that a
    scheduler stops or that crash are recorded too. On a resumed search the tracker re-learns
    the existing child runs first, so a restarted trial logs into the run it already has.
    """

    def __init__(self, tracker: SearchTracker, plan_params):
        self.tracker = tracker
        self.plan_params = plan_params  # config -> flat MLflow params
        self.retries: dict[str, int] = {}

    def setup(self, **info):  # noqa: D102
        self.tracker.reload()

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        self.tracker.log_result(trial.trial_id, result_metrics(result),
                                int(result.get("training_iteration", 0)))
        tags = result_tags(result)
        if tags:
            self.tracker.set_tags(trial.trial_id, tags)

    def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: D102
        """A trial whose worker or node died is retried: count it on its run."""
        self.retries[trial.trial_id] = self.retries.get(trial.trial_id, 0) + 1
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        self.tracker.set_tags(trial.trial_id, {RETRIES: self.retries[trial.trial_id]})

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: D102
        finish(self.tracker, trial.trial_id, trial.last_result or {}, _artifact(trial))

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        self.tracker.finish_trial(trial.trial_id, "failed", _error_text(trial))


def finish(tracker: SearchTracker, trial_id: str, result: dict[str, Any],
           artifact: str | None) -> None:
    """Close a trial's run from its last result (pruned when it never reported a final one)."""
    if not result.get("final"):
        tracker.finish_trial(trial_id, "pruned", "stopped early by the scheduler")
        return
    status = result.get("status", "completed")
    if status == "completed" and not result.get("feasible"):
        status = "infeasible"  # e.g. an accuracy budget missed after fine-tuning
    tracker.finish_trial(trial_id, status, result.get("reason", ""), artifact=artifact)


def tune_trials(results: Any) -> list[Any]:
    """The Trial objects behind Tune's ResultGrid (statuses included; Ray is pinned)."""
    return list(results._experiment_analysis.trials)


def interrupted(trials: Iterable[Any], planned: int) -> bool:
    """True when the search stopped before every planned trial finished (e.g. Ctrl-C)."""
    trials = list(trials)
    return len(trials) < planned or any(t.status not in ("TERMINATED", "ERROR") for t in trials)


def reconcile(tracker: SearchTracker, trials: Iterable[Any]) -> int:
    """Close runs of trials Tune finished while no callback recorded it (driver killed).

    Returns how many runs were closed here.
    """
    open_runs = tracker.open_trials()
    closed = 0
    for trial in trials:
        if trial.trial_id not in open_runs or trial.status not in ("TERMINATED", "ERROR"):
            continue
        if trial.status == "ERROR":
            tracker.finish_trial(trial.trial_id, "failed", _error_text(trial))
        else:
            finish(tracker, trial.trial_id, trial.last_result or {}, _artifact(trial))
        closed += 1
    return closed


def _artifact(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    path = os.path.join(checkpoint.path, "model.acz")
    return path if os.path.exists(path) else None


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path) as f:
            lines = [line for line in f.read().strip().splitlines() if line.strip()]
        return lines[-1] if lines else "unknown error"
    return "unknown error"
