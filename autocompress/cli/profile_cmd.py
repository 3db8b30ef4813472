"""The command line: search, submit, jobs, pareto, pick, inspect, profile.

User errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from autocompress.errors import ArtifactError, AutocompressError, ConfigError, invalid

EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autocompress``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AutocompressError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message wrapped
        print(f"autocompress: error: {message}", file=sys.stderr)
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
    s.add_argument("--resume", action="store_true",
                   help="continue the experiment's interrupted search from its saved state")
    s.add_argument("--storage", help="where Tune keeps the search's state (default: recipe's)")
    s.set_defaults(func=_search)

    from autocompress.cli_jobs import add_parsers

    add_parsers(sub)

    p = sub.add_parser("pareto", help="show the Pareto front of the last search of an experiment")
    _tracking_args(p)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--all", action="store_true", help="list every trial, not only the front")
    p.add_argument("--plans", action="store_true", help="add each trial's plan to the table")
    p.set_defaults(func=_pareto)

    k = sub.add_parser("pick", help="choose a Pareto model under budgets and write its artifact")
    _tracking_args(k)
    k.add_argument("--budget", action="append", default=[], metavar="EXPR")
    k.add_argument("--maximize", help="metric to maximise (default: the search's quality "
                                      "metric, in its own direction, e.g. the lowest mse)")
    k.add_argument("--output", required=True, help="where to write the compressed artifact")
    k.set_defaults(func=_pick)

    i = sub.add_parser("inspect", help="per-layer bytes and structure of a compressed artifact")
    i.add_argument("artifact", help="a .acz file written by pick or save_compressed")
    i.add_argument("--format", choices=("table", "json"), default="table")
    i.set_defaults(func=_inspect)

    f = sub.add_parser("profile", help="per-layer latency, bytes and MACs measured on a target")
    f.add_argument("path", help="a recipe YAML (its uncompressed model) or a .acz artifact")
    f.add_argument("--target", help="hardware target or a recipe's named target "
                                    "(default: the recipe's, else cpu-torch)")
    f.add_argument("--format", choices=("table", "json"), default="table")
    f.add_argument("--threads", type=int, help="intra-op threads (default: the recipe's, else 1)")
    f.add_argument("--batch-size", type=int,
                   help="timed batch size (default: the recipe's, else 1)")
    f.add_argument("--int8", action="store_true", help="cpu-onnxruntime: time the int8 QDQ graph")
    f.add_argument("--baseline", metavar="RECIPE",
                   help="artifact only: recipe of the uncompressed model to compare with, its "
                        "input and protocol (default: the artifact's base model)")
    f.add_argument("--trust-code", action="store_true",
                   help="artifact only: import the base model's import path stored in the file "
                        "(this RUNS CODE named by the file: only for files you trust; zoo "
                        "names, and paths the --baseline recipe names, need no trust)")
    f.set_defaults(func=_profile)
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
        experiment=args.experiment, storage=args.storage,
    )
    summary = run_search(recipe, ray_address=args.ray_address, verbose=0 if args.quiet else 1,
                         resume=args.resume)
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
    from autocompress.tracking import load_search, pick

    output = _output_file(args.output)  # before reading MLflow: fail fast
    try:
        budgets = parse_budgets(args.budget)
    except ConfigError as exc:  # perhaps a budget on the search's own (user) metric
        if "unknown metric" not in str(exc):
            raise
        key, mode = load_search(args.tracking_uri, args.experiment, args.run_id).metric
        budgets = parse_budgets(args.budget, {key: ">=" if mode == "max" else "<="})
    chosen = pick(args.tracking_uri, args.experiment, budgets, args.maximize, None,
                  args.run_id)
    _write_artifact(args.tracking_uri, chosen.run_id, output)
    key = load_search(args.tracking_uri, args.experiment, args.run_id).metric[0]
    metrics = {k: chosen.metrics.get(k) for k in (key, f"test_{key}", "latency_ms", "size_kb")}
    print(json.dumps({"trial": chosen.trial_id, "run_id": chosen.run_id,
                      "output": args.output, **metrics}))
    return 0


def _output_file(output: str) -> Path:
    """``--output`` as a path a file can be written to: not a folder, not under a file."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise ConfigError(f"--output {output}: is a folder; give a file path, e.g. "
                          f"{path / 'model.acz'}")
    for parent in path.parents:  # the nearest existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"--output {output}: {parent} is a file, not a folder")
            break
    return path


def _write_artifact(uri: str, run_id: str, output: Path) -> None:
    """Copy the trial's artifact to ``output``; an unwritable output is the user's error."""
    import shutil
    import tempfile

    from autocompress.tracking.query import ARTIFACT_NAME, download_artifact

    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifact(uri, run_id, Path(tmp) / ARTIFACT_NAME)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, output)
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write the artifact: "
                              f"{exc.strerror or exc}") from None


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


def _profile(args: argparse.Namespace) -> int:
    from autocompress.hardware.breakdown import layer_breakdown
    from autocompress.report_profile import print_profile, profile_json

    subject = _profile_subject(args)
    breakdown = layer_breakdown(subject.model, subject.example, subject.profiler,
                                subject.base, subject.extra)
    baseline = breakdown.totals if subject.baseline is None else subject.profiler.measure(
        subject.baseline, subject.example)
    if args.format == "json":
        print(json.dumps(profile_json(breakdown, baseline, subject.source,
                                      subject.baseline_source), indent=2))
    else:
        print_profile(breakdown, baseline, subject.source, subject.baseline_source)
    return 0


