"""Where it must run: budgets, measurements and profilers."""

from autocompress.hardware.budget import Budget, is_feasible, parse_budgets, violations
from autocompress.hardware.measurement import Measurement
from autocompress.hardware.profile import profile

__all__ = ["Budget", "Measurement", "is_feasible", "parse_budgets", "profile", "violations"]
