"""Orchestration: Ray Tune + Optuna. Importing this package does not import Ray.

``run_search`` is loaded on first use (it brings in Ray, Lightning and MLflow).
"""

import sys

from autocompress import _CallableModule

__all__ = ["SearchSummary", "apply_overrides", "run_search"]


def __getattr__(name: str):
    if name in __all__:
        from autocompress.search import runner

        return getattr(runner, name)
    raise AttributeError(name)


# ``autocompress.search(recipe)`` runs a search (autocompress.api.search)
sys.modules[__name__].__class__ = _CallableModule
