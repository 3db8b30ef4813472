"""After the searches: time every candidate in ONE interleaved session, then test them.

Each candidate gets its ONNX Runtime forms (the float graph, the static int8 QDQ graph calibrated on
training inputs and the dynamic int8 graph, as ``int8: auto`` does) and its eager PyTorch form.
Rounds go round-robin over every (candidate, form) pair, starting one pair later each round so no
candidate is always timed first or last; a round's figure is the median of its runs, the reported
latency the median over rounds. Every ORT form is scored on the **test** split and reported as a
point of its own (the candidate was chosen on val before this): an int8 graph is often faster but
less accurate than its float graph (static activation ranges most of all), so none may stand for
another.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from autocompress import deployable
from autocompress.export.onnx import export_onnx
from autocompress.hardware.onnxruntime import session

# a candidate's form name -> export_onnx's int8 argument
_INT8 = {"float": False, "int8": True, "dynamic": "dynamic"}


def _ort_runner(path: Path, example: torch.Tensor, threads: int) -> tuple[Callable, object]:
    s = session(path, threads)
    feed = {s.get_inputs()[0].name: example.numpy()}
    return (lambda: s.run(None, feed)), s


def _torch_runner(model, example: torch.Tensor) -> Callable:
    def run():
        with torch.inference_mode():
            model(example)
    return run


def prepare(candidates, bench, folder: Path) -> dict[tuple[int, str], tuple[Callable, object]]:
    """Runners of every candidate's forms: ``(index, 'ort-<form>'|'torch')``."""
    hw = bench.recipe.hardware
    example = bench.splits.example_inputs(hw.batch_size, "val")
    calibration = bench.splits.example_inputs(bench.suite.calibration, "train")
    runners: dict[tuple[int, str], tuple[Callable, object]] = {}
    for i, c in enumerate(candidates):
        try:
            if c.onnx is not None:
                runners[(i, f"ort-{c.forms[0]}")] = _ort_runner(c.onnx, example, hw.threads)
            elif c.model is not None:
                for form in c.forms:
                    path = folder / f"{i}-{form}.onnx"
                    export_onnx(c.model, bench.example, path, int8=_INT8[form],
                                calibration=calibration if form == "int8" else None)
                    runners[(i, f"ort-{form}")] = _ort_runner(path, example, hw.threads)
            if c.model is not None:
                deployed = deployable(c.model) if c.path.suffix == ".acz" else c.model
                runners[(i, "torch")] = (_torch_runner(deployed.eval(), example), deployed)
        except Exception as exc:  # e.g. an int8 export that fails: that form is left out
            c.figures.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}"[:200])
    return runners


def interleaved(runners: dict, rounds: int, runs: int, warmup: int) -> dict:
    """Median-of-rounds latency (ms) of every runner, timed round-robin in one session."""
    keys = list(runners)
    per_round: dict = {k: [] for k in keys}
    for r in range(rounds):
        shift = r % max(len(keys), 1)
        for key in keys[shift:] + keys[:shift]:
            run = runners[key][0]
            for _ in range(warmup):
                run()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                run()
                times.append((time.perf_counter() - t0) * 1e3)
            per_round[key].append(statistics.median(times))
    return {k: {"ms": statistics.median(v), "min": min(v), "max": max(v)}
            for k, v in per_round.items()}


def ort_quality(sess, splits, batch: int) -> float:
    """Top-1 accuracy of an ONNX Runtime session on the test split."""
    name = sess.get_inputs()[0].name
    correct = total = 0
    for x, y in splits.batches("test", batch):
        logits = sess.run(None, {name: x.numpy()})[0]
        correct += int((np.argmax(logits, axis=1) == y.numpy()).sum())
        total += len(y)
    return correct / total


def measure(candidates, bench, rounds: int, runs: int, warmup: int) -> dict:
    """Time every candidate interleaved, then score each one's ORT form(s) and torch on test."""
    folder = bench.workdir / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(bench.recipe.hardware.threads)
    runners = prepare(candidates, bench, folder)
    started = time.perf_counter()
    latencies = interleaved(runners, rounds, runs, warmup)
    timing_s = time.perf_counter() - started
    for i, c in enumerate(candidates):
        forms = {k[1]: v for k, v in latencies.items() if k[0] == i}
        c.figures["latency"] = forms
        c.figures["ort"] = {
            form.removeprefix("ort-"): {
                "ms": v["ms"],
                "test_quality": ort_quality(runners[(i, form)][1], bench.splits,
                                            bench.suite.test_batch)}
            for form, v in forms.items() if form.startswith("ort-")}
        if "torch" in forms:
            c.figures["torch_ms"] = forms["torch"]["ms"]
            c.figures["torch_test_quality"] = bench.quality(c.model, "test")
    return {"timing_s": timing_s, "entries": len(runners), "rounds": rounds, "runs": runs}
