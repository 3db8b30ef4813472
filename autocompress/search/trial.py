"""One trial: plan -> compressed student -> profile -> budget check -> fine-tune -> artifact.

The trial is plain code with an injected ``report`` function, so it runs the same under Ray
Tune (``tune.report``) and in tests (a list). A candidate that breaks a budget is reported at
once as infeasible and never trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.data import DataSplits, as_args, load_data
from autocompress.export import load_compressed, save_compressed
from autocompress.export.onnx import graph_form
from autocompress.hardware import Budget, is_feasible, violations
from autocompress.hardware.measurement import current_node
from autocompress.hardware.quiet import quiet_node
from autocompress.hardware.timing import chosen_form
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.recipe import Recipe
from autocompress.search.failures import Diverged, check_finite, check_loss, failure_result
from autocompress.search.results import TrialResult, TrialStatus, violation_name
from autocompress.search.student import build_student
from autocompress.space import BoundSpace
from autocompress.tracking.config import ARTIFACT_NAME
from autocompress.training import evaluate
from autocompress.zoo import build_model

Report = Callable[[dict[str, Any], "str | None"], None]


@dataclass(frozen=True)
class SearchContext:
    """What every trial needs, built once by the driver and shipped through Ray's object store."""

    recipe: Recipe
    teacher_state: dict[str, torch.Tensor]
    space: BoundSpace
    output_layers: frozenset[str]
    budgets: tuple[Budget, ...]
    latency_table: Any = None  # a LatencyTable when hardware.predict (hardware/lut/predictor.py)
    baseline: dict[str, float] | None = None  # its metrics: paired latencies anchor to them
    student_state: dict[str, torch.Tensor] | None = None  # model.student's initial weights


@functools.lru_cache(maxsize=4)
def _cached_splits(name: str, kwargs: str, label_key: str | None) -> DataSplits:
    return load_data(name, json.loads(kwargs), label_key)


def load_splits(recipe: Recipe) -> DataSplits:
    """The recipe's data, cached per process (reused actors don't load it again).

    The recipe's folder is importable first (appended to ``sys.path``, in the driver and in
    every Ray worker), so a data or model module next to the recipe resolves.
    """
    importable(recipe.base_dir)
    kwargs = json.dumps(recipe.data.kwargs, sort_keys=True, default=str)
    return _cached_splits(recipe.data.name, kwargs, recipe.data.label_key)


def importable(folder: str) -> None:
    """Make modules in ``folder`` importable, after the standard library and site-packages.

    Appended, not prepended: a file in a recipe's folder named like a standard module (e.g.
    ``timeit.py``) must not shadow it.
    """
    folder = str(Path(folder).resolve())
    if folder not in sys.path:
        sys.path.append(folder)


def quality(model: nn.Module, splits: DataSplits, recipe: Recipe, split: str = "val") -> float:
    """The recipe's quality metric of ``model`` on ``split`` (val selects; test only reports)."""
    return evaluate(model, splits.fixed_loader(split), metric=recipe.metric,
                    label_key=splits.label_key)


def deployed_form(recipe: Recipe, measured: Mapping[str, float]) -> str:
    """The ONNX graph form whose latency ``measured`` reports: float, static or dynamic int8.

    ``float`` also for targets that are not ``cpu-onnxruntime`` (the PyTorch model itself).
    """
    hw = recipe.hardware
    if hw.kind() != "cpu-onnxruntime" or not hw.int8:
        return "float"
    if hw.int8 == "auto":
        return chosen_form(measured)
    return graph_form(hw.int8)


def times_int8(recipe: Recipe, measured: Mapping[str, float]) -> bool:
    """Whether the latency reported for ``measured`` is an int8 ONNX graph's (default target)."""
    return deployed_form(recipe, measured) != "float"


def deployed_quality(model: nn.Module, splits: DataSplits, recipe: Recipe,
                     measured: Mapping[str, float], split: str = "val") -> float:
    """The quality of the form whose latency is reported: ``model``, or its int8 ONNX graph.

    With ``hardware.int8`` set, or ``auto`` where an int8 graph timed fastest, the latency is
    that graph's (static QDQ with activation ranges calibrated on train, or dynamic), so its
    quality must be that graph's too: int8 can cost points that the PyTorch model does not show.
    """
    form = deployed_form(recipe, measured)
    if form == "float":
        return quality(model, splits, recipe, split)
    from autocompress.hardware.onnxruntime import graph_module

    example = example_inputs(model, splits, 1)
    example = example[0] if isinstance(example, tuple) and len(example) == 1 else example
    calibration = (_calibration(model, splits, recipe.training.calibration_samples)[0]
                   if form == "static" else None)
    graph = graph_module(model, example, int8=form, calibration=calibration)
    return quality(graph, splits, recipe, split)


