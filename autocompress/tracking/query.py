"""Reading a search back from MLflow: trials, the Pareto front, and pick()."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError
from autocompress.hardware.budget import Budget, is_feasible
from autocompress.pareto import hypervolume, non_dominated, orient
from autocompress.tracking.config import ARTIFACT_NAME
from autocompress.tracking.store import client, find_experiment
from autocompress.tracking.tracker import (
    ARTIFACT_DIR,
    PARENT,
    PARETO,
    REASON,
    ROLE,
    STATUS,
    TRIAL_ID,
)

OBJECTIVES = {"accuracy": "max", "latency_ms": "min", "size_kb": "min"}


def objectives(metric: str = "accuracy", mode: str = "max") -> dict[str, str]:
    """The search's objectives: its quality metric (in its direction), latency and size."""
    return {metric: mode, "latency_ms": "min", "size_kb": "min"}


def metric_of(params: Mapping[str, str]) -> tuple[str, str]:
    """A search's quality metric and its mode, from its run's params.

    Searches recorded before metrics were configurable score accuracy.
    """
    from autocompress.metrics import MetricConfig

    if "metric.name" not in params:
        return "accuracy", "max"
    direction = params.get("metric.direction")
    config = MetricConfig(params["metric.name"], int(params.get("metric.k", 5)),
                          None if direction in (None, "None", "") else direction)
    return config.key, config.mode


@dataclass(frozen=True)
class TrialRecord:
    """One trial as MLflow holds it."""

    run_id: str
    trial_id: str
    status: str
    metrics: dict[str, float]
    params: dict[str, str]
    pareto: bool = False
    reason: str = ""
    tags: dict[str, str] = field(default_factory=dict)  # autocompress.* (nodes, retries, ...)
    name: str = ""  # the run's name, e.g. "t007 prune 50% · 8-bit"

    @property
    def feasible(self) -> bool:  # noqa: D102
        return self.metrics.get("feasible", 0.0) > 0


@dataclass(frozen=True)
class SearchRecord:
    """A search's parent run and its trials."""

    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    trials: tuple[TrialRecord, ...] = field(default_factory=tuple)

    def baseline(self) -> dict[str, float]:
        """Baseline metrics (prefix removed)."""
        return {k[len("baseline_"):]: v for k, v in self.metrics.items()
                if k.startswith("baseline_")}

    @property
    def metric(self) -> tuple[str, str]:
        """The search's quality metric and its mode (``max`` or ``min``)."""
        return metric_of(self.params)

    def front(self) -> list[TrialRecord]:
        """Trials tagged as Pareto members, best on the search's quality metric first."""
        key, mode = self.metric
        sign = -1.0 if mode == "max" else 1.0
        return sorted((t for t in self.trials if t.pareto),
                      key=lambda t: sign * t.metrics.get(key, -sign * float("inf")))


def front_of(trials: Sequence[TrialRecord],
             objectives: Mapping[str, str] = OBJECTIVES) -> list[TrialRecord]:
    """The non-dominated trials among the completed, feasible ones."""
    candidates = [t for t in trials if t.status == "completed" and t.feasible
                  and all(k in t.metrics for k in objectives)]
    points = [orient(t.metrics, objectives) for t in candidates]
    return [candidates[i] for i in non_dominated(points)]


def normalized_hypervolume(trials: Iterable[TrialRecord], baseline: Mapping[str, float],
                           slack: float = 2.0, metric: str = "accuracy",
                           mode: str = "max") -> float:
    """Hypervolume in baseline units: (-quality, latency/baseline, size/baseline).

    The reference point is (0, ``slack``, ``slack``): a member adds volume unless it is twice
    as slow or as large as the uncompressed model. The slack absorbs latency noise: candidates
    are timed while other trials train, the baseline before the search starts. A free, perfect
    model would score ``slack ** 2`` (with accuracy). A minimised metric (e.g. ``mse``) counts
    in baseline units too, with reference ``slack``: twice the baseline's error adds nothing.
    """
    points = [(_quality_coordinate(t.metrics[metric], baseline.get(metric), mode),
               t.metrics["latency_ms"] / baseline["latency_ms"],
               t.metrics["size_kb"] / baseline["size_kb"]) for t in trials]
    reference = (0.0 if mode == "max" else slack, slack, slack)
    return hypervolume(points, reference) if points else 0.0


def _quality_coordinate(value: float, baseline: float | None, mode: str) -> float:
    if mode == "max":
        return -value
    return value / baseline if baseline else value


