"""``autocompress pareto`` and ``autocompress pick``: read a search back from MLflow.

Both are read-only: they never create a store or a folder (a missing store is an error naming
the URI), and they report the tracking URI they read and where it came from.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from autocompress.cli.output import emit, escape, show_all
from autocompress.errors import ConfigError


def pareto(args: argparse.Namespace) -> int:
    """The front (or every trial) of the experiment's last search; plots with ``--plot``."""
    from autocompress.locations import resolve_tracking_uri
    from autocompress.report import front_json, front_rows
    from autocompress.tracking import load_search

    location = resolve_tracking_uri(args.tracking_uri)
    search = load_search(location.uri, args.experiment, args.run_id)
    if args.layers:
        return _layers(search, args.layers, args.format)
    document = {**front_json(search, include_all=args.all), "tracking_uri": location.uri}
    emit(args.format, front_rows(search, include_all=args.all), document,
         lambda: _show_front(search, args, location.describe()))
    if args.plot:
        _plot(search, args.plot)
    return 0


def _show_front(search: Any, args: argparse.Namespace, where: str) -> None:
    from autocompress.report import print_front

    print_front(search, include_all=args.all, plans=args.plans)
    show_all(where)


def search_budgets(params: dict[str, str]) -> list[str]:
    """The budgets a search ran under, from its parent run's ``budgets`` param."""
    text = params.get("budgets", "")
    try:
        value = ast.literal_eval(text) if text else []
    except (ValueError, SyntaxError):
        return []
    return [str(b) for b in value] if isinstance(value, (list, tuple)) else []


def _plot(search: Any, path: str) -> None:
    from autocompress.viz import front_rows, write_front_plots

    written = write_front_plots(front_rows(search), search_budgets(search.params),
                                search.baseline(), path, metric=search.metric[0])
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)


def _layers(search: Any, trial: str, fmt: str) -> int:
    """What each layer got in one trial's plan."""
    from autocompress.viz.plans import layer_rows, plan_from_params

    match = [t for t in search.trials if trial in (t.trial_id, t.run_id)]
    if not match:
        known = ", ".join(t.trial_id for t in search.trials[:10])
        raise ConfigError(f"--layers: no trial {trial!r} in this search; trials: {known}")
    plan = plan_from_params(match[0].params)
    rows = layer_rows(plan) if plan is not None else []
    emit(fmt, rows, {"trial": match[0].trial_id, "run_id": match[0].run_id, "layers": rows},
         lambda: show_all(_layer_table(match[0].trial_id, rows)), ("layer", "got"))
    return 0


def _layer_table(trial: str, rows: list[dict[str, str]]) -> Any:
    from rich.table import Table

    table = Table(title=f"plan of {escape(trial)}" + ("" if rows else ": uncompressed"))
    table.add_column("layer")
    table.add_column("got")
    for row in rows:
        table.add_row(escape(row["layer"]), escape(row["got"]))
    return table


def pick(args: argparse.Namespace) -> int:
    """Choose the front's best member under budgets (direction-aware) and write its artifact."""
    from autocompress.api import choose
    from autocompress.locations import resolve_tracking_uri

    if args.alias and not args.register:
        raise ConfigError("--alias: only with --register NAME")
    output = output_file(args.output)  # before reading MLflow: fail fast
    location = resolve_tracking_uri(args.tracking_uri)
    chosen, key = choose(location.uri, args.experiment, args.budget, args.maximize,
                         args.minimize, args.run_id)
    write_artifact(location.uri, chosen.run_id, output)
    row = {"trial": chosen.trial_id, "run_id": chosen.run_id, "output": args.output,
           **{k: chosen.metrics.get(k) for k in (key, f"test_{key}", "latency_ms", "size_kb")}}
    if args.register:
        from autocompress.tracking.registry import register

        row["registered"] = register(chosen.run_id, args.register, args.alias,
                                     uri=location.uri).uri
    emit(args.format, [row], {**row, "tracking_uri": location.uri},
         lambda: show_all(_pick_table(row), location.describe()))
    return 0


def _pick_table(row: dict[str, Any]) -> Any:
    from rich.table import Table

    from autocompress.report import _fmt

    table = Table(title=f"picked {escape(row['trial'])} -> {escape(row['output'])}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in row.items():
        table.add_row(escape(key), escape(_fmt(value)))
    return table


def output_file(output: str) -> Path:
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


def write_artifact(uri: str, run_id: str, output: Path) -> None:
    """Copy the trial's artifact to ``output``; an unwritable output is the user's error."""
    from autocompress.tracking.query import ARTIFACT_NAME, download_artifact

    with tempfile.TemporaryDirectory() as tmp:
        local = download_artifact(uri, run_id, Path(tmp) / ARTIFACT_NAME)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, output)
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot write the artifact: "
                              f"{exc.strerror or exc}") from None
