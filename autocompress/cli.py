"""The command line: search, pareto, pick. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from autocompress.errors import AutocompressError

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autocompress``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AutocompressError as exc:
        print(f"autocompress: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("autocompress: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocompress",
        description="Search per-layer compression of a PyTorch model under hardware budgets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run a compression search (Ray Tune + Optuna, MLflow)")
    s.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    s.add_argument("--trials", type=int, help="number of candidates (overrides the recipe)")
    s.add_argument("--concurrency", type=int, help="trials run at once")
    s.add_argument("--sampler", help="tpe, nsga2 or random")
    s.add_argument("--seed", type=int)
    s.add_argument("--budget", action="append", default=[], metavar="EXPR",
                   help="e.g. size_kb<=60 or latency_ms<=2 (repeatable; adds to the recipe's)")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: the recipe's)")
    s.add_argument("--experiment", help="MLflow experiment name (default: the recipe's)")
    s.add_argument("--ray-address", help="attach to a running Ray cluster")
    s.add_argument("--quiet", action="store_true", help="no Ray Tune status table")
    s.set_defaults(func=_search)

    p = sub.add_parser("pareto", help="show the Pareto front of the last search of an experiment")
    _tracking_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--all", action="store_true", help="list every trial, not only the front")
    p.add_argument("--plans", action="store_true", help="add each trial's plan to the table")
    p.set_defaults(func=_pareto)

    k = sub.add_parser("pick", help="choose a Pareto model under budgets and write its artifact")
    _tracking_args(k)
    k.add_argument("--budget", action="append", default=[], metavar="EXPR")
    k.add_argument("--maximize", default="accuracy", help="metric to maximise (default accuracy)")
    k.add_argument("--output", required=True, help="where to write the compressed artifact")
    k.set_defaults(func=_pick)

    i = sub.add_parser("inspect", help="per-layer bytes and structure of a compressed artifact")
    i.add_argument("artifact", help="a .acz file written by pick or save_compressed")
    i.add_argument("--format", choices=("table", "json"), default="table")
    i.set_defaults(func=_inspect)
    return parser


def _tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="MLflow experiment name, e.g. quickstart")
    p.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    p.add_argument("--run-id", help="a specific search run (default: the latest)")


def _search(args: argparse.Namespace) -> int:
    from autocompress.recipe import Recipe
    from autocompress.search import apply_overrides, run_search

    recipe = apply_overrides(
        Recipe.from_yaml(args.recipe), trials=args.trials, concurrency=args.concurrency,
        sampler=args.sampler, seed=args.seed, budgets=args.budget, uri=args.tracking_uri,
        experiment=args.experiment,
    )
    summary = run_search(recipe, ray_address=args.ray_address, verbose=0 if args.quiet else 1)
    from autocompress.report import print_summary

    print_summary(summary)
    return 0


def _pareto(args: argparse.Namespace) -> int:
    from autocompress.report import front_json, print_front
    from autocompress.tracking import load_search

    search = load_search(args.tracking_uri, args.experiment, args.run_id)
    if args.format == "json":
        print(json.dumps(front_json(search, include_all=args.all), indent=2))
    else:
        print_front(search, include_all=args.all, plans=args.plans)
    return 0


def _pick(args: argparse.Namespace) -> int:
    from autocompress.hardware import parse_budgets
    from autocompress.tracking import pick

    budgets = parse_budgets(args.budget)
    chosen = pick(args.tracking_uri, args.experiment, budgets, args.maximize, args.output,
                  args.run_id)
    metrics = {k: chosen.metrics.get(k) for k in ("accuracy", "latency_ms", "size_kb")}
    print(json.dumps({"trial": chosen.trial_id, "run_id": chosen.run_id,
                      "output": args.output, **metrics}))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from autocompress.export import read_spec, size_breakdown

    sizes, spec = size_breakdown(args.artifact), read_spec(args.artifact)
    total = sum(sizes.values())
    kinds = {m["name"]: m["type"] for m in spec["modules"]}
    rows = [{"layer": name, "type": kinds.get(name, ""), "bytes": size,
             "share": size / total} for name, size in sizes.items()]
    if args.format == "json":
        print(json.dumps({"bytes": total, "base": spec["base"], "layers": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.artifact}: {total:,} bytes ({total / 1024:.1f} KB)")
    for column in ("layer", "type", "bytes", "share"):
        table.add_column(column, justify="right" if column in ("bytes", "share") else "left")
    for row in rows:
        table.add_row(row["layer"], row["type"], f"{row['bytes']:,}", f"{row['share']:.1%}")
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
