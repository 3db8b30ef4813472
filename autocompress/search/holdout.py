"""The test split, evaluated once at the end of a search: the baseline and every Pareto member.

The search chooses on the validation split only (ASHA, budgets, the front, ``pick``). After the
front is fixed, each member's artifact is read back from MLflow, rebuilt on the search's base
architecture (passed as ``base=``: no code named by the file is imported) and scored on the test
split; the value is logged on its run as ``test_<metric>`` and the baseline's on the search run
as ``baseline_test_<metric>``. Nothing else is ever evaluated on test.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from torch import nn

from autocompress.recipe import Recipe
from autocompress.search.trial import SearchContext, build_teacher, deployed_quality, load_splits
from autocompress.tracking import SearchTracker
from autocompress.tracking.config import ARTIFACT_NAME

__all__ = ["evaluate_holdout"]


def evaluate_holdout(ctx: SearchContext, tracker: SearchTracker,
                     front: Iterable[str]) -> dict[str, float]:
    """Score the baseline and the front members (run ids) on test and log ``test_<metric>``.

    Returns:
        ``{"baseline": value, run_id: value, ...}``; empty when the data have no test split.
    """
    recipe = ctx.recipe
    splits = load_splits(recipe)
    if splits.test is None:
        return {}
    key = f"test_{recipe.metric.key}"
    teacher = build_teacher(recipe, ctx.teacher_state)
    # each in the form its latency was timed in (the int8 graph where int8 was timed)
    values = {"baseline": deployed_quality(teacher, splits, recipe, ctx.baseline or {}, "test")}
    tracker.log_metrics(tracker.parent_id, {f"baseline_{key}": values["baseline"]})
    base = _base_architecture(recipe, ctx, teacher)
    for run_id in front:
        measured = tracker.client.get_run(run_id).data.metrics
        values[run_id] = deployed_quality(_member(tracker.uri, run_id, base), splits, recipe,
                                          measured, "test")
        tracker.log_metrics(run_id, {key: values[run_id]})
    return values


def _base_architecture(recipe: Recipe, ctx: SearchContext, teacher: nn.Module) -> nn.Module:
    """What the candidates were compressed from: the student when there is one, else the model."""
    if ctx.student_state is None:
        return teacher
    from autocompress.search.student import build_student

    return build_student(recipe, ctx.student_state)


def _member(uri: str, run_id: str, base: nn.Module) -> nn.Module:
    """A front member's compressed model, read from its MLflow artifact."""
    from autocompress.export import load_compressed
    from autocompress.tracking.query import download_artifact

    with tempfile.TemporaryDirectory() as tmp:
        path = download_artifact(uri, run_id, Path(tmp) / ARTIFACT_NAME)
        return load_compressed(path, base=base)
