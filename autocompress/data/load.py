"""Resolve a recipe's data: a zoo data set, or a factory returning data of any form.

A factory (``package.module:function``, called with ``data.kwargs``) may return:

* ``DataSplits`` or the zoo's ``DatasetSplits``;
* a ``LightningDataModule`` (``prepare_data`` and ``setup`` are called, then its train, val and
  test dataloaders are used; recognised by its methods, Lightning is not imported);
* a mapping with keys ``train``, ``val`` (or ``validation``) and optionally ``test``;
* a tuple or list ``(train, val)`` or ``(train, val, test)``;
* any object with ``train`` and ``val`` (and ``test``) attributes.

Each split is a ``Dataset`` (map-style or iterable) or an iterable of batches such as a
``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autocompress.data.splits import DataSplits
from autocompress.errors import AutocompressError, ConfigError

__all__ = ["as_splits", "load_data", "resolve_data"]


def resolve_data(name: str):
    """The zoo data set's loader or the factory an import path names (imported, not called).

    Raises:
        ConfigError: naming ``data.name``, when it is unknown or cannot be imported.
    """
    from autocompress.zoo import DATASETS
    from autocompress.zoo.models import resolve

    try:
        return resolve(name, DATASETS, "dataset")
    except AutocompressError as exc:
        raise ConfigError(f"data.name: {exc}") from None


def load_data(name: str, kwargs: Mapping[str, Any] | None = None,
              label_key: str | None = None) -> DataSplits:
    """Load the data a recipe names and adapt it to :class:`DataSplits`.

    Args:
        name: A zoo data set name or ``package.module:function``.
        kwargs: Keyword arguments of the loader (``data.kwargs``).
        label_key: The targets' key in dict batches (``data.label_key``).

    Raises:
        ConfigError: The name cannot be resolved, the factory refuses its arguments, or it
            returns something that is not data.
    """
    from autocompress.zoo import DATASETS, load_dataset

    kwargs = dict(kwargs or {})
    if name in DATASETS:
        return as_splits(load_dataset(name, **kwargs), name, label_key)
    factory = resolve_data(name)
    try:
        result = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"data.kwargs: {name} refused {sorted(kwargs)}: {exc}") from None
    return as_splits(result, name, label_key)


def as_splits(data: Any, name: str = "data", label_key: str | None = None) -> DataSplits:
    """Adapt data of any supported form (see the module docstring) to :class:`DataSplits`."""
    if isinstance(data, DataSplits):
        return data if label_key is None else _with_label_key(data, label_key)
    from autocompress.zoo import DatasetSplits

    if isinstance(data, DatasetSplits):
        return DataSplits(data.train, data.val, data.test, data.name, label_key,
                          data.input_shape, data.num_classes)
    if _is_datamodule(data):
        return _from_datamodule(data, name, label_key)
    if isinstance(data, Mapping):
        unknown = set(data) - {"train", "val", "validation", "test"}
        if unknown or "train" not in data:
            raise ConfigError(f"data.name: {name} returned a mapping with keys {sorted(data)}; "
                              "expected train, val (or validation) and optionally test")
        val = data.get("val", data.get("validation"))
        return DataSplits(data["train"], val, data.get("test"), name, label_key)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        return DataSplits(*data, name=name, label_key=label_key)
    if hasattr(data, "train") and hasattr(data, "val"):
        return DataSplits(data.train, data.val, getattr(data, "test", None), name, label_key)
    raise ConfigError(f"data.name: {name} returned {type(data).__name__}; expected "
                      "DataSplits, a LightningDataModule, a dict or tuple of train/val/test "
                      "Datasets or DataLoaders")


def _with_label_key(data: DataSplits, label_key: str) -> DataSplits:
    import dataclasses

    return dataclasses.replace(data, label_key=label_key)


def _is_datamodule(data: Any) -> bool:
    """Duck-typed LightningDataModule (so Lightning need not be imported to recognise one)."""
    return all(callable(getattr(data, m, None))
               for m in ("prepare_data", "setup", "train_dataloader", "val_dataloader"))


def _from_datamodule(module: Any, name: str, label_key: str | None) -> DataSplits:
    """Train, val and (when it has one) test dataloaders of a LightningDataModule."""
    module.prepare_data()
    module.setup("fit")
    train, val = module.train_dataloader(), module.val_dataloader()
    test = None
    if callable(getattr(module, "test_dataloader", None)):
        try:
            module.setup("test")
            test = module.test_dataloader()
        except NotImplementedError:
            test = None
        except Exception as exc:  # noqa: BLE001  Lightning's "not defined" is its own type
            if "test_dataloader" not in str(exc):
                raise
            test = None
    return DataSplits(train, val, test, name, label_key)
