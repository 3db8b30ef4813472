"""The Ray Tune callback that records every trial through the SearchTracker (driver side)."""

from __future__ import annotations

import os
from typing import Any

from ray.tune import Callback

from autocompress.tracking import SearchTracker

REPORTED = ("accuracy", "latency_ms", "latency_p90_ms", "latency_spread", "size_kb", "size_bytes",
            "params", "macs", "weight_bytes", "feasible", "epochs_trained", "time_profile_s",
            "time_total_s", "time_this_iter_s")


class TrackingCallback(Callback):
    """Opens a child run when a trial starts, logs its results, closes it with its status.

    Runs in the driver, so a single process writes the store (sqlite-safe), and trials that a
    scheduler stops or that crash are recorded too.
    """

    def __init__(self, tracker: SearchTracker, plan_params):
        self.tracker = tracker
        self.plan_params = plan_params  # config -> flat MLflow params

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        metrics = {k: result[k] for k in REPORTED if isinstance(result.get(k), (int, float))}
        for i, value in enumerate(result.get("constraints") or ()):
            metrics[f"constraint_{i}"] = value
        self.tracker.log_result(trial.trial_id, metrics, int(result.get("training_iteration", 0)))

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: D102
        result = trial.last_result or {}
        if not result.get("final"):
            self.tracker.finish_trial(trial.trial_id, "pruned", "stopped early by the scheduler")
            return
        status = result.get("status", "completed")
        if status == "completed" and not result.get("feasible"):
            status = "infeasible"  # e.g. an accuracy budget missed after fine-tuning
        self.tracker.finish_trial(trial.trial_id, status, artifact=_artifact(trial))

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        self.tracker.finish_trial(trial.trial_id, "failed", _error_text(trial))


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