class _Subject(NamedTuple):
    """What ``profile`` measures, on which target, and what it is compared with."""

    source: str
    model: Any
    example: Any
    profiler: Any
    base: dict | None = None
    extra: dict | None = None
    baseline: Any = None  # None: the model is its own (uncompressed) baseline
    baseline_source: str = "the profiled model itself (a recipe's model is uncompressed)"


def _profile_subject(args: argparse.Namespace) -> _Subject:
    from autocompress.recipe import HardwareConfig, Recipe

    path = Path(args.path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected a recipe .yaml or an .acz artifact)")
    recipe = Recipe.from_yaml(path) if path.suffix in (".yaml", ".yml") else None
    if recipe is not None and args.baseline:
        raise ConfigError("--baseline: only for an artifact; a recipe's model is the baseline")
    reference = recipe or (Recipe.from_yaml(args.baseline) if args.baseline else None)
    hardware = reference.hardware if reference else HardwareConfig()
    profiler = _profile_target(args, hardware)
    batch = hardware.batch_size if args.batch_size is None else args.batch_size
    if batch < 1:
        raise invalid("--batch-size", batch, "an integer >= 1")
    if recipe is not None:
        return _recipe_subject(recipe, profiler, batch)
    return _artifact_subject(path, reference, profiler, batch, args.trust_code)


def _profile_target(args: argparse.Namespace, hardware):
    """The profiler ``--target`` names: a registered target or a recipe's named variant."""
    from autocompress.hardware.profilers import PROFILERS, get_profiler

    name = args.target or hardware.target
    if name not in PROFILERS and name not in hardware.targets:
        raise invalid("--target", name, sorted({*PROFILERS, *hardware.targets}))
    options = dict(hardware.targets.get(name, {}))
    kind = options.pop("target", name)
    if name == hardware.target and hardware.int8:
        options["int8"] = True
    if args.int8:
        if kind != "cpu-onnxruntime":
            raise ConfigError(f"--int8: only the cpu-onnxruntime target runs int8, not {kind!r}")
        options["int8"] = True
    options.setdefault("threads", hardware.threads)
    if args.threads is not None:
        options["threads"] = args.threads
    try:
        return get_profiler(kind, protocol=hardware.protocol, **options)
    except TypeError as exc:
        raise ConfigError(f"--target {name}: {exc}") from None


def _recipe_subject(recipe, profiler, batch: int) -> _Subject:
    from autocompress.zoo import build_model

    model = build_model(recipe.model.name, **recipe.model.kwargs).eval()
    example = _example(model, None, recipe, batch, recipe.name)
    return _Subject(f"{recipe.name} ({recipe.model.name}, uncompressed)", model, example,
                    profiler)


def _artifact_subject(path: Path, reference, profiler, batch: int,
                      trust_code: bool = False) -> _Subject:
    from autocompress.export import load_compressed, read_spec
    from autocompress.zoo import MODELS, build_model

    try:
        spec = read_spec(path)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc} (expected a recipe .yaml or an .acz artifact)") from None
    model = load_compressed(path, trust_code=trust_code or _vouched(spec, reference))
    extra = spec.get("extra") or {}
    if reference is not None:
        name, kwargs = reference.model.name, reference.model.kwargs
    else:  # the trial may store extra["model"]; the base factory is the same architecture
        stored = extra.get("model") or {"name": spec["base"]["model"],
                                        "kwargs": spec["base"].get("kwargs", {})}
        name, kwargs = stored["name"], stored.get("kwargs", {})
        if name not in MODELS and not trust_code:  # the file names it: importing runs code
            raise ArtifactError(f"{path}: its baseline model is the import path {name!r}; "
                                "pass --baseline RECIPE, or --trust-code if you trust this file")
    baseline = build_model(name, **kwargs).eval()
    example = _example(model, extra.get("input_shape"), reference, batch, str(path))
    return _Subject(f"{path.name} ({spec['base']['model']}, compressed)", model, example,
                    profiler, spec["base"], extra, baseline, f"{name} (uncompressed)")


def _vouched(spec: dict, recipe) -> bool:
    """True when the artifact's base is an import path that the user's recipe names."""
    if recipe is None:
        return False
    student = getattr(recipe.model, "student", None)
    names = {recipe.model.name, getattr(student, "name", None)}
    return spec.get("base", {}).get("model") in names - {None}


def _example(model, shape, recipe, batch: int, where: str):
    """A batch for timing: random inputs of the known shape, else the recipe's data."""
    import torch

    shape = shape or getattr(model, "input_shape", None)
    if shape is not None:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(batch, *shape, generator=generator)
    if recipe is None:
        raise ConfigError(f"{where}: cannot tell the model's input shape; pass --baseline RECIPE")
    from autocompress.search.trial import example_inputs, load_splits

    return example_inputs(model, load_splits(recipe), batch)  # val inputs, never test


if __name__ == "__main__":
    raise SystemExit(main())
