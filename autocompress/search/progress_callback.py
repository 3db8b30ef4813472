"""The Ray Tune callback (driver side) that feeds a search's progress view from trial results.

Each trial's last result is read as a :class:`~autocompress.search.results.TrialResult`, so
the view counts statuses exactly as the tracker records them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from autocompress.search.progress import SearchProgress
from autocompress.search.results import TrialResult, TrialStatus

__all__ = ["ProgressCallback"]


class ProgressCallback(Callback):
    """Ray Tune callback (driver side) that feeds a :class:`SearchProgress`.

    Args:
        progress: The view to feed.
        plan_summary: A trial's config -> a short plan text (``prune 50% · 8-bit``).
    """

    def __init__(self, progress: SearchProgress, plan_summary: Callable[[dict], str]):
        self.progress = progress
        self.plan_summary = plan_summary
        self.names: dict[str, str] = {}

    def on_trial_start(self, iteration, trials, trial, **info):  # noqa: D102
        self._name(trial.trial_id)
        self.progress.trial_started(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: D102
        result = TrialResult.from_report(trial.last_result).outcome()
        self._finished(trial, result)

    def on_trial_error(self, iteration, trials, trial, **info):  # noqa: D102
        reason = str(getattr(trial, "error_msg", "") or "").strip().splitlines()
        self._finished(trial, TrialResult(TrialStatus.FAILED,
                                          reason=reason[-1] if reason else "worker error"))

    def on_experiment_end(self, trials, **info):  # noqa: D102
        self.progress.close()

    def _finished(self, trial: Any, result: TrialResult) -> None:
        try:
            plan = self.plan_summary(trial.config)
        except Exception:  # noqa: BLE001  (display only)
            plan = ""
        self.progress.trial_finished(trial.trial_id, self._name(trial.trial_id), result, plan)

    def _name(self, trial_id: str) -> str:
        """``t003``: the trial's number in start order (as its MLflow run is named)."""
        return self.names.setdefault(trial_id, f"t{len(self.names) + 1:03d}")
