"""Shared helpers for the search-level tests."""

from __future__ import annotations

from pathlib import Path

from autocompress.recipe import PretrainConfig, Recipe

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def small_recipe(tmp_path: Path, *, budgets=("size_kb<=60",), epochs: int = 1, trials: int = 4,
                 **search) -> Recipe:
    """The quickstart recipe, shrunk for tests and pointed at ``tmp_path``."""
    recipe = Recipe.from_yaml(QUICKSTART)
    return recipe.replace(
        model={"pretrain": PretrainConfig(epochs=3, lr=0.003)},
        training={"epochs": epochs},
        hardware={"warmup": 2, "repeats": 10, "max_seconds": 0.2},
        search={"storage": str(tmp_path / "runs"), "trials": trials, **search},
        tracking={"uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "experiment": "test"},
        budgets=tuple(budgets),
    )
