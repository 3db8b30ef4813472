"""SearchTracker: the one writer of a search's MLflow runs (a parent run and a child per trial)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from autocompress.errors import ConfigError
from autocompress.tracking.naming import trial_run_name
from autocompress.tracking.store import get_or_create_experiment, init_store, normalize_uri

ROLE, TRIAL_ID, STATUS, REASON, PARETO = (
    "autocompress.role", "autocompress.trial_id", "autocompress.status",
    "autocompress.failure_reason", "autocompress.pareto",
)
TUNE_PATH, RETRIES = "autocompress.tune_path", "autocompress.retries"
EPOCH, WARNING = "autocompress.epoch", "autocompress.warning"
PARENT, NOTE = "mlflow.parentRunId", "mlflow.note.content"
ARTIFACT_DIR = "model"
FAILURE_LOG = "failure.txt"
STATUSES = ("completed", "infeasible", "pruned", "failed", "diverged")
# a trial the scheduler stopped ran as planned: FINISHED, told apart by its status tag
_RUN_STATUS = {"completed": "FINISHED", "infeasible": "FINISHED", "pruned": "FINISHED",
               "failed": "FAILED", "diverged": "FAILED"}


def _now_ms() -> int:
    return int(time.time() * 1000)


class SearchTracker:
    """Records one search: parent run with recipe and baseline, one child run per trial."""

    def __init__(self, uri: str, experiment: str):
        self.uri = normalize_uri(uri)
        self.client = init_store(self.uri)
        self.experiment_id = get_or_create_experiment(self.client, experiment, self.uri)
        self.parent_id: str | None = None
        self._runs: dict[str, str] = {}
        self.model_example: Any = None  # one input (numpy) for the models' signature

    def start_search(self, name: str, params: Mapping[str, Any], texts: Mapping[str, str],
                     baseline: Mapping[str, float]) -> str:
        """Open the parent run with the recipe's params, files and the baseline's metrics."""
        run = self.client.create_run(self.experiment_id, run_name=f"search-{name}",
                                     tags={ROLE: "search"})
        self.parent_id = run.info.run_id
        self._log(self.parent_id, params=params,
                  metrics={f"baseline_{k}": v for k, v in baseline.items()})
        for filename, text in texts.items():
            self.client.log_text(self.parent_id, text, filename)
        return self.parent_id

    def resume_search(self, parent_id: str) -> None:
        """Reopen an interrupted search's parent run and re-learn its trials' child runs.

        Trials that already have a run keep it (a restarted trial logs into the same run), so
        a resumed search neither duplicates nor loses runs.
        """
        self.parent_id = parent_id
        self.reload()
        self.client.update_run(parent_id, status="RUNNING")
        self._log(parent_id, tags={STATUS: "running"})

    def find_unfinished(self) -> tuple[str, str, dict[str, float]]:
        """The experiment's latest search that did not complete: run id, Tune path, baseline.

        Raises:
            ConfigError: there is none, or its Tune storage is gone.
        """
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{ROLE}` = 'search'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if not runs or runs[0].data.tags.get(STATUS) == "completed":
            raise ConfigError("--resume: the experiment's latest search completed (or there is "
                              "none); nothing to resume")
        run = runs[0]
        path = run.data.tags.get(TUNE_PATH, "")
        if not path:
            raise ConfigError(f"--resume: search {run.info.run_id} recorded no Tune storage "
                              "path (it stopped before its trials started); start a new one")
        baseline = {k[len("baseline_"):]: v for k, v in run.data.metrics.items()
                    if k.startswith("baseline_")}
        return run.info.run_id, path, baseline

    def tag_search(self, tags: Mapping[str, Any]) -> None:
        """Set tags on the parent run."""
        self._log(self.parent_id, tags=tags)

    def reload(self) -> None:
        """Learn the trial id -> child run mapping of the current search from the store."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{PARENT}` = '{self.parent_id}'", max_results=50000)
        for run in runs:
            trial_id = run.data.tags.get(TRIAL_ID)
            if trial_id:
                self._runs.setdefault(trial_id, run.info.run_id)

    def open_trials(self) -> set[str]:
        """Trial ids of this search whose runs are not closed yet."""
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT}` = '{self.parent_id}' and tags.`{STATUS}` = 'running'",
            max_results=50000)
        return {run.data.tags[TRIAL_ID] for run in runs if TRIAL_ID in run.data.tags}

    def trial_reasons(self) -> dict[str, str]:
        """Trial id -> recorded reason (empty when none) of every child run of this search."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{PARENT}` = '{self.parent_id}'", max_results=50000)
        return {run.data.tags[TRIAL_ID]: run.data.tags.get(REASON, "") for run in runs
                if TRIAL_ID in run.data.tags}

    def set_tags(self, trial_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags on a trial's run (e.g. the nodes it trained and was measured on)."""
        self._log(self._runs[trial_id], tags=tags)

    def start_trial(self, trial_id: str, params: Mapping[str, Any]) -> str:
        """Open (once) the child run of ``trial_id`` with the plan as params."""
        if trial_id not in self._runs:
            name = trial_run_name(len(self._runs) + 1, params)
            run = self.client.create_run(
                self.experiment_id, run_name=name,
                tags={PARENT: self.parent_id, ROLE: "trial", TRIAL_ID: trial_id,
                      STATUS: "running"},
            )
            self._runs[trial_id] = run.info.run_id
            self._log(run.info.run_id, params=params)
        return self._runs[trial_id]

    def log_result(self, trial_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log one intermediate or final result of a trial."""
        self._log(self._runs[trial_id], metrics=metrics, step=step)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Log metrics on any run of this search (e.g. ``test_*`` after the search)."""
        self._log(run_id, metrics=metrics)

    def finish_trial(self, trial_id: str, status: Any, reason: str = "",
                     artifact: str | None = None) -> None:
        """Close the trial's run with its status, reason, failure log and model artifact.

        Args:
            trial_id: The Tune trial.
            status: A status name, or a ``TrialResult`` (search/results.py) whose status,
                reason, traceback, epoch and artifact are recorded.
            reason: Why it failed / was pruned / is infeasible (with a status name).
            artifact: A local ``model.acz`` (with a status name).
        """
        result = status if hasattr(status, "traceback") else None
        if result is not None:
            status, reason, artifact = result.status.value, result.reason, result.artifact
        run_id = self._runs[trial_id]
        if artifact:
            self.client.log_artifact(run_id, artifact, ARTIFACT_DIR)
            if status == "completed":
                self._log_model(run_id, artifact)
        tags = {STATUS: status}
        if reason:
            tags[REASON] = reason[:4000]
        if result is not None and result.epoch:
            tags[EPOCH] = result.epoch
        if status in ("failed", "diverged"):
            trace = result.traceback if result is not None else ""
            self.client.log_text(run_id, f"{status}: {reason}\n\n{trace}".rstrip() + "\n",
                                 FAILURE_LOG)
        self._log(run_id, tags=tags)
        self.client.set_terminated(run_id, _RUN_STATUS[status])

    def _log_model(self, run_id: str, artifact: str) -> None:
        """Log the artifact as an MLflow Model too (pyfunc flavour; see tracking/pyfunc.py)."""
        from autocompress.tracking.pyfunc import log_pyfunc

        log_pyfunc(self.uri, run_id, artifact, self.model_example)

    def finish_search(self, front: list[str], others: list[str],
                      metrics: Mapping[str, float]) -> None:
        """Tag the Pareto front (run ids) and log the search's summary metrics."""
        for run_id in front:
            self.client.set_tag(run_id, PARETO, "true")
        for run_id in others:
            self.client.set_tag(run_id, PARETO, "false")
        self._log(self.parent_id, metrics=metrics, tags={STATUS: "completed"})
        self.client.set_terminated(self.parent_id, "FINISHED")

    def interrupt_search(self) -> None:
        """Close the parent run as interrupted (``--resume`` reopens it)."""
        self._log(self.parent_id, tags={STATUS: "interrupted"})
        self.client.set_terminated(self.parent_id, "KILLED")

    def fail_search(self, reason: str) -> None:
        """Close the parent run as failed."""
        if self.parent_id:
            self._log(self.parent_id, tags={STATUS: "failed", REASON: reason[:4000]})
            self.client.set_terminated(self.parent_id, "FAILED")

    def _log(self, run_id: str, *, params=None, metrics=None, tags=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = _now_ms()
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )
