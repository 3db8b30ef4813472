"""Build the Ray Tune Tuner: OptunaSearch (multi-objective) + ASHA + the tracking callback.

Metric and mode are given to the searcher only. Putting them in ``TuneConfig`` as well makes Tune
call ``set_search_properties(metric, mode)`` and silently turns the study single-objective.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Checkpoint
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from autocompress.recipe import Recipe
from autocompress.search.callbacks import TrackingCallback, close_lost, recorded
from autocompress.search.progress import SearchProgress
from autocompress.search.progress_callback import ProgressCallback
from autocompress.search.searcher import (
    ConstrainedOptunaSearch,
    counted,
    make_sampler,
    mark_lost,
)
from autocompress.search.trial import SearchContext, run_trial
from autocompress.tracking import SearchTracker, objectives


def make_searcher(recipe: Recipe, ctx: SearchContext,
                  study_dir: str | None = None) -> ConstrainedOptunaSearch:
    """Multi-objective Optuna search over the bound space, constraints named after budgets.

    The objectives are the recipe's quality metric (in its direction), latency and size. With
    ``study_dir`` (a local folder) the study lives in ``STUDY_FILE`` there, an Optuna RDB
    storage: ``optuna-dashboard`` and Optuna's plots read it afterwards, and a resumed search
    keeps its sampler's history.
    """
    goals = objectives(recipe.metric.key, recipe.metric.mode)
    storage, name = study_storage(study_dir)
    return ConstrainedOptunaSearch(
        space=ctx.space.sample,
        metric=list(goals),
        mode=list(goals.values()),
        sampler=make_sampler(recipe.search.sampler, recipe.search.seed, recipe.search.trials),
        constraint_names=tuple(str(b) for b in ctx.budgets),
        planned=recipe.search.trials,
        storage=storage,
        study_name=name,
    )


STUDY_FILE = "optuna.db"  # the Optuna study, in the Tune experiment's folder


def study_storage(study_dir: str | None) -> tuple[Any, str | None]:
    """An Optuna RDB storage in ``study_dir`` and the study's name (the folder's name).

    None (in-memory) for no folder or a remote one (``s3://...``): sqlite needs a local file.
    """
    if not study_dir or "://" in study_dir:
        return None, None
    import optuna

    folder = Path(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(f"sqlite:///{folder / STUDY_FILE}"), folder.name


def load_study(study_dir: str | None) -> Any:
    """The search's durable Optuna study, or None (none, or an in-memory one)."""
    if not study_dir or "://" in study_dir or not (Path(study_dir) / STUDY_FILE).exists():
        return None
    import optuna

    storage, name = study_storage(study_dir)
    return optuna.load_study(study_name=name, storage=storage)


ENDED = ("TERMINATED", "ERROR")  # Tune trial statuses that will not run again


def settle_study(study_dir: str | None, tracker: SearchTracker,
                 trials: Iterable[Any]) -> int | None:
    """Close what a killed driver left behind; the trials that count toward the plan.

    Open MLflow runs of trials Tune does not hold are closed as lost (``close_lost``), and the
    durable study is settled with Tune's trials and MLflow's runs (``mark_lost``), so the
    searcher, MLflow and the final count agree on which trials there are.

    Returns:
        Trials the study counts toward the plan (None without a durable study).
    """
    trials = list(trials)
    known = {t.trial_id for t in trials}
    lost = close_lost(tracker, known)
    study = load_study(study_dir)
    if study is None:
        return None
    live = {t.trial_id for t in trials if t.status not in ENDED}
    mark_lost(study, known | recorded(tracker), live, lost)
    return counted(study)


def make_scheduler(recipe: Recipe):
    """ASHA on the quality metric (val) over epochs; the final report is one step past them."""
    if recipe.search.scheduler == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=recipe.metric.key,
        mode=recipe.metric.mode,
        max_t=recipe.training.epochs + 2,
        grace_period=recipe.search.grace_period,
        reduction_factor=recipe.search.reduction_factor,
    )


def concurrency(recipe: Recipe) -> int:
    """Concurrent trials; with distributed training, no more than the cluster fits workers for.

    Ray Train V2 places a trial's workers in a placement group of its own, so a trial reserves
    its driver only, and drivers must not take the CPUs their workers wait for.
    """
    dist = recipe.training.distributed
    if not dist.enabled:
        return recipe.search.concurrency
    from autocompress.training.distributed import max_concurrent_trials

    return max_concurrent_trials(dist, recipe.search.cpus_per_trial, recipe.search.concurrency)


def make_tune_config(recipe: Recipe, ctx: SearchContext,
                     study_dir: str | None = None) -> tune.TuneConfig:
    """TuneConfig without metric/mode (see module docstring)."""
    searcher = make_searcher(recipe, ctx, study_dir)
    # a durable study counts the trials (see searcher.py); Tune's own counter, which a killed
    # driver may have saved out of step with its trials, is then only a backstop
    samples = recipe.search.trials * (2 if searcher.durable else 1)
    return tune.TuneConfig(
        search_alg=searcher,
        scheduler=make_scheduler(recipe),
        num_samples=samples,
        max_concurrent_trials=concurrency(recipe),
        reuse_actors=True,
        trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
    )


def tune_report(metrics: dict[str, Any], artifact_dir: str | None) -> None:
    """Report to Tune; a directory with the artifact becomes the trial's checkpoint."""
    checkpoint = Checkpoint.from_directory(artifact_dir) if artifact_dir else None
    tune.report(metrics, checkpoint=checkpoint)


