"""Latency lookup table: predicted vs measured latency of random plans, and measured speed-ups.

For each model (LeNet-5 on the full CNN space, the MiniLM text classifier on the transformer
space) and each target: 30 random plans are sampled; their kernels are derived *without building
the plans* and measured in isolation into a LatencyTable; the plans are then built and measured
with the target's timing loop. Every model is timed in ROUNDS rounds, each round going over all
of them and alternating with a round over all kernels of the table (so a model's or a kernel's
rounds lie minutes apart): the lowest median is the measurement (other processes on the machine
only add time) and max/min - 1 of a model's medians is its run-to-run noise. The residual of the
table is calibrated on measurements taken the same way: of the base model alone, then of the base
model and unfitted skeletons of 5 other plans (sampled with another seed); these calibration
models are timed every 10 plans in each round. Last, the
measured speed-up of 50 % structured pruning and of int8 (ONNX Runtime QDQ) against the baseline.

Usage: python benchmarks/latency_predictor.py [--plans 30] [--models lenet5,minilm]
       [--targets cpu-torch,cpu-onnxruntime] [--tables DIR]
Weights need no training: latency does not depend on their values.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import onnxruntime
import optuna
import torch

from autocompress.export.onnx import export_onnx
from autocompress.hardware.lut import LatencyTable, cpu_model
from autocompress.hardware.lut.error import ErrorReport, ErrorRow
from autocompress.hardware.lut.kernels import plan_kernels, plan_skeleton, trace
from autocompress.hardware.onnxruntime import session
from autocompress.hardware.profilers import Protocol, get_profiler, repeat_until_stable
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers
from autocompress.space import SearchSpace, bind
from autocompress.zoo import build_model

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5
CALIBRATION_PLANS = 5  # besides the base model: skeletons of plans sampled with another seed
# Many runs per round (a LeNet-5 inference in ONNX Runtime takes ~30 us); min_runs per model.
MODEL_PROTOCOL = Protocol(warmup=20, min_runs=100, max_runs=2000, max_seconds=1.0,
                          target_spread=0.02)


def lenet5():
    model = build_model("lenet5").eval()
    x = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    calibration = (torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,)))
    prune = {n: {"prune": {"ratio": 0.5}} for n in ("features.0", "features.3",
                                                   "classifier.1", "classifier.3")}
    return model, x, calibration, "cnn_full.yaml", prune, 100  # ~0.03-0.5 ms: many runs


def minilm():
    model = build_model("minilm_classifier", num_classes=5, seq_len=64).eval()
    x = model.example_input(1)
    prune = {f"encoder.encoder.layer.{i}.intermediate.dense": {"prune": {"ratio": 0.5}}
             for i in range(6)}
    return model, x, None, "transformer_default.yaml", prune, 20  # ~10-20 ms


MODELS = {"lenet5": lenet5, "minilm": minilm}


def sample_plans(model, x, space_file: str, count: int, seed: int = 0) -> list[CompressionPlan]:
    bound = bind(SearchSpace.from_yaml(ROOT / "search_spaces" / space_file),
                 compressible_layers(model, x))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    plans = []
    for _ in range(count):
        trial = study.ask()
        constants = bound.sample(trial)  # before reading trial.params: sampling fills them
        plans.append(bound.plan({**trial.params, **constants}))
    return plans


def timer(target: str, model, x, tmp: Path, protocol: Protocol,
          **options) -> Callable[[], float]:
    """One timing (the profiler's loop and protocol) of ``model``; ONNX exported only once."""
    profiler = get_profiler(target, protocol=protocol, **options)
    if target != "cpu-onnxruntime":
        return lambda: profiler.time_runs(model, x)["latency_ms"]
    path = tmp / f"{id(model)}-{len(list(tmp.iterdir()))}.onnx"
    export_onnx(model, x, path, int8=profiler.int8, calibration=profiler.calibration)
    s = session(path, profiler.threads)
    feed = {s.get_inputs()[0].name: x.numpy()}
    return lambda: repeat_until_stable(lambda: s.run(None, feed), protocol)["latency_ms"]


def round_robin(timers: list[Callable[[], float]]) -> list[tuple[float, float]]:
    """(lowest median, max/min - 1) of each timer over ROUNDS rounds, a round over all."""
    medians = [[] for _ in timers]
    for _ in range(ROUNDS):
        for i, run in enumerate(timers):
            medians[i].append(run())
    return [(min(m), max(m) / min(m) - 1) for m in medians]


def benchmark(name: str, targets: list[str], count: int, tables: Path, tmp: Path) -> None:
    model, x, calibration, space, prune, min_runs = MODELS[name]()
    protocol = replace(MODEL_PROTOCOL, min_runs=min_runs)
    plans = sample_plans(model, x, space, count)
    references = sample_plans(model, x, space, CALIBRATION_PLANS, seed=1)
    start = time.perf_counter()
    traces = [plan_kernels(model, plan, x) for plan in plans]
    derive_s = time.perf_counter() - start
    start = time.perf_counter()
    built = [apply_plan(model, plan, x, calibration=calibration) for plan in plans]
    build_s = time.perf_counter() - start
    skeletons = [plan_skeleton(model, plan, x) for plan in references]
    print(f"{name}: {count} plans of `{space}`; kernels derived without building in "
          f"{derive_s:.1f} s, plans built in {build_s:.1f} s")
    for target in targets:
        lut = LatencyTable(target, rounds=1)  # its rounds are the phases below, minutes apart
        layers = [lk for t in (trace(model, x), *traces, *(trace(s, x) for s in skeletons))
                  for lk in t.layers]
        timers = [timer(target, m, x, tmp, protocol) for m in (model, *skeletons, *built)]
        medians: list[list[float]] = [[] for _ in timers]
        fill_s, measure_s = [], 0.0
        calibrating = list(range(1 + len(skeletons)))  # timed every 10 plans: they anchor all
        schedule = [*calibrating]
        for first in range(len(calibrating), len(timers), 10):
            schedule += [*range(first, min(first + 10, len(timers))), *calibrating]
        for phase in range(ROUNDS):  # kernels and models alternate: both see every period
            start = time.perf_counter()
            added = lut.fill(layers, [((tuple(x.shape), str(x.dtype)),)], refresh=phase > 0)
            fill_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for i in schedule:
                medians[i].append(timers[i]())
            measure_s += time.perf_counter() - start
        measured = [(min(m), max(m) / min(m) - 1) for m in medians]
        calibrated = [m for m, _ in measured[:1 + len(references)]]
        print(f"\n### {name} @ {target}\n")
        print(f"table: {added} kernels measured in {fill_s[0]:.0f} s (each timed again in "
              f"{ROUNDS - 1} later rounds: {sum(fill_s[1:]):.0f} s); base measured "
              f"{calibrated[0]:.3f} ms (noise {measured[0][1]:.1%}); measuring the built plans "
              f"took {measure_s:.0f} s\n")
        evaluated = measured[1 + len(references):]
        for label, refs in (("base model only", []), (f"base + {len(references)} plans",
                                                      references)):
            residual = lut.calibrate(model, x, refs, measured_ms=calibrated[:1 + len(refs)])
            start = time.perf_counter()
            predictions = [lut.predict_plan(model, plan, x, measure_missing=False)
                           for plan in plans]
            predict_s = time.perf_counter() - start
            assert all(p.complete for p in predictions)
            rows = tuple(ErrorRow(f"plan {i:02d}: {plan.summary()[:50]}", p.latency_ms, m, noise)
                         for i, (plan, p, (m, noise)) in enumerate(zip(plans, predictions,
                                                                       evaluated, strict=True)))
            report = ErrorReport(target, rows)
            print(f"residual calibrated on the {label}: {residual.constant_ms:+.3f} ms "
                  f"{residual.scale:+.1%} of the rest; {count} predictions in {predict_s:.1f} s: "
                  f"median |error| {report.median_abs_error():.1%}, "
                  f"{report.share_within():.0%} within +-10%")
        print()
        print(report.to_markdown())
        lut.save(tables / f"{name}-{target}.json")
    speedups(name, model, x, prune, tmp, protocol)


def speedups(name, model, x, prune, tmp: Path, protocol: Protocol) -> None:
    plan = CompressionPlan.from_dict({"layers": prune})
    pruned = apply_plan(model, plan, x)
    int8 = {"int8": True, "calibration": x}
    variants = [("cpu-torch", {}, model, "baseline"), ("cpu-torch", {}, pruned, "50% pruned"),
                ("cpu-onnxruntime", {}, model, "baseline"),
                ("cpu-onnxruntime", {}, pruned, "50% pruned"),
                ("cpu-onnxruntime", int8, model, "int8"),
                ("cpu-onnxruntime", int8, pruned, "50% pruned + int8")]
    measured = round_robin([timer(t, m, x, tmp, protocol, **o) for t, o, m, _ in variants])
    print(f"\n### {name}: measured speed-ups (lowest median of {ROUNDS} rounds, batch 1, "
          "1 thread)\n")
    print("| runtime | variant | measured ms | noise | speed-up vs float baseline |")
    print("|---|---|---|---|---|")
    base: dict[str, float] = {}
    for (target, options, _, label), (ms, noise) in zip(variants, measured, strict=True):
        base.setdefault(target, ms)
        print(f"| {target}{' int8 QDQ' if options else ''} | {label} | {ms:.3f} | {noise:.1%} "
              f"| {base[target] / ms:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plans", type=int, default=30)
    parser.add_argument("--models", default="lenet5,minilm")
    parser.add_argument("--targets", default="cpu-torch,cpu-onnxruntime")
    parser.add_argument("--tables", type=Path, default=None,
                        help="where to save the tables (a temporary directory by default)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"onnxruntime\..*")
    torch.manual_seed(0)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}; 1 intra-op thread, "
          f"batch 1; load average at start {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tables = args.tables or Path(tmp)
        tables.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            start = time.perf_counter()
            scratch = Path(tmp) / name
            scratch.mkdir()
            benchmark(name, args.targets.split(","), args.plans, tables, scratch)
            print(f"\n{name}: {time.perf_counter() - start:.0f} s in all; load average now "
                  f"{os.getloadavg()[0]:.1f}\n")


if __name__ == "__main__":
    main()
