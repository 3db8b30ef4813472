"""Fakes for tests of a search: a small recipe, and a collector of a trial's reports.

``small_recipe`` shrinks a recipe (by default a built-in one on the 8x8 digits) to a few
trials of one epoch, with its runs and MLflow store under a temporary folder::

    recipe = small_recipe(tmp_path, trials=2)                     # the built-in one
    recipe = small_recipe(tmp_path, base="recipes/quickstart.yaml")  # yours, shrunk
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from autocompress.recipe import PretrainConfig, Recipe
from autocompress.tracking.config import ARTIFACT_NAME

__all__ = ["SMALL_RECIPE", "SMALL_SPACE", "ReportCollector", "small_recipe"]

# a small CNN on scikit-learn's digits (shipped with scikit-learn: no download)
SMALL_RECIPE: dict[str, Any] = {
    "name": "small",
    "model": {"name": "digits_cnn", "kwargs": {"width": 16}},
    "data": {"name": "digits", "kwargs": {"val_fraction": 0.2, "seed": 0}, "batch_size": 64},
    "hardware": {"target": "cpu-torch", "threads": 1, "batch_size": 1},
    "training": {"optimizer": "adam", "lr": 0.002,
                 "distillation": {"temperature": 4.0, "alpha": 0.5}},
    "search": {"sampler": "tpe", "seed": 0, "scheduler": "asha", "grace_period": 1},
}
# prune and quantize every convolution and linear layer (output layers are never pruned)
SMALL_SPACE: dict[str, Any] = {
    "name": "small",
    "layers": [{"select": {"type": kind}, "methods": {
        "prune": {"ratio": {"low": 0.0, "high": 0.75, "step": 0.25}},
        "quantize": {"bits": {"choices": [4, 8, 32]}}}} for kind in ("Conv2d", "Linear")],
}


def _built_in(folder: Path) -> Recipe:
    """:data:`SMALL_RECIPE` with :data:`SMALL_SPACE` written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    space = folder / "small_space.yaml"
    space.write_text(yaml.safe_dump(SMALL_SPACE, sort_keys=False))
    return Recipe.from_dict({**SMALL_RECIPE, "space": str(space), "base_dir": str(folder)})


def small_recipe(tmp_path: str | Path, *, base: str | Path | Recipe | None = None,
                 budgets: tuple[str, ...] | list[str] = ("size_kb<=60",), epochs: int = 1,
                 trials: int = 4, **search: Any) -> Recipe:
    """A recipe shrunk for tests, its runs and MLflow store under ``tmp_path``.

    Args:
        tmp_path: The folder for the search's storage and sqlite store.
        base: A recipe (object or YAML file) to shrink; default :data:`SMALL_RECIPE`.
        budgets: The budgets (replacing the base's).
        epochs: Fine-tuning epochs per candidate.
        trials: Trials of the search.
        **search: Further fields of the ``search`` section.
    """
    tmp_path = Path(tmp_path)
    if base is None:
        recipe = _built_in(tmp_path / "recipe")
    else:
        recipe = base if isinstance(base, Recipe) else Recipe.from_yaml(base)
    return recipe.replace(
        model={"pretrain": PretrainConfig(epochs=3, lr=0.003)},
        training={"epochs": epochs},
        hardware={"warmup": 2, "repeats": 10, "max_seconds": 0.2},
        search={"storage": str(tmp_path / "runs"), "trials": trials, **search},
        tracking={"uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "experiment": "test"},
        budgets=tuple(budgets),
    )


class ReportCollector:
    """A trial's ``report(metrics, artifact_dir)`` callback that keeps what it was given.

    Each report is kept as ``(metrics, artifact)``: ``artifact`` is a copy of the reported
    artifact (``artifact<N>.acz`` in ``folder``, as the trial's folder may go away), or None.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.reports: list[tuple[dict[str, Any], Path | None]] = []

    def __call__(self, metrics: dict[str, Any], artifact_dir: str | None) -> None:
        saved = None
        if artifact_dir:
            saved = self.folder / f"artifact{len(self.reports)}.acz"
            shutil.copy(Path(artifact_dir) / ARTIFACT_NAME, saved)
        self.reports.append((metrics, saved))

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The metrics of every report, in order."""
        return [metrics for metrics, _ in self.reports]

    @property
    def last(self) -> tuple[dict[str, Any], Path | None]:
        """The last report (the trial's final one)."""
        return self.reports[-1]
