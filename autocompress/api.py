"""The Python API: search, read the front, pick a model, score an artifact.

Every function imports its machinery (Ray, MLflow, torch) when called, so ``import autocompress``
stays light. The tracking URI is resolved as the CLI resolves it
(:mod:`autocompress.locations`): the ``tracking_uri`` argument, ``$AUTOCOMPRESS_TRACKING_URI``,
``$MLFLOW_TRACKING_URI``, the recipe's ``tracking.uri`` (search only), then ``./mlruns.db``.

Example::

    import autocompress

    result = autocompress.search("recipes/quickstart.yaml", trials=8, budgets=["size_kb<=60"])
    print(result.front)                                    # the Pareto front (DataFrame)
    front = autocompress.pareto("quickstart")              # the same, read back from MLflow
    chosen = autocompress.pick("quickstart", budgets=["size_kb<=30"], output="model.acz")
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError

__all__ = ["SearchResult", "choose", "direction", "evaluate", "pareto", "pick", "search"]


@dataclass(frozen=True)
class SearchResult:
    """A finished search: its summary (``SearchSummary``), front and where it is recorded.

    Attributes:
        summary: What ``run_search`` returned (trials, statuses, hypervolume, timings).
        tracking_uri: The MLflow store the search wrote to.
    """

    summary: Any
    tracking_uri: str

    @property
    def front(self) -> Any:
        """The Pareto front as a pandas DataFrame, best on the quality metric first."""
        import pandas as pd

        return pd.DataFrame(self.summary.front)

    @property
    def experiment(self) -> str:  # noqa: D102
        return self.summary.experiment

    @property
    def hypervolume(self) -> float:  # noqa: D102
        return self.summary.hypervolume


def search(recipe: Any, *, tracking_uri: str | None = None, progress: bool = True,
           ray_address: str | None = None, resume: bool = False,
           **overrides: Any) -> SearchResult:
    """Run a compression search and return its result with the front.

    Args:
        recipe: A :class:`~autocompress.recipe.Recipe` or the path of its YAML.
        tracking_uri: Where to record (see the module docstring for the default).
        progress: Print phases and one line per finished trial.
        ray_address: A running Ray cluster (None: a local Ray).
        resume: Continue the experiment's interrupted search.
        **overrides: ``trials``, ``concurrency``, ``sampler``, ``seed``, ``budgets`` (a list of
            expressions, added to the recipe's), ``experiment``, ``storage``.
    """
    from autocompress.locations import resolve_tracking_uri
    from autocompress.recipe import Recipe
    from autocompress.search import apply_overrides, run_search
    from autocompress.search.progress import SearchProgress

    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_yaml(os.fspath(recipe))
    unknown = set(overrides) - {"trials", "concurrency", "sampler", "seed", "budgets",
                                "experiment", "storage"}
    if unknown:
        raise ConfigError(f"search(): unknown override(s) {sorted(unknown)}; allowed: trials, "
                          "concurrency, sampler, seed, budgets, experiment, storage")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    location = resolve_tracking_uri(tracking_uri, recipe.tracking.uri)
    recipe = apply_overrides(recipe, uri=location.uri, **overrides)
    view = SearchProgress(recipe.metric.key, recipe.metric.mode, recipe.search.trials,
                          quiet=not progress)
    try:
        summary = run_search(recipe, ray_address=ray_address, verbose=0, resume=resume,
                             progress=view)
    finally:
        view.close()
    return SearchResult(summary, location.uri)


def pareto(experiment: str, tracking_uri: str | None = None, run_id: str | None = None,
           include_all: bool = False) -> Any:
    """The front (or every trial) of the experiment's last search, as a pandas DataFrame.

    One row per trial: ``trial``, ``run_id``, ``status``, ``pareto``, the quality metric on val
    and ``test_<metric>``, ``latency_ms``, ``size_kb``, ``params``, ``macs`` and ``plan`` (in
    words). ``df.attrs`` holds the baseline, the hypervolume and the tracking URI. Reads only.
    """
    import pandas as pd

    from autocompress.locations import resolve_tracking_uri
    from autocompress.report import front_json
    from autocompress.tracking import load_search

    uri = resolve_tracking_uri(tracking_uri).uri
    doc = front_json(load_search(uri, experiment, run_id), include_all=include_all)
    frame = pd.DataFrame(doc["trials"])
    frame.attrs.update(baseline=doc["baseline"], hypervolume=doc["hypervolume"],
                       search_run_id=doc["search_run_id"], tracking_uri=uri)
    return frame


def direction(metric: str, search_metric: tuple[str, str] = ("accuracy", "max")) -> str | None:
    """``max`` or ``min`` for a known metric (``latency_ms/cpu`` and ``test_x`` too), else None."""
    from autocompress.hardware.budget import METRICS

    name = metric.split("/")[0].removeprefix("test_")
    if name == search_metric[0]:
        return search_metric[1]
    if name in METRICS:
        return "max" if METRICS[name] == ">=" else "min"
    if name.startswith("top") and name.endswith("_accuracy"):
        return "max"
    return None


def choose(uri: str, experiment: str, budgets: Sequence[str] = (), maximize: str | None = None,
           minimize: str | None = None, run_id: str | None = None) -> tuple[Any, str]:
    """The front member ``pick`` takes, and the search's quality metric's key.

    Raises:
        ConfigError: a metric optimised against its direction (``--maximize latency_ms``),
            both ``maximize`` and ``minimize``, a bad budget, or no member within budgets.
    """
    from autocompress.hardware import parse_budgets
    from autocompress.tracking import load_search
    from autocompress.tracking import pick as tracking_pick

    if maximize and minimize:
        raise ConfigError("--maximize and --minimize: give one of them")
    try:  # before reading MLflow: a malformed budget fails fast
        parsed = parse_budgets(list(budgets))
    except ConfigError as exc:  # perhaps a budget on the search's own (user) metric
        if "unknown metric" not in str(exc):
            raise
        parsed = None
    search = load_search(uri, experiment, run_id)
    _check_direction(maximize, "max", search.metric)
    _check_direction(minimize, "min", search.metric)
    if parsed is None:
        key, mode = search.metric
        parsed = parse_budgets(list(budgets), {key: ">=" if mode == "max" else "<="})
    if minimize is None:
        chosen = tracking_pick(uri, experiment, parsed, maximize, None, run_id)
    elif "minimize" in inspect.signature(tracking_pick).parameters:
        chosen = tracking_pick(uri, experiment, parsed, None, None, run_id, minimize=minimize)
    else:
        raise ConfigError("--minimize: this version's tracking.pick cannot minimise; use "
                          "--maximize with a higher-is-better metric")
    return chosen, search.metric[0]


def _check_direction(metric: str | None, wanted: str, search_metric: tuple[str, str]) -> None:
    if metric is None:
        return
    known = direction(metric, search_metric)
    if known is not None and known != wanted:
        other = "--minimize" if wanted == "max" else "--maximize"
        better = "lower" if known == "min" else "higher"
        raise ConfigError(f"--{'maximize' if wanted == 'max' else 'minimize'} {metric}: "
                          f"{better} is better for {metric!r}; use {other} {metric}")


def pick(experiment: str, budgets: Sequence[str] = (), *, maximize: str | None = None,
         minimize: str | None = None, output: str | os.PathLike | None = None,
         tracking_uri: str | None = None, run_id: str | None = None,
         register: str | None = None, alias: str | None = None) -> Any:
    """Choose the Pareto member within ``budgets`` that is best on the objective.

    Args:
        experiment: The MLflow experiment.
        budgets: Expressions such as ``size_kb<=30`` or ``latency_ms<=1.5@cpu-onnxruntime``.
        maximize: A higher-is-better metric (default: the search's quality metric, in its
            own direction).
        minimize: A lower-is-better metric, e.g. ``latency_ms``.
        output: Where to copy the member's ``.acz`` artifact (None: not copied).
        tracking_uri: Where the search is recorded (see the module docstring).
        run_id: A specific search run (default: the latest).
        register: Also register the chosen model in the MLflow Model Registry as this name.
        alias: With ``register``: an alias to point at the new version (e.g. ``champion``).

    Returns:
        The chosen trial's record (``trial_id``, ``run_id``, ``metrics``, ``params``).
    """
    from autocompress.locations import resolve_tracking_uri
    from autocompress.tracking.query import download_artifact

    uri = resolve_tracking_uri(tracking_uri).uri
    chosen, _ = choose(uri, experiment, budgets, maximize, minimize, run_id)
    if output is not None:
        download_artifact(uri, chosen.run_id, Path(output))
    if register:
        from autocompress.tracking.registry import register as register_model

        register_model(chosen.run_id, register, alias, uri=uri)
    return chosen


def evaluate(artifact: str | os.PathLike, recipe: Any, split: str = "test") -> dict[str, Any]:
    """The artifact's quality on the recipe's ``test`` (or ``val``) split, with its metric.

    Returns:
        ``{"artifact", "recipe", "split", "metric", "mode", "value"}``.
    """
    from autocompress.evaluation import evaluate_artifact

    return evaluate_artifact(artifact, recipe, split)
