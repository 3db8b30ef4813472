"""Issue 10's benchmark runner: per-layer search vs uniform, random and the peer tools.

Usage:
    python -m benchmarks.compare --suite lenet5|minilm|all --mode quick|full [--trials N]
        [--out benchmarks/results/compare_<suite>.md] [--workdir DIR] [--rounds R]

For one model, in one run, from the SAME trained baseline and with the same trial count and
fine-tune epochs: the uncompressed model; a uniform sweep (one prune ratio and one bit width for
every layer, each point fine-tuned like a trial); random search, TPE and NSGA-II over the same
per-layer space (``run_search`` with ``search.sampler``); Torch-Pruning's uniform 50 % (fine-tuned
the same way); ONNX Runtime static int8 of the baseline (calibrated on train) and its dynamic int8;
PyTorch dynamic int8 (MiniLM). Then every front member of every method is timed in one interleaved
session (``measure.py``) and scored on the test split, and the report (Markdown + PNG plots) is
written and logged to MLflow (experiment ``benchmark-<suite>``, sqlite store in the work folder).

Quick mode (CI): a tiny CNN on 8x8 digits, 2 trials per method, 1 epoch, few timing runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.compare import candidates as build
from benchmarks.compare.measure import measure
from benchmarks.compare.report import markdown, plots, versions
from benchmarks.compare.scores import goals, hypervolumes, rows_of
from benchmarks.compare.suites import ROOT, SEARCHERS, SUITES, Suite


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    parser.add_argument("--suite", choices=[*SUITES, "all"], required=True)
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--trials", type=int, help="trials per search method (default: recipe's)")
    parser.add_argument("--out", type=Path, help="report path (default: results/compare_<suite>.md "
                        "in full mode, the work folder in quick mode)")
    parser.add_argument("--workdir", type=Path, help="MLflow store, Ray storage, models "
                        "(default /tmp/autocompress_bench/compare-<suite>-<mode>)")
    parser.add_argument("--rounds", type=int, help="interleaved timing rounds (full 7, quick 3)")
    return parser.parse_args(argv)


def make_bench(suite: Suite, mode: str, trials: int | None, workdir: Path) -> build.Bench:
    """Load the recipe, data and the one baseline (trained once and cached in ``workdir``)."""
    from autocompress import Recipe
    from autocompress.search import apply_overrides
    from autocompress.search.baseline import load_or_train
    from autocompress.search.trial import build_teacher, load_splits
    from autocompress.tracking import init_store

    recipe_path = suite.quick_recipe if mode == "quick" else suite.recipe
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    storage = workdir / "runs"
    recipe = apply_overrides(Recipe.from_yaml(recipe_path), uri=uri, storage=str(storage))
    init_store(uri)  # in the driver, before any trial process opens it
    started = time.perf_counter()
    # rebuilt from its weights, as every trial does: a model fresh out of training (first
    # run) is not traced by Torch-Pruning's dependency graph
    teacher = build_teacher(recipe, load_or_train(recipe, storage).state_dict())
    bench = build.Bench(suite, recipe, mode, trials or recipe.search.trials, workdir,
                        load_splits(recipe), teacher, storage, uri)
    bench.walls["baseline (train or load)"] = time.perf_counter() - started
    bench.notes["recipe"] = str(Path(recipe_path).relative_to(ROOT))
    return bench


def build_all(bench: build.Bench) -> list[build.Candidate]:
    """Every method's candidates, in a fixed order (one Ray for the three searches)."""
    import ray

    out = build.timed(bench, "baseline", lambda: build.baseline(bench))
    out += build.timed(bench, "uniform", lambda: build.uniform(bench))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        for sampler in SEARCHERS:
            out += build.timed(bench, sampler, lambda s=sampler: build.searched(bench, s))
    finally:
        ray.shutdown()  # the timing session runs without Ray's processes
    out += build.timed(bench, "torch-pruning", lambda: build.torch_pruning(bench))
    out += build.timed(bench, "ort-int8", lambda: build.ort_int8(bench))
    out += build.timed(bench, "ort-dynamic-int8", lambda: build.ort_dynamic_int8(bench))
    if bench.suite.dynamic_int8:
        out += build.timed(bench, "torch-dynamic-int8", lambda: build.dynamic_int8(bench))
    return out


