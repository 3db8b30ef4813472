"""autocompress: find the best compressed version of a neural network for your hardware.

The top-level package is light: importing it imports neither torch nor Ray, MLflow or
Lightning. Every public name is loaded on first use (PEP 562), so ``autocompress --help`` and
``import autocompress`` stay fast.

The Python API in three calls (each imports what it needs when called)::

    import autocompress
    result = autocompress.search("recipes/quickstart.yaml", trials=8)   # runs the search
    front = autocompress.pareto("quickstart")                           # a pandas DataFrame
    chosen = autocompress.pick("quickstart", budgets=["size_kb<=30"], output="model.acz")
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from autocompress.errors import ArtifactError, AutocompressError, ConfigError, PlanError

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "Budget": "autocompress.hardware",
    "Measurement": "autocompress.hardware",
    "profile": "autocompress.hardware",
    "CompressionPlan": "autocompress.methods",
    "apply_plan": "autocompress.methods",
    "Recipe": "autocompress.recipe",
    "SearchSpace": "autocompress.space",
    "bind": "autocompress.space",
    "deployable": "autocompress.export",
    "load_compressed": "autocompress.export",
    "save_compressed": "autocompress.export",
    "search": "autocompress.search",  # the package, callable (see _CallableModule)
    "pareto": "autocompress.pareto",  # the module, callable (see _CallableModule)
    "pick": "autocompress.api",
    "evaluate": "autocompress.api",
    "SearchResult": "autocompress.api",
}

__all__ = ["ArtifactError", "AutocompressError", "ConfigError", "PlanError", "__version__",
           *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autocompress' has no attribute {name!r}")
    if module == f"{__name__}.{name}":  # a callable submodule (search, pareto)
        return import_module(module)
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _CallableModule(ModuleType):
    """A subpackage that is also an API function: ``autocompress.search`` and ``.pareto``.

    ``autocompress.search("recipe.yaml")`` runs a search (:func:`autocompress.api.search`) and
    ``autocompress.pareto("quickstart")`` returns a front as a DataFrame
    (:func:`autocompress.api.pareto`), while ``from autocompress.search import run_search`` and
    ``from autocompress.pareto import non_dominated`` still import from the modules.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from autocompress import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)