def trainable(config: dict[str, Any], ctx: SearchContext) -> None:
    """The Tune function trainable: one trial, limited to its CPU share."""
    import torch

    from autocompress.search.trial import importable

    importable(ctx.recipe.base_dir)  # the recipe's own modules (model, data, metric)
    torch.set_num_threads(max(1, int(ctx.recipe.search.cpus_per_trial)))
    run_trial(config, ctx, tune_report)


def plan_summary_of(config: dict[str, Any]) -> str:
    """A trial's config in words, ``conv1: prune 50% · 8-bit; fc: svd 25%``."""
    from autocompress.methods import CompressionPlan
    from autocompress.viz.plans import plan_text

    return plan_text(CompressionPlan.from_dict(config))


def plan_params(config: dict[str, Any]) -> dict[str, str]:
    """A trial's config as flat MLflow params."""
    from autocompress.methods import CompressionPlan

    return CompressionPlan.from_dict(config).to_params()


def experiment_path(recipe: Recipe, tracker: SearchTracker) -> str:
    """Where Tune keeps this search's state (what ``--resume`` restores from)."""
    storage = recipe.search.storage
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    return f"{storage.rstrip('/')}/{_run_name(recipe, tracker)}"


def _run_name(recipe: Recipe, tracker: SearchTracker) -> str:
    return f"{recipe.experiment}-{tracker.parent_id[:8]}"


TRAINER = "trainer"  # custom resource of the nodes that train candidates


def trial_resources(recipe: Recipe) -> dict[str, float]:
    """A trial's CPUs, and a sliver of ``trainer`` when the cluster has trainer nodes.

    The sliver pins trials to those nodes (never to the head or a profiling node, where they
    would disturb the timings); CPUs still decide how many run at once on each.
    """
    import ray

    resources = {"cpu": recipe.search.cpus_per_trial}
    if ray.is_initialized() and ray.cluster_resources().get(TRAINER, 0) > 0:
        resources[TRAINER] = 0.001
    return resources


def _trainable(ctx: SearchContext):
    dist = ctx.recipe.training.distributed
    if dist.enabled:  # before any trial starts: bad DeepSpeed config, no CUDA for GPU workers
        from autocompress.training.deepspeed import check_accelerators

        check_accelerators(dist, ctx.recipe.data.batch_size)
    # With distributed training too the trial reserves its driver only: Ray Train V2 reserves
    # the workers itself, and worker bundles added here would be held twice and starve them.
    return tune.with_resources(tune.with_parameters(trainable, ctx=ctx),
                               trial_resources(ctx.recipe))


def build_tuner(recipe: Recipe, ctx: SearchContext, tracker: SearchTracker,
                verbose: int = 0, progress: SearchProgress | None = None) -> tune.Tuner:
    """The Tuner of one search, storing its state (and its Optuna study) under ``search.storage``.

    A trial whose worker or node is lost is retried up to ``search.max_failures`` times; a
    candidate that fails by itself reports ``status: failed`` and is not retried.

    Args:
        recipe: The recipe.
        ctx: What every trial needs.
        tracker: The MLflow tracker of this search.
        verbose: Ray Tune's own verbosity (0: silent; 1: its status tables).
        progress: The progress view to feed from trial results (None: no view).
    """
    path = experiment_path(recipe, tracker)
    tune_output(verbose)
    callbacks: list[Any] = [TrackingCallback(tracker, plan_params)]
    if progress is not None:
        callbacks.append(ProgressCallback(progress, plan_summary_of))
    return tune.Tuner(
        _trainable(ctx),
        tune_config=make_tune_config(recipe, ctx, path),
        run_config=tune.RunConfig(
            name=path.rsplit("/", 1)[1],
            storage_path=path.rsplit("/", 1)[0],
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=recipe.search.max_failures),
            verbose=verbose,
        ),
    )


_NEW_OUTPUT = "RAY_AIR_NEW_OUTPUT"
_silenced: list[bool] = []  # whether tune_output set the variable (so it may unset it)


def tune_output(verbose: int) -> None:
    """Silence Ray Tune's own output at ``verbose=0``, restore it otherwise.

    Tune's new output engine prints its experiment box and results path even when silent
    (Ray 2.60); its legacy engine at verbosity 0 prints nothing, so ``verbose=0`` selects it.
    """
    if verbose == 0 and os.environ.get(_NEW_OUTPUT) is None:
        os.environ[_NEW_OUTPUT] = "0"
        _silenced.append(True)
    elif verbose > 0 and _silenced:
        os.environ.pop(_NEW_OUTPUT, None)
        _silenced.clear()


def restore_tuner(path: str, ctx: SearchContext, verbose: int = 0) -> tune.Tuner:
    """The interrupted search's Tuner: finished trials kept, unfinished ones run again.

    Its searcher, scheduler and tracking callback come back from the saved state; errored
    trials (already recorded as failed) are not run again.
    """
    from autocompress.errors import ConfigError

    if not tune.Tuner.can_restore(path):
        raise ConfigError(f"--resume: no restorable Tune state at {path}")
    tune_output(verbose)
    return tune.Tuner.restore(path, trainable=_trainable(ctx), resume_unfinished=True,
                              resume_errored=False, restart_errored=False)