def run_suite(suite: Suite, args: argparse.Namespace) -> Path:
    """Run one suite end to end and return the report's path."""
    started = time.perf_counter()
    workdir = (args.workdir or Path(f"/tmp/autocompress_bench/compare-{suite.name}-{args.mode}"))
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or (ROOT / "benchmarks/results" / f"compare_{suite.name}.md"
                       if args.mode == "full" else workdir / f"compare_{suite.name}.md")
    out = out.resolve()
    os.chdir(workdir)  # MLflow's artifact folder and Ray's outputs stay in the work folder
    bench = make_bench(suite, args.mode, args.trials, workdir)
    found = build_all(bench)
    full = args.mode == "full"
    rounds = args.rounds or (7 if full else 3)
    runs = 10 if suite.name == "minilm" else 20
    timing = measure(found, bench, rounds, runs if full else 3, 3 if full else 1)
    rows = rows_of(found)
    base = next(r for r in rows if r.method == "baseline")
    n_test = len(bench.splits.test) if bench.splits.test is not None else 0
    hv = hypervolumes(rows, base, suite.tolerance, n_test)
    out.parent.mkdir(parents=True, exist_ok=True)
    pngs = plots(rows, base, out.parent, out.stem)
    for c in found:
        if c.figures.get("errors"):
            bench.notes[f"{c.method} {c.label}"] = "; ".join(c.figures["errors"])
    for name, summary in bench.searches.items():
        bench.notes[f"search {name}"] = (
            f"{summary.trials} trials, statuses {summary.statuses}, front {len(summary.front)}, "
            f"wall {summary.wall_s:.0f} s (set-up {summary.setup_s:.0f} s, Ray Tune "
            f"{summary.tune_s:.0f} s)")
    ctx = facts(bench, args, suite, rows, base, hv, pngs, timing,
                time.perf_counter() - started)
    out.write_text(markdown(ctx))
    sidecar = out.with_suffix(".json")
    sidecar.write_text(json.dumps(summary_json(ctx), indent=1, default=str))
    log_mlflow(bench, ctx, [out, sidecar, *pngs])
    print(f"[compare] report: {out}", flush=True)
    return out


def facts(bench, args, suite, rows, base, hv, pngs, timing, wall) -> dict:
    recipe = bench.recipe
    return {
        "suite": suite, "mode": args.mode, "rows": rows, "base": base, "hv": hv,
        "goals": goals(rows, base, suite, hv), "plots": pngs, "timing": timing,
        "walls": bench.walls, "wall": wall, "notes": bench.notes, "versions": versions(),
        "command": "python -m benchmarks.compare " + " ".join(sys.argv[1:]),
        "recipe_path": bench.notes.get("recipe"), "space": recipe.space,
        "seed": recipe.search.seed, "trials": bench.trials,
        "grid": len(suite.grid if args.mode == "full" else suite.quick_grid),
        "epochs": recipe.training.epochs, "limit": recipe.training.limit_train_batches,
        "threads": recipe.hardware.threads, "batch": recipe.hardware.batch_size,
        "experiment": f"benchmark-{suite.name}", "uri": bench.uri,
    }


def summary_json(ctx: dict) -> dict:
    """The report's figures as data (rows, hypervolumes, goals, wall times)."""
    return {"suite": ctx["suite"].name, "mode": ctx["mode"], "trials": ctx["trials"],
            "rows": [dataclasses.asdict(r) for r in ctx["rows"]], "hypervolume": ctx["hv"],
            "goals": ctx["goals"], "walls": ctx["walls"], "wall_s": ctx["wall"],
            "plots": [str(p) for p in ctx["plots"]], "notes": ctx["notes"]}


def log_mlflow(bench, ctx: dict, files: list[Path]) -> None:
    """One parent run per benchmark, a child run per member, the report and plots attached."""
    import mlflow

    mlflow.set_tracking_uri(bench.uri)
    mlflow.set_experiment(ctx["experiment"])
    base = ctx["base"]
    with mlflow.start_run(run_name=f"{ctx['suite'].name}-{ctx['mode']}"):
        mlflow.log_params({"suite": ctx["suite"].name, "mode": ctx["mode"],
                           "trials": ctx["trials"], "seed": ctx["seed"],
                           "epochs": ctx["epochs"], "versions": ctx["versions"][:500]})
        metrics = {"wall_s": ctx["wall"]}
        for method, h in ctx["hv"].items():
            metrics.update({f"hv/{method}": h["hv"], f"hv_tol/{method}": h["hv_tol"]})
        for name, seconds in ctx["walls"].items():
            metrics[f"wall_s/{name.split(' ')[0]}"] = seconds
        mlflow.log_metrics(metrics)
        for r in ctx["rows"]:
            with mlflow.start_run(run_name=f"{r.method}:{r.label}"[:250], nested=True):
                mlflow.log_params({"method": r.method, "member": r.label, "ort_form": r.ort_form,
                                   "plan": r.plan[:500] or "-"})
                values = {"test_error": r.error, "size_bytes": float(r.size),
                          "ratio": base.size / r.size}
                if r.ort_ms:
                    values.update(ort_ms=r.ort_ms, speedup=base.ort_ms / r.ort_ms)
                if r.torch_ms:
                    values["torch_ms"] = r.torch_ms
                mlflow.log_metrics(values)
        for f in files:
            mlflow.log_artifact(str(f))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    names = list(SUITES) if args.suite == "all" else [args.suite]
    for name in names:
        run_suite(SUITES[name], args)


if __name__ == "__main__":
    main()
