"""Fail fast: resolve and check everything a search needs before MLflow or Ray start.

A recipe naming a model, data set, metric or loss that cannot be imported, a missing
checkpoint or a bad search space is a ``ConfigError`` naming its field within seconds, instead
of after a local Ray and the MLflow store have started. The recipe's own folder is made
importable first (appended to ``sys.path``), as trials do in every Ray worker.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from autocompress.errors import AutocompressError, ConfigError
from autocompress.recipe import Recipe

__all__ = ["check_recipe"]


def check_recipe(recipe: Recipe) -> None:
    """Resolve the recipe's model, data, metric, loss, checkpoints and space, or raise.

    The data are loaded (and cached for the search); the model is built once to check its
    factory and arguments.

    Raises:
        ConfigError: naming the field at fault.
    """
    from autocompress.search.trial import importable, load_splits

    importable(recipe.base_dir)
    _check_space(recipe)
    _check_model(recipe.model.name, recipe.model.kwargs, "model")
    student = recipe.model.student
    if student is not None:
        _check_model(student.name, student.kwargs, "model.student")
    for where, path in (("model.checkpoint", recipe.model.checkpoint),
                        ("model.student.checkpoint", student and student.checkpoint)):
        if path and not recipe.resolve(path).is_file():
            raise ConfigError(f"{where}: file not found: {recipe.resolve(path)}")
    recipe.metric.function()  # imports a user metric
    if recipe.training.loss not in ("cross_entropy", "mse", "l1"):
        from autocompress.training.losses import resolve_loss

        resolve_loss(recipe.training.loss)
    _check_distributed(recipe)
    try:
        splits = load_splits(recipe)
    except AutocompressError as exc:
        raise ConfigError(f"data.name: {exc}" if not str(exc).startswith("data") else str(exc)
                          ) from None
    splits.sample(1, "train")  # a batch can be read and split into inputs and targets
    splits.sample(1, "val")
    if recipe.training.distributed.enabled and not isinstance(splits.train, Dataset):
        raise ConfigError("training.distributed: workers shard a map-style Dataset; "
                          f"data {recipe.data.name!r} gives a {type(splits.train).__name__}")


def _check_space(recipe: Recipe) -> None:
    from autocompress.space import SearchSpace

    path = recipe.resolve(recipe.space)
    if not path.is_file():
        raise ConfigError(f"space: file not found: {path}")
    SearchSpace.from_yaml(path)


def _check_model(name: str, kwargs: dict[str, Any], where: str) -> None:
    from autocompress.zoo import MODELS, build_model
    from autocompress.zoo.models import resolve

    try:
        resolve(name, MODELS, "model")
        build_model(name, **kwargs)
    except ConfigError:
        raise
    except AutocompressError as exc:
        raise ConfigError(f"{where}.name: {exc}") from None


def _check_distributed(recipe: Recipe) -> None:
    """The distributed (Ray Train) path reports accuracy only, on tensor batches."""
    if recipe.training.distributed.enabled and (
            recipe.metric.name != "accuracy" or recipe.training.loss != "cross_entropy"):
        raise ConfigError("training.distributed: distributed fine-tuning scores accuracy with "
                          "cross-entropy only; drop metric / training.loss or distributed")
