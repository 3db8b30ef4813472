"""Shared helpers for the search-level tests: the repository's paths, and its small recipe."""

from __future__ import annotations

from pathlib import Path

from autocompress.recipe import Recipe
from autocompress.testing import small_recipe as shrink

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


def small_recipe(tmp_path: Path, **options) -> Recipe:
    """The quickstart recipe, shrunk by :func:`autocompress.testing.small_recipe`."""
    return shrink(tmp_path, base=QUICKSTART, **options)
