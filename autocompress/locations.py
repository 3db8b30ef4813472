"""Where a search is recorded: the one place that resolves the MLflow tracking URI.

The URI is, in this order of precedence:

1. the ``--tracking-uri`` flag (or the ``tracking_uri=`` argument of the Python API);
2. the environment variable ``AUTOCOMPRESS_TRACKING_URI``;
3. the environment variable ``MLFLOW_TRACKING_URI`` (MLflow's own);
4. for ``search``, the recipe's ``tracking.uri``;
5. the default, ``sqlite:///mlruns.db`` in the current folder.

A relative sqlite path is made absolute against the current folder, so every command reports
(and trials write to) the same file. Imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

ENV_VARS = ("AUTOCOMPRESS_TRACKING_URI", "MLFLOW_TRACKING_URI")
DEFAULT_URI = "sqlite:///mlruns.db"


class TrackingLocation(NamedTuple):
    """A resolved tracking URI and where it came from (shown to the user)."""

    uri: str
    source: str

    def describe(self) -> str:
        """One line for the output, e.g. ``tracking: sqlite:////a/mlruns.db (default)``."""
        return f"tracking: {self.uri} ({self.source})"


def resolve_tracking_uri(explicit: str | None = None,
                         recipe_uri: str | None = None) -> TrackingLocation:
    """The tracking URI to use, by the precedence in this module's docstring.

    Args:
        explicit: The ``--tracking-uri`` flag or the API's ``tracking_uri=``.
        recipe_uri: The recipe's ``tracking.uri`` (``search`` only).

    Returns:
        The absolute URI and a short description of its source.
    """
    if explicit:
        return TrackingLocation(absolute_uri(explicit), "--tracking-uri")
    for name in ENV_VARS:
        if os.environ.get(name):
            return TrackingLocation(absolute_uri(os.environ[name]), f"${name}")
    if recipe_uri:
        return TrackingLocation(absolute_uri(recipe_uri), "the recipe's tracking.uri")
    return TrackingLocation(absolute_uri(DEFAULT_URI), "default: mlruns.db in the current folder")


def absolute_uri(uri: str) -> str:
    """A relative ``sqlite:///path`` made absolute against the current folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    return uri
