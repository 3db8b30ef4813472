"""Quality metrics: the recipe's ``metric`` section and its streaming evaluation.

:mod:`autocompress.metrics.config` is the section (plain data), :mod:`autocompress.metrics.state`
accumulates it over batches.
"""

from autocompress.metrics.config import BUILTIN, DIRECTIONS, MetricConfig, describe
from autocompress.metrics.state import MetricState, evaluate_metric, metric_state

__all__ = ["BUILTIN", "DIRECTIONS", "MetricConfig", "MetricState", "describe",
           "evaluate_metric", "metric_state"]
