"""Measure the quickstart search: wall time, per-trial overhead, baseline vs the Pareto front.

Usage: python benchmarks/quickstart.py [RECIPE] [--trials N]
Runs in a temporary folder (its own MLflow store and Ray storage) and prints a Markdown report.
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

from autocompress.recipe import Recipe
from autocompress.search import apply_overrides, run_search
from autocompress.tracking import load_search

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
    report(recipe, summary, search)


def report(recipe, summary, search) -> None:
    own = [t.metrics.get("time_total_s") or t.metrics.get("time_profile_s", 0.0)
           for t in search.trials if t.status in ("completed", "infeasible")]
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
              f"trial's own work (completed + infeasible) -> overhead "
              f"{slots - statistics.mean(own):.2f} s per trial")
    print(f"- hypervolume (baseline-normalised): {summary.hypervolume:.4f}\n")
    print("| model | accuracy | latency_ms (median) | size_kb (artifact) | params | MACs |")
    print("|---|---|---|---|---|---|")
    b = summary.baseline
    print(f"| baseline | {b['accuracy']:.4f} | {b['latency_ms']:.3f} | {b['size_kb']:.1f} | "
          f"{b['params']:.0f} | {b['macs']:.0f} |")
    for t in search.front():
        m = t.metrics
        print(f"| trial {t.trial_id} | {m['accuracy']:.4f} | {m['latency_ms']:.3f} | "
              f"{m['size_kb']:.1f} | {m['params']:.0f} | {m['macs']:.0f} |")


if __name__ == "__main__":
    main()
