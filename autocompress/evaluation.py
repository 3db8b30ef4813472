"""Scoring a compressed artifact on a recipe's data (``autocompress evaluate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError

SPLITS = ("test", "val")


def vouched(spec: dict, recipe: Any) -> bool:
    """True when the artifact's base is an import path that the user's recipe names."""
    if recipe is None:
        return False
    student = getattr(recipe.model, "student", None)
    names = {recipe.model.name, getattr(student, "name", None)}
    return spec.get("base", {}).get("model") in names - {None}


def evaluate_artifact(artifact: str | os.PathLike, recipe: Any,
                      split: str = "test") -> dict[str, Any]:
    """The artifact's quality metric on the recipe's ``split`` (``test`` or ``val``).

    The artifact's base architecture is rebuilt from its zoo name, or from the import path the
    recipe names (the recipe vouches for that code); nothing else named by the file is run.

    Raises:
        ConfigError: an unknown split, a recipe whose data have no such split.
        ArtifactError: the file is not a readable artifact.
    """
    from autocompress.export import load_compressed, read_spec
    from autocompress.recipe import Recipe
    from autocompress.search.trial import load_splits, quality

    if split not in SPLITS:
        raise ConfigError(f"--split: invalid value {split!r}; allowed: {', '.join(SPLITS)}")
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_yaml(os.fspath(recipe))
    spec = read_spec(artifact)
    model = load_compressed(artifact, trust_code=vouched(spec, recipe))
    splits = load_splits(recipe)
    if getattr(splits, split, None) is None:
        raise ConfigError(f"--split {split}: the recipe's data {recipe.data.name!r} have no "
                          f"{split} split")
    value = quality(model, splits, recipe, split=split)
    return {"artifact": str(Path(artifact)), "recipe": recipe.name, "split": split,
            "metric": recipe.metric.key, "mode": recipe.metric.mode, "value": value}
