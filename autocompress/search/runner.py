"""run_search: the whole search, from recipe to a tagged Pareto front in MLflow."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from autocompress.errors import ConfigError
from autocompress.hardware.lut.predictor import load_table
from autocompress.methods import compressible_layers
from autocompress.recipe import Recipe
from autocompress.search.baseline import baseline_metrics, load_or_train
from autocompress.search.checks import check_recipe
from autocompress.search.finish import NoTrialCompleted, SearchSummary, finish_search
from autocompress.search.student import check_student, initial_student
from autocompress.search.trial import SearchContext, example_inputs, load_splits
from autocompress.space import SearchSpace, bind
from autocompress.tracking import SearchTracker
from autocompress.tracking.store import is_sqlite
from autocompress.tracking.tracker import TUNE_PATH

__all__ = ["NoTrialCompleted", "SearchInterrupted", "SearchSummary", "apply_overrides",
           "prepare", "run_search"]


def prepare(recipe: Recipe, progress: Any = None) -> tuple[SearchContext, dict[str, float],
                                                             SearchSpace]:
    """Load data and model, train or load the baseline, bind the space, measure the baseline.

    The space binds to the layers of ``model.student`` when the recipe has one, else of the
    trained model; the baseline is always the trained model.
    """
    if recipe.hardware.target == "analytic":
        raise ConfigError("hardware.target: 'analytic' does not time, and the search minimises "
                          "measured latency; use cpu-torch, cpu-onnxruntime or cuda")
    space_path = recipe.resolve(recipe.space)
    space = SearchSpace.from_yaml(space_path)
    storage = Path(recipe.search.storage).resolve()
    teacher = load_or_train(recipe, storage, _epoch_lines(progress, recipe))
    student = initial_student(recipe)  # model.student: plans apply to it instead of the teacher
    base = teacher if student is None else student
    splits = load_splits(recipe)  # timing and tracing inputs come from val, never test
    check_student(recipe.training, base, teacher, example_inputs(base, splits, 2),
                  different=student is not None)
    layers = compressible_layers(base, example_inputs(base, splits, 1))
    bound = bind(space, layers)
    outputs = frozenset(layer.name for layer in layers if layer.is_output)
    table = load_table(recipe.hardware, base,
                       example_inputs(base, splits, recipe.hardware.batch_size), storage)
    baseline = baseline_metrics(teacher, recipe)
    ctx = SearchContext(recipe, teacher.state_dict(), bound, outputs, recipe.parsed_budgets(),
                        table, baseline, None if student is None else student.state_dict())
    return ctx, baseline, space


def run_search(recipe: Recipe, ray_address: str | None = None, verbose: int = 1,
               resume: bool = False, progress: Any = None) -> SearchSummary:
    """Run the recipe's search on Ray Tune and record it in MLflow.

    Args:
        recipe: The validated recipe (CLI overrides already applied).
        ray_address: A running cluster to attach to; None starts a local Ray.
        verbose: Ray Tune's verbosity (0 silent, 1 status table).
        resume: Continue the experiment's latest unfinished search from its Tune storage
            instead of starting a new one: finished trials are kept, interrupted ones are
            run again into the MLflow run they already have, and the rest are sampled.
        progress: A :class:`~autocompress.search.progress.SearchProgress` to show phases and
            trials on (None: nothing printed but Tune's own output).
    """
    started = time.perf_counter()
    check_recipe(recipe)  # fail fast: before Ray is imported and the MLflow store opens
    import ray

    from autocompress.search.network import warn_public

    warn_public(recipe.tracking.uri, "MLflow")
    tracker = SearchTracker(recipe.tracking.uri, recipe.experiment)  # creates the store first
    resumed = tracker.find_unfinished() if resume else None  # fail fast: nothing to resume
    owns_ray = not ray.is_initialized()
    if owns_ray:  # before the baseline: a remote target measures it through Ray
        _init_ray(ray_address)
    try:
        return _search(recipe, tracker, started, verbose, resumed, progress)
    finally:
        if owns_ray:
            ray.shutdown()


def _search(recipe: Recipe, tracker: SearchTracker, started: float, verbose: int,
            resumed: tuple[str, str, dict[str, float]] | None,
            progress: Any = None) -> SearchSummary:
    check_tracking_for_cluster(tracker.uri)
    _phase(progress, f"preparing {recipe.name}: data, baseline model (trained once, then "
                     f"cached), search space; tracking {tracker.uri}")
    ctx, baseline, space = prepare(recipe, progress)
    tracker.budgets = ctx.budgets  # the tracking callback warns early when none can be met
    tracker.model_example = _model_example(ctx)
    _phase(progress, "baseline measured: " + _costs(baseline, recipe.metric.key))
    if resumed:
        parent_id, tune_path, baseline = resumed
        ctx = dataclasses.replace(ctx, baseline=baseline)  # anchor latencies as before
        tracker.resume_search(parent_id)
    else:
        tracker.start_search(
            recipe.name,
            _recipe_params(recipe),
            {"recipe.yaml": yaml.safe_dump(recipe.to_dict(), sort_keys=False),
             "space.yaml": yaml.safe_dump(space.raw, sort_keys=False)},
            baseline,
        )
        tune_path = None
    setup_s = time.perf_counter() - started
    _phase(progress, f"search {'resumed' if resumed else 'started'}: {recipe.search.trials} "
                     f"trials, {recipe.search.concurrency} at once, sampler "
                     f"{recipe.search.sampler}")
    try:
        _run_tuner(recipe, ctx, tracker, verbose, tune_path, progress)
    except SearchInterrupted:
        raise
    except BaseException as exc:
        tracker.fail_search(f"{type(exc).__name__}: {exc}")
        raise
    tune_s = time.perf_counter() - started - setup_s
    summary = _finish(ctx, tracker, baseline, time.perf_counter() - started, setup_s, tune_s)
    _phase(progress, f"done: {summary.trials} trials in {summary.wall_s:.0f}s, front of "
                     f"{len(summary.front)}, hypervolume {summary.hypervolume:.4f}")
    return summary


def _model_example(ctx: SearchContext) -> Any:
    """One validation input as numpy (the logged MLflow Models' signature and example)."""
    from autocompress.search.trial import build_teacher
    from autocompress.tracking.pyfunc import example_array

    teacher = build_teacher(ctx.recipe, ctx.teacher_state)
    return example_array(example_inputs(teacher, load_splits(ctx.recipe), 1))


def _phase(progress: Any, text: str) -> None:
    if progress is not None:
        progress.phase(text)


def _epoch_lines(progress: Any, recipe: Recipe) -> tuple[Any, ...]:
    """Per-epoch lines of the baseline's training (when it trains), for the progress view."""
    if progress is None:
        return ()
    from autocompress.search.progress import epoch_callback

    return (epoch_callback(progress, "baseline training", recipe.model.pretrain.epochs),)


def _costs(metrics: dict[str, float], key: str) -> str:
    shown = {key: "", "latency_ms": " ms", "size_kb": " KB"}
    return ", ".join(f"{k} {metrics[k]:.4g}{unit}" for k, unit in shown.items() if k in metrics)


def _run_tuner(recipe, ctx, tracker, verbose, restore: str | None, progress=None) -> None:
    from autocompress.search.callbacks import interrupted, reconcile, tune_trials
    from autocompress.search.tuner import (
        build_tuner,
        experiment_path,
        plan_params,
        restore_tuner,
        settle_study,
    )

    path = restore or experiment_path(recipe, tracker)
    if restore:
        tuner = restore_tuner(restore, ctx)
        settle_study(path, tracker, tune_trials(tuner.get_results()))  # Tune's saved state
    else:
        tracker.tag_search({TUNE_PATH: path})
        tuner = build_tuner(recipe, ctx, tracker, verbose=verbose, progress=progress)
    trials = tune_trials(tuner.fit())
    counted = settle_study(path, tracker, trials)
    if interrupted(trials, recipe.search.trials, counted):
        tracker.interrupt_search()
        print(f"autocompress: search interrupted; its state is saved. Continue it with: "
              f"autocompress search RECIPE --resume (experiment {recipe.experiment!r})",
              file=sys.stderr)
        raise SearchInterrupted(recipe.experiment)
    reconcile(tracker, trials, plan_params)


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped before its planned trials finished; ``resume=True`` continues it."""


def check_tracking_for_cluster(uri: str) -> None:
    """Refuse an embedded sqlite store when Ray spans several nodes.

    Nodes of a cluster do not share a local file, and users read the search from elsewhere:
    a multi-node search records into an MLflow tracking server (``cluster/mlflow-server.sh``).
    """
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    if is_sqlite(uri) and len(alive) > 1:
        raise ConfigError(
            f"tracking.uri: {uri!r} is a local sqlite file, but the Ray cluster has "
            f"{len(alive)} nodes; run an MLflow tracking server (cluster/mlflow-server.sh) and "
            "pass --tracking-uri http://HOST:PORT")


def _init_ray(address: str | None) -> None:
    """Attach to ``address`` (warned about when public), or start a loopback-only local Ray.

    The local Ray runs without a dashboard and its servers listen on 127.0.0.1 only
    (search/network.py); an address without authentication on another host is warned about.
    """
    import ray

    from autocompress.search.network import loopback_only, warn_public

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        warn_public(address, "Ray")
        ray.init(address=address, log_to_driver=False)
    else:
        with loopback_only():
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def _finish(ctx: SearchContext, tracker: SearchTracker, baseline, wall_s: float,
            setup_s: float, tune_s: float) -> SearchSummary:
    return finish_search(ctx, tracker, baseline, wall_s, setup_s, tune_s)


def _recipe_params(recipe: Recipe) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        else:
            flat[prefix] = node

    walk(recipe.to_dict(), "")
    return flat


def apply_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """The recipe with CLI overrides (trials, concurrency, budgets, tracking, ...) applied."""
    search = {k: v for k in ("trials", "concurrency", "sampler", "seed", "storage")
              if (v := overrides.get(k)) is not None}
    tracking = {k: v for k in ("uri", "experiment") if (v := overrides.get(k)) is not None}
    budgets = tuple(overrides.get("budgets") or ())
    try:
        return dataclasses.replace(
            recipe,
            search=dataclasses.replace(recipe.search, **search),
            tracking=dataclasses.replace(recipe.tracking, **tracking),
            budgets=_merge_budgets(recipe.budgets, budgets, recipe.quality),
        )
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def _merge_budgets(base: tuple[str, ...], extra: tuple[str, ...],
                   quality: dict[str, str]) -> tuple[str, ...]:
    from autocompress.hardware import parse_budgets

    return tuple(str(b) for b in parse_budgets(base + extra, quality))