def load_search(uri: str, experiment: str, run_id: str | None = None) -> SearchRecord:
    """The latest search of ``experiment`` (or the one with ``run_id``) with all its trials."""
    c = client(uri)
    exp_id = find_experiment(c, experiment)
    if run_id is None:
        runs = c.search_runs([exp_id], f"tags.`{ROLE}` = 'search'",
                             order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise ConfigError(f"experiment {experiment!r} holds no search run")
        parent = runs[0]
    else:
        parent = _search_run(c, exp_id, experiment, run_id)
    children = c.search_runs([exp_id], f"tags.`{PARENT}` = '{parent.info.run_id}'",
                             max_results=10000)
    trials = tuple(sorted((_trial(r) for r in children), key=lambda t: t.trial_id))
    return SearchRecord(parent.info.run_id, dict(parent.data.metrics),
                        dict(parent.data.params), trials)


def _search_run(c: Any, exp_id: str, experiment: str, run_id: str) -> Any:
    """The search run ``run_id`` of the experiment, or a ConfigError (``--run-id``)."""
    try:
        run = c.get_run(run_id)
    except Exception:  # noqa: BLE001  (MLflow says "not found" with its own exception)
        run = None
    if run is None or run.info.experiment_id != exp_id or run.data.tags.get(ROLE) != "search":
        raise ConfigError(f"--run-id {run_id!r}: no search run of that id in experiment "
                          f"{experiment!r}")
    return run


def _trial(run: Any) -> TrialRecord:
    tags = run.data.tags
    return TrialRecord(
        run_id=run.info.run_id,
        trial_id=tags.get(TRIAL_ID, run.info.run_id),
        status=tags.get(STATUS, "unknown"),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        pareto=tags.get(PARETO) == "true",
        reason=tags.get(REASON, ""),
        tags={k: v for k, v in tags.items() if k.startswith("autocompress.")},
        name=run.info.run_name or "",
    )


def pick(uri: str, experiment: str, budgets: Sequence[Budget], maximize: str | None = None,
         output: str | Path | None = None, run_id: str | None = None,
         minimize: str | None = None) -> TrialRecord:
    """Choose the Pareto member that meets ``budgets`` and is best on one metric.

    By default the member best on the search's quality metric (on val), in its direction (the
    smallest ``mse``, ...); ``maximize`` names another metric to maximise, ``minimize`` one
    to minimise (e.g. ``latency_ms``). Reads MLflow only. When ``output`` is given, the
    member's compressed artifact is copied there.

    Raises:
        ConfigError: no member meets the budgets, the metric is unknown, or both
            ``maximize`` and ``minimize`` are given.
    """
    if maximize and minimize:
        raise ConfigError(f"--maximize {maximize} and --minimize {minimize}: give one metric "
                          "to choose by, not both")
    search = load_search(uri, experiment, run_id)
    front = search.front()
    if not front:
        raise ConfigError(f"experiment {experiment!r}: the last search has no Pareto member")
    key, mode = search.metric
    chosen = maximize or minimize or key
    sign = -1.0 if minimize or (chosen == key and not maximize and mode == "min") else 1.0
    if any(chosen not in t.metrics for t in front):
        known = sorted(set.intersection(*(set(t.metrics) for t in front)))
        flag = "--minimize" if minimize else "--maximize"
        raise ConfigError(f"{flag}: unknown metric {chosen!r}; allowed: {', '.join(known)}")
    default_target = search.params.get("hardware.target", "")
    budgets = [b.on_default(default_target) for b in budgets]
    for b in budgets:
        if any(b.key not in t.metrics for t in front):
            measured = sorted(k for k in front[0].metrics if k.split("/")[0] == b.metric)
            raise ConfigError(f"budget {b}: this search did not measure {b.key!r} (its default "
                              f"target is {default_target!r}); measured: {', '.join(measured)}")
    ok = [t for t in front if is_feasible(b.violation(t.metrics[b.key]) for b in budgets)]
    if not ok:
        shown = ", ".join(str(b) for b in budgets)
        raise ConfigError(f"no Pareto member of {experiment!r} meets {shown}; see "
                          f"`autocompress pareto {experiment}`")
    best = max(ok, key=lambda t: sign * t.metrics[chosen])
    if output is not None:
        download_artifact(uri, best.run_id, output)
    return best


def download_artifact(uri: str, run_id: str, output: str | Path) -> Path:
    """Copy a trial's compressed artifact from MLflow to ``output``."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client(uri).download_artifacts(run_id, f"{ARTIFACT_DIR}/{ARTIFACT_NAME}", tmp)
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, output)
    return output