def example_inputs(model: nn.Module, splits: DataSplits, n: int) -> Any:
    """``n`` validation inputs as ``model``'s positional arguments (never the test split)."""
    return as_args(model, splits.example_inputs(n, "val"))


def build_teacher(recipe: Recipe, state: dict[str, torch.Tensor]) -> nn.Module:
    """The uncompressed, trained model."""
    model = build_model(recipe.model.name, **recipe.model.kwargs)
    model.load_state_dict(state)
    return model.eval()


def measure(model: nn.Module, splits: DataSplits, recipe: Recipe,
            extra: dict | None = None,
            budgets: tuple[Budget, ...] | None = None) -> dict[str, float]:
    """Profile ``model`` on every target (see :func:`measure_on_targets`): metrics only."""
    return measure_on_targets(model, splits, recipe, extra, budgets)[0]


def measure_on_targets(model: nn.Module, splits: DataSplits, recipe: Recipe,
                       extra: dict | None = None, budgets: tuple[Budget, ...] | None = None,
                       reference: nn.Module | None = None,
                       baseline: dict[str, float] | None = None,
                       ) -> tuple[dict[str, float], dict[str, str]]:
    """Profile ``model`` as the baseline and every candidate are (hardware/targets.py).

    On the recipe's default target and on every further target a budget names (``budgets``,
    by default the recipe's), timing a batch of validation inputs; int8 targets calibrate on
    training inputs. ``reference`` / ``baseline`` pair and anchor the timings as in
    :func:`autocompress.hardware.targets.measure_on_targets`.
    """
    from autocompress.hardware.targets import measure_on_targets as on_targets

    budgets = recipe.parsed_budgets() if budgets is None else budgets
    return on_targets(
        model, example_inputs(model, splits, recipe.hardware.batch_size), recipe.hardware,
        recipe.hardware.target_names(budgets), extra=extra, reference=reference,
        baseline=baseline,
        calibration=lambda: _calibration(model, splits, recipe.training.calibration_samples)[0])


def run_trial(config: dict[str, Any], ctx: SearchContext, report: Report) -> None:
    """Run one candidate end to end, reporting each epoch and a final result.

    Every report is a :class:`TrialResult` in its flat form (:meth:`TrialResult.to_report`).
    A candidate that cannot be built or trained (an error in its plan, its training or its
    export) ends with a final ``failed`` result naming the error and the tail of its
    traceback; one whose loss or weights turn NaN/inf ends ``diverged`` with the epoch. Either
    way the search goes on and does not retry it. Infrastructure failures (a Ray worker or
    node lost) propagate, so Tune retries the trial (``search.max_failures``).
    """
    try:
        _run_trial(config, ctx, report)
    except Exception as exc:
        if _is_infrastructure(exc):
            raise
        worst = {ctx.recipe.metric.key: ctx.recipe.metric.worst, "latency_ms": math.nan,
                 "size_kb": math.nan}
        report(failure_result(exc, worst, {"node": current_node()}).to_report(), None)


def _is_infrastructure(exc: BaseException) -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and isinstance(exc, ray.exceptions.RayError)


def artifact_extra(plan: CompressionPlan, recipe: Recipe, example: Any) -> dict[str, Any]:
    """What the artifact's header records: plan, recipe, input shape and source trial."""
    extra: dict[str, Any] = {"plan": plan.to_dict(), "recipe": recipe.name,
                             "metric": {"key": recipe.metric.key, "mode": recipe.metric.mode}}
    first = example[0] if isinstance(example, (tuple, list)) and len(example) == 1 else example
    if isinstance(first, torch.Tensor):
        extra["input_shape"] = list(first.shape[1:])
    trial = _tune_trial_id()
    if trial:
        extra["trial"] = trial
    return extra


def _tune_trial_id() -> str | None:
    """The Tune trial this process runs, when it runs one."""
    if "ray" not in sys.modules:
        return None
    try:
        from ray import tune

        return tune.get_context().get_trial_id()
    except Exception:  # noqa: BLE001  (outside a trial: no context)
        return None


