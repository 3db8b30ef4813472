"""The Ray Tune callback that records every trial through the SearchTracker (driver side)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from ray.tune import Callback

from autocompress.search.failures import error_file_text
from autocompress.search.outcomes import infeasible_warning
from autocompress.search.results import LOST, TrialResult, TrialStatus, is_lost
from autocompress.tracking import SearchTracker
from autocompress.tracking.config import ARTIFACT_NAME
from autocompress.tracking.tracker import RETRIES, WARNING


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numeric results worth logging: the candidate's metrics and budget violations."""
    return TrialResult.from_report(result).loggable()


def result_tags(result: dict[str, Any]) -> dict[str, str]:
    """Where the trial ran and where it was measured, as ``autocompress.node...`` tags."""
    return {f"autocompress.{k}": v for k, v in TrialResult.from_report(result).nodes.items()
            if v}


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
        self.ended: list[TrialResult] = []  # this session's finished trials, in order
        self.warned = False

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
        self._ended(trial.trial_id, outcome(trial))

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        self.tracker.start_trial(trial.trial_id, self.plan_params(trial.config))
        self._ended(trial.trial_id, error_result(trial))

    def _ended(self, trial_id: str, result: TrialResult) -> None:
        finish(self.tracker, trial_id, result)
        self.ended.append(result.outcome())
        if not self.warned:
            self._warn_unmeetable()

    def _warn_unmeetable(self) -> None:
        """Say early (stderr and a parent-run tag) when the first trials are all infeasible."""
        text = infeasible_warning(getattr(self.tracker, "budgets", ()), self.ended)
        if text:
            self.warned = True
            print(f"autocompress: warning: {text}", file=sys.stderr)
            self.tracker.tag_search({WARNING: text})


def outcome(trial: Any) -> TrialResult:
    """How a trial Tune finished ended: its last result judged (pruned when not final)."""
    return TrialResult.from_report(trial.last_result, _artifact(trial)).outcome()


def error_result(trial: Any) -> TrialResult:
    """A trial whose worker raised (or died): the real exception from Ray's error file."""
    reason, trace = error_file_text(getattr(trial, "error_file", None))
    if not reason:  # no file: Tune's own error string, if it kept one
        reason = str(getattr(trial, "error_msg", "") or "") or "unknown error (no error file)"
        reason = reason.strip().splitlines()[-1]
    return TrialResult(TrialStatus.FAILED, reason=reason, traceback=trace)


def finish(tracker: SearchTracker, trial_id: str, result: TrialResult) -> None:
    """Close a trial's run from its outcome (see :meth:`TrialResult.outcome`)."""
    tracker.finish_trial(trial_id, result.outcome())


def tune_trials(results: Any) -> list[Any]:
    """The Trial objects behind Tune's ResultGrid (statuses included; Ray is pinned)."""
    return list(results._experiment_analysis.trials)


def interrupted(trials: Iterable[Any], planned: int, counted: int | None = None) -> bool:
    """True when the search stopped before every planned trial finished (e.g. Ctrl-C).

    Args:
        trials: Tune's trials.
        planned: ``search.trials``.
        counted: Trials the durable study counts toward the plan (None: count Tune's); it
            also holds trials a killed driver finished but Tune's saved state missed.
    """
    trials = list(trials)
    done = len(trials) if counted is None else counted
    return done < planned or any(t.status not in ("TERMINATED", "ERROR") for t in trials)


def close_lost(tracker: SearchTracker, known: set[str]) -> list[str]:
    """Close as failed (reason ``LOST``) the open runs of trials Tune does not know; their ids.

    A driver killed right after starting a trial leaves its run open, but Tune's saved state
    may not hold the trial, so a resumed search can never continue or close it.
    """
    tracker.reload()
    lost = sorted(tracker.open_trials() - known)
    for trial_id in lost:
        finish(tracker, trial_id, TrialResult(TrialStatus.FAILED, reason=LOST))
    return lost


def recorded(tracker: SearchTracker) -> set[str]:
    """Trial ids whose MLflow runs count toward the plan (all but the lost ones)."""
    return {trial for trial, reason in tracker.trial_reasons().items() if not is_lost(reason)}


def reconcile(tracker: SearchTracker, trials: Iterable[Any], plan_params) -> int:
    """Record the trials Tune finished while no callback did, because the driver was killed.

    Their runs (opened when the trial is missing one, as for a trial whose start no callback
    saw) are closed from their outcome; runs of trials Tune never knew, as lost
    (``close_lost``). Returns how many runs were closed here.
    """
    tracker.reload()
    open_runs, runs = tracker.open_trials(), set(tracker.trial_reasons())
    trials = list(trials)
    closed = 0
    for trial in trials:
        if trial.status not in ("TERMINATED", "ERROR"):
            continue
        if trial.trial_id in runs and trial.trial_id not in open_runs:
            continue
        tracker.start_trial(trial.trial_id, plan_params(trial.config))
        finish(tracker, trial.trial_id,
               error_result(trial) if trial.status == "ERROR" else outcome(trial))
        closed += 1
    return closed + len(close_lost(tracker, {t.trial_id for t in trials}))


def _artifact(trial: Any) -> str | None:
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    path = os.path.join(checkpoint.path, ARTIFACT_NAME)
    return path if os.path.exists(path) else None
