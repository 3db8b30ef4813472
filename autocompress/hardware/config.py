"""The hardware section of a recipe: targets and measurement protocol, as plain data.

Nothing here builds a profiler (see :mod:`autocompress.hardware.targets`): the config is
validated against the target names of :mod:`autocompress.hardware.registry` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autocompress.config import bounded, check_fields, choice
from autocompress.errors import invalid
from autocompress.hardware.budget import RELATIVE, TARGETED, Budget, parse_budgets
from autocompress.hardware.registry import PROFILERS

TARGETS = tuple(PROFILERS)


@dataclass(frozen=True)
class Protocol:
    """How latency is measured (see :mod:`autocompress.hardware.base`)."""

    warmup: int = 10
    min_runs: int = 10
    max_runs: int = 200
    max_seconds: float = 2.0
    target_spread: float = 0.05
    noisy_spread: float = 0.25
    quiet_timeout_s: float = 30.0


@dataclass(frozen=True)
class HardwareConfig:
    """The target that latency is measured on, and the measurement protocol."""

    target: str = choice("cpu-torch", TARGETS)
    threads: int = bounded(1, ge=1)
    batch_size: int = bounded(1, ge=1)
    warmup: int = bounded(10, ge=0)
    repeats: int = bounded(50, ge=1)
    min_repeats: int = bounded(10, ge=1)
    max_seconds: float = bounded(2.0, gt=0)
    target_spread: float = bounded(0.05, ge=0)
    # time on a quiet node: timings wait (at most quiet_timeout_s) for the node's training
    # batches and candidate builds in flight, and pause new ones (hardware/quiet.py)
    quiet: bool = True
    quiet_timeout_s: float = bounded(30.0, ge=0)
    # time each candidate paired with the baseline (runs alternating) and anchor its latency to
    # the baseline's: latency_ms = (candidate / baseline, same time window) x baseline latency
    paired: bool = True
    # cpu-onnxruntime: the ONNX graph timed: float (False), static int8 QDQ calibrated on train
    # (True or "static"), dynamic int8 ("dynamic": int8 weights, activations quantized per
    # batch), or all three paired, reporting the fastest ("auto"; the form chosen is the
    # metrics int8_chosen and int8_dynamic_chosen); a trial timed in int8 reports the int8
    # graph's quality (the PyTorch model's as <metric>_pytorch)
    int8: Any = choice(False, (False, True, "static", "dynamic", "auto"))
    # the baseline's recorded latency: the median of this many timing rounds (anchored
    # latency_ms of every candidate scales with it, so one noisy reading must not set it)
    baseline_rounds: int = bounded(3, ge=1)
    # measure on the Ray node carrying this custom resource (e.g. "target:cpu-onnxruntime"),
    # through the remote profiler, instead of where the trial runs
    resource: str | None = None
    # latency lookup table: predict each plan's latency before building it, reject plans
    # predicted over a latency budget by more than reject_margin (relative), log its error
    predict: bool = False
    reject_margin: float = bounded(0.1, ge=0)
    # further targets budgets may name: {name: {target: REGISTERED, option: value, ...}};
    # with "resource" the target is timed remotely, with "table" predicted by a latency table
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        check_fields(self, "hardware")  # each field's type and range, also when built in code
        for name, spec in self.targets.items():
            if not isinstance(spec, dict):
                raise invalid(f"hardware.targets.{name}", spec, "a mapping of profiler options")
            kind = spec.get("target", name)
            if not isinstance(kind, str) or kind not in PROFILERS:
                raise invalid(f"hardware.targets.{name}.target", kind, sorted(PROFILERS))

    @property
    def protocol(self) -> Protocol:
        """The measurement protocol every target of this recipe uses."""
        return Protocol(warmup=self.warmup, min_runs=min(self.min_repeats, self.repeats),
                        max_runs=self.repeats, max_seconds=self.max_seconds,
                        target_spread=self.target_spread,
                        quiet_timeout_s=self.quiet_timeout_s if self.quiet else 0.0)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is the default target, a named one or a registered target."""
        return name == self.target or name in self.targets or name in PROFILERS

    def known_targets(self) -> list[str]:
        """Every target name a budget may use, sorted (for error messages)."""
        return sorted({self.target, *self.targets, *PROFILERS})

    def kind(self, name: str | None = None) -> str:
        """The registered target that ``name`` (default: the default target) measures on."""
        if name is None or name == self.target:
            return self.target
        return self.targets.get(name, {}).get("target", name)

    def target_names(self, budgets: tuple[Budget, ...]) -> tuple[str, ...]:
        """The extra targets ``budgets`` measure on (besides the default one), in order."""
        names = []
        for budget in budgets:
            if budget.target and budget.target != self.target and budget.target not in names:
                names.append(budget.target)
        return tuple(names)


# the budget names and the target registry, for config code (recipe.py) to import from here
__all__ = ["PROFILERS", "RELATIVE", "TARGETED", "TARGETS", "Budget", "HardwareConfig", "Protocol",
           "parse_budgets"]
