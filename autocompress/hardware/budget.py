"""Budgets: strict parsing of ``metric<=limit[@target]`` and Optuna-style violations."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from autocompress.errors import ConfigError

# metric -> the comparison it admits (cost metrics are upper-bounded, quality lower-bounded)
METRICS = {
    "latency_ms": "<=",
    "latency_p90_ms": "<=",
    # relative to the baseline timed paired in the same window (no drift between readings)
    "latency_ratio": "<=",
    "speedup": ">=",
    "size_kb": "<=",
    "size_bytes": "<=",
    "params": "<=",
    "macs": "<=",
    "bops": "<=",
    "peak_mem_mb": "<=",
    "accuracy": ">=",
    "macro_f1": ">=",
    "mse": "<=",
    "mae": "<=",
}
_TOP_K = re.compile(r"^top[1-9][0-9]*_accuracy$")  # the top_k metric's names (maximised)
# budgets relative to the baseline: only paired timing measures them
RELATIVE = frozenset({"latency_ratio", "speedup"})
# metrics that depend on the device they are measured on (the others describe the model)
TARGETED = frozenset({"latency_ms", "latency_p90_ms", "latency_spread", "noisy", "quiet",
                      "latency_measured_ms", "latency_measured_p90_ms", "latency_ratio", "speedup",
                      "int8_chosen", "int8_dynamic_chosen",
                      "reference_latency_ms", "reference_latency_p90_ms"})
_PATTERN = re.compile(
    r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=)\s*([^@\s]+)\s*(?:@\s*([A-Za-z0-9_.:-]+))?\s*$")
SYNTAX = ("METRIC<=LIMIT[@TARGET] (or QUALITY>=LIMIT for a maximised quality metric), e.g. "
          "latency_ms<=2, speedup>=3, latency_ratio<=0.33@cpu-onnxruntime, size_kb<=60, "
          "accuracy>=0.95 or mse<=0.1")


@dataclass(frozen=True)
class Budget:
    """An upper (or, for a maximised quality metric, lower) bound on one measured metric.

    Attributes:
        metric: One of :data:`METRICS`, ``topK_accuracy``, or the recipe's own quality metric.
        op: ``<=`` or ``>=``.
        limit: The bound.
        target: The hardware target the metric is measured on (None = the recipe's default).
    """

    metric: str
    op: str
    limit: float
    target: str | None = None

    @classmethod
    def parse(cls, text: str, quality: Mapping[str, str] | None = None) -> Budget:
        """Parse ``latency_ms<=2``, ``size_kb<=60``, ``accuracy>=0.95``, ``latency_ms<=2@cpu``.

        Args:
            text: The expression.
            quality: Further metrics allowed, with the comparison each takes (a recipe's user
                metric, e.g. ``{"bleu": ">="}``).

        Examples:
            >>> budget = Budget.parse("latency_ms<=2@cpu-onnxruntime")
            >>> budget.metric, budget.limit, budget.target, budget.key
            ('latency_ms', 2.0, 'cpu-onnxruntime', 'latency_ms/cpu-onnxruntime')
            >>> Budget.parse("size_kb<=60").violation(75.0)  # 25 % over: infeasible (> 0)
            0.25
            >>> Budget.parse("bleu>=30", quality={"bleu": ">="}).violation(33.0) <= 0
            True
        """
        match = _PATTERN.match(str(text))
        if not match:
            raise ConfigError(f"budget {text!r}: cannot parse; expected {SYNTAX}")
        metric, op, raw, target = match.groups()
        allowed = {**METRICS, **(quality or {})}
        if _TOP_K.match(metric):
            allowed.setdefault(metric, ">=")
        if metric not in allowed:
            raise ConfigError(f"budget {text!r}: unknown metric {metric!r}; allowed: "
                              f"{', '.join(allowed)}, topK_accuracy")
        if op != allowed[metric]:
            raise ConfigError(f"budget {text!r}: {metric} takes {allowed[metric]}, not {op}")
        try:
            limit = float(raw)
        except ValueError:
            raise ConfigError(f"budget {text!r}: limit {raw!r} is not a number") from None
        if not math.isfinite(limit) or limit < 0:  # inf, 1e999 and nan: every violation NaN
            raise ConfigError(f"budget {text!r}: limit must be a number >= 0 and finite, "
                              f"not {raw!r}")
        if target and metric not in TARGETED:
            timed = ", ".join(sorted(TARGETED & set(METRICS)))
            raise ConfigError(f"budget {text!r}: {metric} does not depend on the hardware "
                              f"target; drop '@{target}' (only {timed} take a target)")
        return cls(metric, op, limit, target)

    @property
    def key(self) -> str:
        """The metric's name in results: ``latency_ms``, or ``latency_ms/TARGET``.

        The target is part of the name when it is not the search's default one (MLflow
        names admit ``/``, not ``@``).
        """
        return metric_key(self.metric, self.target)

    def on_default(self, default_target: str) -> Budget:
        """The budget without its target when that is the search's default target."""
        return replace(self, target=None) if self.target == default_target else self

    def violation(self, value: float) -> float:
        """Optuna's convention: > 0 is infeasible, relative to the limit so budgets compare."""
        excess = value - self.limit if self.op == "<=" else self.limit - value
        return excess / self.limit if self.limit > 0 else excess

    def __str__(self) -> str:
        suffix = f"@{self.target}" if self.target else ""
        short = f"{self.limit:g}"  # 60, not 60.0; but never a rounded limit (1000001 -> 1e+06)
        limit = short if float(short) == self.limit else repr(self.limit)
        return f"{self.metric}{self.op}{limit}{suffix}"


def metric_key(metric: str, target: str | None) -> str:
    """Result key of ``metric`` measured on ``target`` (None = the default target)."""
    return f"{metric}/{target}" if target else metric


def parse_budgets(texts: Iterable[str],
                  quality: Mapping[str, str] | None = None) -> tuple[Budget, ...]:
    """Parse several budget expressions; a later one on the same metric replaces an earlier.

    ``quality`` allows further metrics (see :meth:`Budget.parse`).
    """
    by_metric = {}
    for text in texts:
        budget = Budget.parse(text, quality)
        by_metric[(budget.metric, budget.target)] = budget
    return tuple(by_metric.values())


def violations(budgets: Iterable[Budget], metrics: Mapping[str, float]) -> list[float]:
    """The violation of each budget given measured metrics (missing metric -> error)."""
    out = []
    for budget in budgets:
        if budget.key not in metrics:
            raise KeyError(f"budget {budget}: metric {budget.key!r} was not measured")
        out.append(budget.violation(float(metrics[budget.key])))
    return out


def is_feasible(values: Iterable[float]) -> bool:
    """True when every violation is <= 0."""
    return all(v <= 0 for v in values)
