"""Measure the quickstart search: wall time, per-trial overhead, baseline vs the Pareto front.

Usage: python benchmarks/quickstart.py [RECIPE] [--trials N]
Runs in a temporary folder (its own MLflow store and Ray storage) and prints a Markdown report.
After the search, every Pareto member's artifact (downloaded from MLflow) is timed again here,
alone, paired with the baseline, with the recipe's protocol: its latency ratio to the baseline
then ("re-timed") against the ratio logged during the search (while other trials trained)
checks that the logged latency is the model's own.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

import ray
import torch

from autocompress import load_compressed
from autocompress.hardware.targets import build_profiler
from autocompress.recipe import Recipe
from autocompress.search import apply_overrides, run_search
from autocompress.search.baseline import load_or_train
from autocompress.search.trial import load_splits
from autocompress.tracking import load_search
from autocompress.tracking.query import download_artifact

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "quickstart.yaml"))
    parser.add_argument("--trials", type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        recipe = apply_overrides(Recipe.from_yaml(args.recipe), trials=args.trials,
                                 uri=f"sqlite:///{tmp}/mlruns.db")
        recipe = recipe.replace(search={"storage": f"{tmp}/runs"})
        summary = run_search(recipe, verbose=0)
        search = load_search(recipe.tracking.uri, recipe.experiment, summary.parent_run_id)
        alone = retime(recipe, search, Path(tmp))
    report(recipe, summary, search, alone)


def retime(recipe, search, tmp: Path) -> dict[str, float]:
    """Each Pareto member's latency ratio to the baseline, timed alone and paired, now."""
    profiler = build_profiler(recipe.hardware)
    splits = load_splits(recipe)
    example = splits.val.tensors[0][: recipe.hardware.batch_size]
    baseline = load_or_train(recipe, Path(recipe.search.storage))  # cached by the search
    out = {}
    for t in search.front():
        path = download_artifact(recipe.tracking.uri, t.run_id, tmp / f"{t.trial_id}.acz")
        m = profiler.measure(load_compressed(path), example, reference=baseline)
        out[t.trial_id] = m.latency_ms / m.reference_latency_ms
    return out


def report(recipe, summary, search, alone: dict[str, float]) -> None:
    # every trial's own running time (Tune's time_total_s: pruned trials too, up to their stop)
    own = [t.metrics["time_total_s"] for t in search.trials if "time_total_s" in t.metrics]
    slots = recipe.search.concurrency * summary.tune_s / max(summary.trials, 1)
    print(f"## {recipe.name}: {summary.trials} trials, concurrency {recipe.search.concurrency}\n")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"ray {ray.__version__}")
    print(f"- wall time {summary.wall_s:.1f} s = set-up {summary.setup_s:.1f} s (data, baseline, "
          f"store) + Ray Tune {summary.tune_s:.1f} s (incl. Ray start)")
    print(f"- statuses: {summary.statuses}; {summary.infeasible_s:.2f} s spent on infeasible "
          "candidates (never trained)")
    if own:
        print(f"- per trial: {slots:.2f} s of a trial slot vs {statistics.mean(own):.2f} s of the "
              f"trial's own work (all {len(own)} trials) -> overhead "
              f"{slots - statistics.mean(own):.2f} s per trial")
    print(f"- hypervolume (baseline-normalised): {summary.hypervolume:.4f}\n")
    print("| model | accuracy | latency_ms (anchored) | raw median during the search | "
          "ratio to baseline (logged) | ratio re-timed alone | size_kb (artifact) | params | "
          "MACs | timed quietly |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    b = summary.baseline
    print(f"| baseline | {b['accuracy']:.4f} | {b['latency_ms']:.3f} | {b['latency_ms']:.3f} | "
          f"1 | 1 | {b['size_kb']:.1f} | {b['params']:.0f} | {b['macs']:.0f} | - |")
    for t in search.front():
        m = t.metrics
        print(f"| trial {t.trial_id} | {m['accuracy']:.4f} | {m['latency_ms']:.3f} | "
              f"{m.get('latency_measured_ms', m['latency_ms']):.3f} | "
              f"{m.get('latency_ratio', float('nan')):.3f} | {alone[t.trial_id]:.3f} | "
              f"{m['size_kb']:.1f} | {m['params']:.0f} | {m['macs']:.0f} | "
              f"{'yes' if m.get('quiet') else 'no'} |")


if __name__ == "__main__":
    main()