def named_violations(budgets: tuple[Budget, ...], values: list[float]) -> dict[str, float]:
    """Each budget's violation keyed ``violation/<budget key>``, in the budgets' order."""
    named: dict[str, float] = {}
    for budget, value in zip(budgets, values, strict=True):
        named[violation_name(budget.key, named)] = float(value)
    return named


def broken_budgets(budgets: tuple[Budget, ...], values: list[float],
                   measured: dict[str, float]) -> str:
    """Which budgets a candidate breaks and what it measured, e.g. ``size_kb<=60 (75.3)``."""
    return ", ".join(f"{b} ({measured.get(b.key, math.nan):.4g})"
                     for b, v in zip(budgets, values, strict=True) if v > 0)


def _run_trial(config: dict[str, Any], ctx: SearchContext, report: Report) -> None:
    recipe, started = ctx.recipe, time.perf_counter()
    plan = ctx.space.plan(config)
    splits = load_splits(recipe)
    teacher = build_teacher(recipe, ctx.teacher_state)
    # the plan applies to model.student when the recipe has one, else to the teacher itself;
    # the artifact is rebuilt on it (base=: nothing named in the file is imported)
    original = teacher if ctx.student_state is None else build_student(recipe,
                                                                       ctx.student_state)
    predicted = None
    if ctx.latency_table is not None:
        predicted = _screen(plan, original, splits, ctx, report, started)
        if predicted is None:
            return  # rejected on its predicted latency: never built
    calibration = _calibration(original, splits, recipe.training.calibration_samples)
    student = apply_plan(original, plan, example_inputs(original, splits, 1), ctx.output_layers,
                         calibration)
    extra = artifact_extra(plan, recipe, example_inputs(original, splits, 1))  # in the file
    costs, nodes = measure_on_targets(
        student, splits, recipe, extra, ctx.budgets,
        reference=teacher if recipe.hardware.paired and ctx.baseline else None,
        baseline=ctx.baseline)
    constraints = _untrained_violations(ctx.budgets, costs, recipe.metric.key)
    measured = {**costs, "time_profile_s": time.perf_counter() - started}
    if predicted is not None:
        measured.update(latency_predicted_ms=predicted,
                        latency_prediction_error=predicted / costs["latency_ms"] - 1)
    start = TrialResult(TrialStatus.RUNNING, measured, named_violations(ctx.budgets, constraints),
                        final=False, nodes={"node": current_node(), **nodes})
    if not is_feasible(constraints):
        with _work(recipe):
            value = quality(student, splits, recipe)  # cheap, and tells what was given up
        reason = "breaks " + broken_budgets(ctx.budgets, constraints, costs) + " untrained"
        report(TrialResult(TrialStatus.INFEASIBLE, {**measured, recipe.metric.key: value},
                           start.violations, reason=reason, nodes=start.nodes).to_report(), None)
        return
    _fine_tune(student, teacher, splits, plan, ctx, start, report)
    check_finite(student, recipe.training.epochs)  # NaN weights: diverged, not an export error
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ARTIFACT_NAME
        size = save_compressed(student, path, extra=extra)  # coded sizes depend on the values
        loaded = load_compressed(path, base=original)
        int8 = times_int8(recipe, costs)
        with _work(recipe):  # the artifact's quality, as users get it (in the form timed)
            value = quality(loaded, splits, recipe)
            deployed = deployed_quality(loaded, splits, recipe, costs) if int8 else value
        final = {**costs, "size_bytes": float(size), "size_kb": size / 1024,
                 recipe.metric.key: deployed}
        if int8:  # what the PyTorch model itself scores, for comparison
            final[f"{recipe.metric.key}_pytorch"] = value
        constraints = violations(ctx.budgets, final)
        result = TrialResult(
            TrialStatus.COMPLETED,
            {**measured, **final, "time_total_s": time.perf_counter() - started},
            named_violations(ctx.budgets, constraints), epoch=recipe.training.epochs,
            nodes=start.nodes)
        if not result.feasible:
            result = result.with_status(TrialStatus.COMPLETED, "breaks " + broken_budgets(
                ctx.budgets, constraints, final) + " after training")
        report(result.to_report(), tmp)


def _work(recipe: Recipe):
    """Hold the node shared for a bounded unit of compute (an evaluation) when timings are quiet.

    Building a candidate is not held: a k-means or Hessian pass can outlast the timings'
    patience (``quiet_timeout_s``), which would then wait for nothing.
    """
    return quiet_node().work() if recipe.hardware.quiet else contextlib.nullcontext()


