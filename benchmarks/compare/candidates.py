"""The compared models: baseline, uniform sweep, searches, Torch-Pruning, int8 deploy paths.

Every candidate is built from the SAME trained baseline (the recipe's cached teacher), fine-tuned
(when it is fine-tuned) for the recipe's epochs with its distillation, and written to a real file
that is loaded back: the model that is timed and tested is the one read from that file.
"""

from __future__ import annotations

import copy
import fnmatch
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress import load_compressed, save_compressed
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.methods.apply import compressible_layers, find_output_layers
from autocompress.training import evaluate, fine_tune


@dataclass
class Candidate:
    """One compared model and, once measured, its figures.

    Attributes:
        method: The method that produced it (``uniform``, ``tpe``, ...).
        label: Its name in the report (a trial id, a grid point).
        model: The torch model as read back from its file (None: an ONNX-only candidate).
        path: The file whose bytes are its size.
        val_quality: The recipe's metric on val (what chose it), when known.
        plan: A short description of what was done to it.
        forms: ONNX Runtime forms to time (``float``, ``int8`` static QDQ, ``dynamic`` int8);
            empty: not exportable.
        onnx: A ready ONNX file for an ONNX-only candidate.
        figures: Filled by the measurement: latencies, test quality, chosen form.
    """

    method: str
    label: str
    model: nn.Module | None
    path: Path
    val_quality: float | None = None
    plan: str = ""
    forms: tuple[str, ...] = ("float", "int8", "dynamic")
    onnx: Path | None = None
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass
class Bench:
    """What every builder shares: the suite, recipe, data and the one trained baseline."""

    suite: Any
    recipe: Any
    mode: str
    trials: int
    workdir: Path
    splits: Any
    teacher: nn.Module
    storage: Path
    uri: str
    walls: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    searches: dict[str, Any] = field(default_factory=dict)

    @property
    def example(self) -> torch.Tensor:
        """One validation input (tracing, export shape); timing never reads test."""
        return self.splits.example_inputs(1, "val")

    @property
    def outputs(self) -> frozenset[str]:
        return find_output_layers(self.fresh(), self.example)

    def fresh(self) -> nn.Module:
        """A trainable copy of the baseline: fine-tuning freezes the teacher it is given."""
        return copy.deepcopy(self.teacher).requires_grad_(True)

    def quality(self, model: nn.Module, split: str = "val") -> float:
        return evaluate(model, self.splits.fixed_loader(split), metric=self.recipe.metric,
                        label_key=self.splits.label_key)

    def file(self, name: str) -> Path:
        folder = self.workdir / "models"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name


def baseline(bench: Bench) -> Candidate:
    """The uncompressed model, saved as a float artifact (the size every ratio divides)."""
    path = bench.file("baseline.acz")
    save_compressed(bench.teacher, path)
    model = load_compressed(path, base=bench.teacher)
    return Candidate("baseline", "baseline", model, path, bench.quality(model), "float32",
                     forms=("float",))


def _fine_tuned(bench: Bench, plan_dict: dict, method: str, label: str) -> Candidate:
    """Apply a plan to the baseline and fine-tune it the way a search trial is fine-tuned."""
    recipe, splits = bench.recipe, bench.splits
    plan = CompressionPlan.from_dict(plan_dict)
    calibration = splits.sample(recipe.training.calibration_samples, "train")  # never val/test
    student = apply_plan(bench.fresh(), plan, bench.example, bench.outputs, calibration)
    _train(bench, student)
    path = bench.file(f"{method}-{label.replace(' ', '').replace(',', '_')}.acz")
    save_compressed(student, path, extra={"plan": plan.to_dict()})
    model = load_compressed(path, base=bench.teacher)
    return Candidate(method, label, model, path, bench.quality(model), label)


def _train(bench: Bench, student: nn.Module) -> None:
    t = bench.recipe.training
    fine_tune(student, bench.teacher, bench.splits, t, distillation=t.distillation,
              batch_size=bench.recipe.data.batch_size, seed=bench.recipe.search.seed,
              quiet=False, output_layers=bench.outputs, metric=bench.recipe.metric)


def uniform(bench: Bench) -> list[Candidate]:
    """The uniform sweep: one prune ratio and one bit width for every layer, each fine-tuned."""
    points = bench.suite.grid if bench.mode == "full" else bench.suite.quick_grid
    layers = compressible_layers(bench.fresh(), bench.example)
    return [_fine_tuned(bench, point.plan(layers, bench.suite.prune_glob), "uniform", point.label)
            for point in points]


