"""The zoo's error and the argument checks its model and data set builders share."""

from __future__ import annotations

from autocompress.errors import AutocompressError

__all__ = ["ZooError", "check_positive", "check_split_args"]


class ZooError(AutocompressError, ValueError):
    """A model or data set name, argument or file of the zoo is invalid."""


def check_positive(model: str, **values: int) -> None:
    """Raise ZooError unless every value is a positive int (bools excluded)."""
    for arg, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ZooError(f"model {model!r}: {arg} must be a positive integer, got {value!r}")


def check_split_args(val_fraction: float, limit_train: int | None) -> None:
    """Raise ZooError if ``val_fraction`` or ``limit_train`` is out of range."""
    if isinstance(val_fraction, bool) or not 0.0 < val_fraction < 1.0:
        raise ZooError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    if limit_train is not None and (
        isinstance(limit_train, bool) or not isinstance(limit_train, int) or limit_train < 1
    ):
        raise ZooError(f"limit_train must be a positive integer or None, got {limit_train!r}")