def _untrained_violations(budgets: tuple[Budget, ...], costs: dict[str, float],
                          metric: str) -> list[float]:
    """Budget violations of a candidate before training: its quality budget is not judged yet."""
    return [0.0 if b.key == metric else v
            for b, v in zip(budgets, violations(budgets, {**costs, metric: 0.0}), strict=True)]


def _screen(plan: CompressionPlan, teacher: nn.Module, splits: DataSplits,
            ctx: SearchContext, report: Report, started: float) -> float | None:
    """The plan's predicted latency, or None after reporting it rejected (never built)."""
    from autocompress.hardware.lut.predictor import latency_budgets, screen

    hw = ctx.recipe.hardware
    example = example_inputs(teacher, splits, hw.batch_size)
    predicted, _, rejected = screen(ctx.latency_table, teacher, plan, example, ctx.budgets,
                                    hw.reject_margin)
    if not rejected:
        return predicted
    decided = {id(b) for b in latency_budgets(ctx.budgets)}
    constraints = [b.violation(predicted) if id(b) in decided else 0.0 for b in ctx.budgets]
    metrics = {ctx.recipe.metric.key: ctx.recipe.metric.worst, "latency_ms": predicted,
               "predicted_only": 1.0, "latency_predicted_ms": predicted, "size_kb": math.inf,
               "time_profile_s": time.perf_counter() - started}
    reason = (f"predicted latency {predicted:.4g} ms breaks the latency budget by more than "
              f"the reject margin {hw.reject_margin:g}; not built")
    report(TrialResult(TrialStatus.INFEASIBLE, metrics,
                       named_violations(ctx.budgets, constraints), reason=reason,
                       nodes={"node": current_node()}).to_report(), None)
    return None


def _fine_tune(student, teacher, splits, plan: CompressionPlan, ctx: SearchContext,
               start: TrialResult, report: Report) -> None:
    recipe, t = ctx.recipe, ctx.recipe.training
    options = {"distillation": plan.distillation or t.distillation,
               "attention": plan.attention_transfer or t.attention_transfer,
               "hint": plan.hint or t.hint, "sparsity": plan.sparsity or t.sparsity,
               "output_layers": ctx.output_layers, "batch_size": recipe.data.batch_size,
               "seed": recipe.search.seed}
    if t.distributed.enabled:  # Ray Train workers; rank 0's epochs come back through report
        from autocompress.training import fine_tune_distributed

        storage = Path(recipe.search.storage).resolve() / "train"
        fine_tune_distributed(student, teacher, splits, t, t.distributed, report,
                              base=start.to_report(), storage_path=str(storage), **options)
        return
    fine_tune_with_reports(student, teacher, splits, ctx, start, report, options)


def fine_tune_with_reports(student, teacher, splits, ctx: SearchContext, start: TrialResult,
                           report: Report, options: dict[str, Any]) -> None:
    """Fine-tune on one process, reporting each epoch; NaN/inf loss or metric: :class:`Diverged`."""
    import pytorch_lightning as pl

    from autocompress.training import fine_tune

    recipe, key = ctx.recipe, ctx.recipe.metric.key

    class EpochReport(pl.Callback):
        """Report the validation metric each epoch so the scheduler can stop weak candidates.

        Read at ``on_validation_end``: a metric that is not a mean over samples is logged in
        the module's own epoch-end hook, which runs after the callbacks' one.
        """

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            check_loss(outputs, trainer.current_epoch + 1)

        def on_validation_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            value, epoch = float(trainer.callback_metrics[f"val_{key}"]), trainer.current_epoch + 1
            if not math.isfinite(value):
                raise Diverged(f"the validation {key}", epoch)
            report(dataclasses.replace(start, metrics={**start.metrics, key: value},
                                       epoch=epoch).to_report(), None)

    fine_tune(student, teacher, splits, recipe.training, callbacks=[EpochReport()],
              quiet=recipe.hardware.quiet, metric=recipe.metric, **options)


def _calibration(model: nn.Module, splits: DataSplits, samples: int):
    """A fixed batch of training data for data-aware methods (importance, least squares).

    Always the train split: calibration, importance scores and int8 ranges never see val/test.
    """
    x, y = splits.sample(samples, "train")
    return as_args(model, x), y