def searched(bench: Bench, sampler: str) -> list[Candidate]:
    """The Pareto front of one ``run_search`` with ``sampler`` (chosen on val by the search)."""
    from autocompress.search import apply_overrides, run_search
    from autocompress.tracking import load_search
    from autocompress.tracking.query import download_artifact

    recipe = apply_overrides(bench.recipe, trials=bench.trials, sampler=sampler,
                             seed=bench.recipe.search.seed, uri=bench.uri,
                             experiment=f"{bench.recipe.experiment}-{sampler}",
                             storage=str(bench.storage))
    summary = run_search(recipe, verbose=0)
    record = load_search(bench.uri, recipe.experiment, summary.parent_run_id)
    bench.searches[sampler] = summary
    key = recipe.metric.key
    out = []
    for trial in record.front():
        target = bench.file(f"{sampler}-{trial.trial_id}.acz")
        path = download_artifact(bench.uri, trial.run_id, target)
        model = load_compressed(path, base=bench.teacher)
        out.append(Candidate(sampler, trial.trial_id, model, path, trial.metrics.get(key),
                             _plan_text(trial.params)))
    return out


def _plan_text(params: dict[str, str]) -> str:
    """The trial's plan in words, every layer (``conv1: prune 50% · 4-bit; ...``)."""
    from autocompress.viz.plans import plan_from_params, plan_text

    plan = plan_from_params(params)
    return "?" if plan is None else plan_text(plan, limit=100)


def torch_pruning(bench: Bench, ratio: float = 0.5) -> Candidate:
    """Torch-Pruning's MetaPruner, L1 magnitude, one ratio for every layer the suite names.

    Fine-tuned for the recipe's epochs with the same distillation; saved with ``torch.save``
    (the peer tool's own form) and loaded back.
    """
    import torch_pruning as tp

    model = bench.fresh()
    outputs = bench.outputs
    ignored = [m for n, m in model.named_modules()
               if (isinstance(m, (nn.Linear, nn.Conv2d))
                   and (n in outputs or not fnmatch.fnmatch(n, bench.suite.prune_glob)))
               or isinstance(m, (nn.Embedding, nn.LayerNorm))]
    pruner = tp.pruner.MetaPruner(model, bench.example,
                                  importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=ignored)
    pruner.step()
    _train(bench, model)
    path = bench.file("torch-pruning.pt")
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False).eval()
    return Candidate("torch-pruning", f"uniform {ratio:.0%}", loaded, path,
                     bench.quality(loaded), f"MetaPruner L1 {ratio:g} on {bench.suite.prune_glob}")


def ort_int8(bench: Bench) -> Candidate:
    """ONNX Runtime static int8 (QDQ, per-channel) of the baseline, calibrated on train."""
    from autocompress.export.onnx import export_onnx

    path = bench.file("baseline-int8.onnx")
    calibration = bench.splits.example_inputs(bench.suite.calibration, "train")
    export_onnx(bench.teacher, bench.example, path, int8=True, calibration=calibration)
    return Candidate("ort-int8", "baseline int8", None, path, None, "static QDQ int8",
                     forms=("int8",), onnx=path)


def ort_dynamic_int8(bench: Bench) -> Candidate:
    """ONNX Runtime dynamic int8 of the baseline (int8 weights, activations per batch)."""
    from autocompress.export.onnx import export_onnx

    path = bench.file("baseline-dynamic.onnx")
    export_onnx(bench.teacher, bench.example, path, int8="dynamic")
    return Candidate("ort-dynamic-int8", "baseline dynamic", None, path, None,
                     "ORT quantize_dynamic QInt8", forms=("dynamic",), onnx=path)


def dynamic_int8(bench: Bench) -> Candidate:
    """PyTorch dynamic int8 of every Linear of the baseline (no ONNX form: timed in torch)."""
    quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(bench.teacher),
                                                       {nn.Linear}, dtype=torch.qint8)
    path = bench.file("dynamic-int8.pt")
    torch.save(quantized.state_dict(), path)
    loaded = torch.ao.quantization.quantize_dynamic(copy.deepcopy(bench.teacher),
                                                    {nn.Linear}, dtype=torch.qint8)
    loaded.load_state_dict(torch.load(path, weights_only=False))
    loaded.eval()
    return Candidate("torch-dynamic-int8", "baseline dynamic int8", loaded, path,
                     bench.quality(loaded), "quantize_dynamic Linear qint8", forms=())


def timed(bench: Bench, name: str, build) -> Any:
    """Run one method's builder, recording its wall time; a failure is recorded, not raised."""
    started = time.perf_counter()
    try:
        result = build()
    except Exception as exc:  # a method that fails is reported as such; the others go on
        bench.notes[name] = f"failed: {type(exc).__name__}: {exc}"[:400]
        print(f"[compare] {name} failed: {exc!r}", flush=True)
        result = []
    bench.walls[name] = time.perf_counter() - started
    print(f"[compare] {name}: {bench.walls[name]:.1f} s", flush=True)
    return result if isinstance(result, list) else [result]
