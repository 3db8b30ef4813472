"""What each benchmark suite compares: recipe, uniform grid, peer-tool settings and goals.

Everything here is fixed before a run: the grids, the hypervolume reference points (the
baseline's own values, and the baseline's with the goal's quality tolerance) and the goals'
thresholds, which come from issue 10 and are never adjusted to a result.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Uniform:
    """One point of the uniform sweep: the same knob values on every layer.

    Attributes:
        prune: Structured prune ratio of every prunable layer the suite names.
        bits: Weight bits of every layer (32 = float).
    """

    prune: float = 0.0
    bits: int = 32

    @property
    def label(self) -> str:
        return f"prune {self.prune:g}, {self.bits} bits"

    def plan(self, layers, prune_glob: str) -> dict:
        """The plan dict: every layer quantized, the prunable ones matching ``prune_glob`` pruned.

        Args:
            layers: ``LayerInfo`` of the model (``compressible_layers``).
            prune_glob: fnmatch pattern of the layers that take the prune ratio.
        """
        out: dict[str, dict] = {}
        for layer in layers:
            methods: dict[str, dict] = {}
            if (self.prune > 0 and layer.prunable and not layer.is_output
                    and fnmatch.fnmatch(layer.name, prune_glob)):
                methods["prune"] = {"ratio": self.prune}
            if self.bits < 32:
                methods["quantize"] = {"bits": self.bits}
            if methods:
                out[layer.name] = methods
        return {"layers": out}


def grid(prunes: tuple[float, ...], bits: tuple[int, ...]) -> tuple[Uniform, ...]:
    """Every (prune ratio, bit width) pair, bits varying fastest."""
    return tuple(Uniform(p, b) for p in prunes for b in bits)


@dataclass(frozen=True)
class Suite:
    """One model's comparison.

    Attributes:
        name: Suite name (``--suite``).
        recipe: Recipe of the full mode (its space is the per-layer space).
        quick_recipe: Recipe of the quick mode.
        grid: Uniform sweep of the full mode (its size is the full mode's trial count).
        quick_grid: Uniform sweep of the quick mode.
        prune_glob: Layers that uniform pruning and Torch-Pruning's uniform 50 % reach.
        dynamic_int8: Also compare PyTorch dynamic int8 (transformers).
        tolerance: The goal's quality tolerance (fraction: 0.001 = 0.1 pt).
        speedup_goal: The goal's speed-up on the ORT target at that tolerance.
        ratio_goal: The goal's size ratio at that tolerance (0: none).
        test_batch: Batch size of the test-split evaluation.
        calibration: Training inputs that calibrate int8 QDQ graphs.
    """

    name: str
    recipe: Path
    quick_recipe: Path
    grid: tuple[Uniform, ...]
    quick_grid: tuple[Uniform, ...]
    prune_glob: str
    dynamic_int8: bool
    tolerance: float
    speedup_goal: float
    ratio_goal: float
    test_batch: int = 64
    calibration: int = 256


SUITES: dict[str, Suite] = {
    "lenet5": Suite(
        "lenet5", ROOT / "recipes/bench_lenet5.yaml", ROOT / "recipes/bench_quick.yaml",
        grid((0.25, 0.5, 0.625, 0.75, 0.875), (8, 4)), grid((0.5,), (8, 4)),
        prune_glob="*", dynamic_int8=False, tolerance=0.001, speedup_goal=6.0,
        ratio_goal=100.0),
    "minilm": Suite(
        "minilm", ROOT / "recipes/bench_minilm.yaml", ROOT / "recipes/bench_quick.yaml",
        grid((0.25, 0.5, 0.75), (8, 4)), grid((0.5,), (8, 4)),
        prune_glob="*.intermediate.dense", dynamic_int8=True, tolerance=0.01,
        speedup_goal=4.0, ratio_goal=10.0, calibration=32),
}
SEARCHERS = ("random", "tpe", "nsga2")
