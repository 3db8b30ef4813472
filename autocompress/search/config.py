"""The search section of a recipe, as plain data (no Ray, no Optuna)."""

from __future__ import annotations

from dataclasses import dataclass

from autocompress.config import bounded, check_fields, choice

SAMPLERS = ("tpe", "nsga2", "random")
SCHEDULERS = ("asha", "none")

__all__ = ["SAMPLERS", "SCHEDULERS", "SearchConfig"]


@dataclass(frozen=True)
class SearchConfig:
    """The Ray Tune + Optuna search."""

    trials: int = bounded(16, ge=1)
    concurrency: int = bounded(2, ge=1)
    sampler: str = choice("tpe", SAMPLERS)
    seed: int = bounded(0, ge=0)
    scheduler: str = choice("asha", SCHEDULERS)
    grace_period: int = bounded(1, ge=1)
    reduction_factor: int = bounded(2, ge=2)
    storage: str = "autocompress_runs"
    cpus_per_trial: float = bounded(1.0, gt=0)
    max_failures: int = bounded(2, ge=0)  # retries of a trial whose worker or node was lost

    def __post_init__(self):
        check_fields(self, "search")  # each field's type and range, also when built in code
