"""The end of a search: the front chosen on val, tested once, tagged and described in MLflow.

A search in which no trial completed raises :class:`NoTrialCompleted` with a summary of the
reasons (the CLI exits 1); a baseline that breaks a budget is recorded as such and never
shown as a front member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autocompress.search.outcomes import NoTrialCompleted, reasons_summary
from autocompress.search.results import is_lost
from autocompress.search.trial import SearchContext
from autocompress.tracking import (
    SearchTracker,
    front_of,
    load_search,
    normalized_hypervolume,
    objectives,
)
from autocompress.tracking.front_log import log_front, search_note
from autocompress.tracking.tracker import WARNING

__all__ = ["NoTrialCompleted", "SearchSummary", "baseline_breaks", "finish_search"]


@dataclass(frozen=True)
class SearchSummary:
    """What a finished search reports back."""

    experiment: str
    parent_run_id: str
    baseline: dict[str, float]
    trials: int
    statuses: dict[str, int]
    front: list[dict[str, Any]]
    hypervolume: float
    wall_s: float
    infeasible_s: float
    setup_s: float = 0.0
    tune_s: float = 0.0
    metric: str = "accuracy"  # the quality metric's key (val); test_<metric> is in the rows
    mode: str = "max"
    baseline_breaks: tuple[str, ...] = ()  # budgets the uncompressed reference breaks
    warnings: tuple[str, ...] = field(default_factory=tuple)


def baseline_breaks(budgets, baseline: dict[str, float]) -> tuple[str, ...]:
    """The budgets (as text) that the baseline's measured metrics break."""
    return tuple(str(b) for b in budgets if b.key in baseline
                 and b.violation(baseline[b.key]) > 0)


def finish_search(ctx: SearchContext, tracker: SearchTracker, baseline: dict[str, float],
                  wall_s: float, setup_s: float, tune_s: float) -> SearchSummary:
    """Choose the front (val), test it once, tag and describe the search; return its summary.

    Raises:
        NoTrialCompleted: no trial completed (the parent run is closed as failed with the
            summary of the reasons first).
    """
    from autocompress.hardware.lut.predictor import error_summary
    from autocompress.search.holdout import evaluate_holdout

    recipe, key, mode = ctx.recipe, ctx.recipe.metric.key, ctx.recipe.metric.mode
    record = load_search(tracker.uri, recipe.experiment, tracker.parent_id)
    statuses = _statuses(record.trials)
    if not statuses.get("completed"):
        summary = reasons_summary(record.trials)
        tracker.fail_search(f"no trial completed: {summary}")
        raise NoTrialCompleted(recipe.experiment, summary, statuses)
    front = front_of(record.trials, objectives(key, mode))  # chosen on val only
    front_ids = {t.run_id for t in front}
    others = [t.run_id for t in record.trials if t.run_id not in front_ids]
    hv = normalized_hypervolume(front, baseline, metric=key, mode=mode)
    tested = evaluate_holdout(ctx, tracker, sorted(front_ids))  # after choosing: test, once
    if "baseline" in tested:
        baseline = {**baseline, f"test_{key}": tested["baseline"]}
    broken = baseline_breaks(ctx.budgets, baseline)
    infeasible_s = sum(t.metrics.get("time_profile_s", 0.0) for t in record.trials
                       if t.status == "infeasible")
    predicted = [t for t in record.trials if "latency_prediction_error" in t.metrics]
    lost = sum(is_lost(t.reason) for t in record.trials)  # not counted: replaced on resume
    tracker.finish_search(sorted(front_ids), others, {
        "hypervolume": hv, "pareto_size": len(front), "trials": len(record.trials) - lost,
        "trials_lost": lost,
        "wall_s": wall_s, "setup_s": setup_s, "tune_s": tune_s,
        "infeasible_time_s": infeasible_s, "baseline_feasible": float(not broken),
        "rejected_by_prediction": float(sum("predicted_only" in t.metrics
                                            for t in record.trials)),
        **error_summary([t.metrics["latency_predicted_ms"] for t in predicted],
                        [t.metrics["latency_ms"] for t in predicted]),
    })
    rows = _front_rows(front, tested, key, mode)
    warning = _warning(tracker)
    _describe(tracker, record, rows, front_ids, baseline, broken, statuses, hv, ctx, warning)
    return SearchSummary(recipe.experiment, tracker.parent_id, baseline, len(record.trials) - lost,
                         statuses, rows, hv, wall_s, infeasible_s, setup_s, tune_s, key, mode,
                         broken, (warning,) if warning else ())


def _statuses(trials) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.status] = out.get(t.status, 0) + 1
    return out


def _front_rows(front, tested: dict[str, float], key: str, mode: str) -> list[dict[str, Any]]:
    from autocompress.tracking.naming import plan_summary

    sign = -1.0 if mode == "max" else 1.0
    return [{"trial": t.trial_id, "run_id": t.run_id, "name": t.tags.get("mlflow.runName", ""),
             "plan": plan_summary(t.params),
             **{k: t.metrics[k] for k in objectives(key, mode)},
             **({f"test_{key}": tested[t.run_id]} if t.run_id in tested else {})}
            for t in sorted(front, key=lambda t: sign * t.metrics[key])]


def _warning(tracker: SearchTracker) -> str:
    run = tracker.client.get_run(tracker.parent_id)
    return run.data.tags.get(WARNING, "")


def _describe(tracker, record, rows, front_ids, baseline, broken, statuses, hv, ctx,
              warning: str) -> None:
    """front.json / front.md / plots and the description on the parent run."""
    from autocompress.viz.front import front_rows

    every = front_rows(record)
    members = {t.trial_id for t in record.trials if t.run_id in front_ids}
    for row in every:
        row["pareto"] = row["trial"] in members  # tags were set after the record was read
    note = search_note(ctx.recipe.experiment, statuses, len(rows), hv, ctx.budgets, broken,
                       warning)
    log_front(tracker, rows, every, ctx.budgets, baseline, ctx.recipe.metric.key, note)
    if broken:
        tracker.tag_search({"autocompress.baseline_breaks": ", ".join(broken)})
