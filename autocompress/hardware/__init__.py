"""Where it must run: budgets, measurements and profilers.

Importing the package (or its config module) loads no profiler: ``profile`` is imported on
first use.
"""

from autocompress.hardware.budget import Budget, is_feasible, parse_budgets, violations
from autocompress.hardware.measurement import Measurement

__all__ = ["Budget", "Measurement", "is_feasible", "parse_budgets", "profile", "violations"]


def __getattr__(name: str):
    if name == "profile":
        from autocompress.hardware.targets import profile

        return profile
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
