"""Quality metrics: what the Pareto front, quality budgets, ASHA and ``pick`` optimise.

A recipe's ``metric`` section names a built-in metric or a user function::

    metric: {name: accuracy}                  # the default
    metric: {name: top_k, k: 5}               # logged as top5_accuracy
    metric: {name: mse}                       # minimised
    metric: {name: mypkg.metrics:bleu, direction: maximize}

Built-ins know their direction and accumulate over batches exactly (accuracy, top-k,
macro-F1 from a confusion matrix, mean squared and absolute error over every output element);
a user function ``fn(model, loader) -> float`` gets the model in eval mode and the split's
batches as the data yields them, and must state its direction.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autocompress.config import bounded
from autocompress.errors import ConfigError, invalid

if TYPE_CHECKING:
    from torch import nn

BUILTIN = {"accuracy": "maximize", "top_k": "maximize", "macro_f1": "maximize",
           "mse": "minimize", "mae": "minimize"}
DIRECTIONS = ("maximize", "minimize")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*$")

__all__ = ["BUILTIN", "DIRECTIONS", "MetricConfig", "describe"]


@dataclass(frozen=True)
class MetricConfig:
    """The recipe's quality metric.

    Attributes:
        name: A built-in (``accuracy``, ``top_k``, ``macro_f1``, ``mse``, ``mae``) or
            ``package.module:function`` taking ``(model, loader)`` and returning a float.
        k: ``top_k`` only: how many of the highest logits may hold the label.
        direction: ``maximize`` or ``minimize``; required for a user function, optional (and
            checked) for a built-in.
    """

    name: str = "accuracy"
    k: int = bounded(5, ge=1)
    direction: str | None = None

    def __post_init__(self):
        if self.name not in BUILTIN and ":" not in str(self.name):
            raise invalid("metric.name", self.name,
                          f"one of {', '.join(BUILTIN)} or package.module:function")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise invalid("metric.k", self.k, "an integer >= 1")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise invalid("metric.direction", self.direction, DIRECTIONS)
        if self.name in BUILTIN:
            if self.direction not in (None, BUILTIN[self.name]):
                raise invalid("metric.direction", self.direction,
                              f"{BUILTIN[self.name]!r} (the direction of {self.name})")
        elif self.direction is None:
            raise invalid("metric.direction", None,
                          f"'maximize' or 'minimize' (a user metric {self.name} must state it)")
        if not _KEY.match(self.key):
            raise invalid("metric.name", self.name, "a function whose name is lowercase "
                          "letters, digits and underscores (it names the logged metric)")

    @property
    def key(self) -> str:
        """The metric's name in results and MLflow (``val`` is implied; ``test_`` is prefixed)."""
        if self.name == "top_k":
            return f"top{self.k}_accuracy"
        return self.name.rpartition(":")[2] if ":" in self.name else self.name

    @property
    def mode(self) -> str:
        """``max`` or ``min`` (Tune's and the Pareto code's spelling)."""
        return "max" if (self.direction or BUILTIN.get(self.name)) == "maximize" else "min"

    @property
    def op(self) -> str:
        """The comparison a budget on this metric takes: ``>=`` when maximised, else ``<=``."""
        return ">=" if self.mode == "max" else "<="

    @property
    def decomposable(self) -> bool:
        """True when the metric is a mean over samples (its batch means, weighted, are exact)."""
        return self.name in ("accuracy", "top_k", "mse", "mae")

    @property
    def worst(self) -> float:
        """The value reported for a candidate that could not be evaluated."""
        if self.name in ("accuracy", "top_k", "macro_f1"):
            return 0.0
        return float("-inf") if self.mode == "max" else float("inf")

    def function(self) -> Callable[[nn.Module, Iterable], float] | None:
        """The user function (imported), or None for a built-in.

        Raises:
            ConfigError: naming ``metric.name``, when it cannot be imported or is not callable.
        """
        if self.name in BUILTIN:
            return None
        module_name, _, attr = self.name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"metric.name: cannot import module {module_name!r} of "
                              f"{self.name!r}: {exc}") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise ConfigError(f"metric.name: module {module_name!r} has no callable {attr!r}")
        return fn


def describe(config: MetricConfig | Any) -> str:
    """``accuracy (maximize)``: for messages."""
    return f"{config.key} ({'maximize' if config.mode == 'max' else 'minimize'})"
