"""The argument parser of every command, defined without importing any command's code.

Each subcommand names its implementation as ``"module:function"``; ``main`` imports it only
when that command runs. The search flags shared by ``search`` and ``submit`` are defined once
(:data:`SEARCH_FLAGS`), and ``submit`` forwards them to the job's ``autocompress search``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NamedTuple

from autocompress import __version__

FORMATS = ("table", "json", "csv")
DEFAULT_JOB_ADDRESS = "http://127.0.0.1:8265"
_CLI = "autocompress.cli"


class Flag(NamedTuple):
    """One search flag shared by ``search`` and ``submit``."""

    flag: str
    kwargs: dict[str, Any]

    @property
    def dest(self) -> str:  # noqa: D102
        return self.flag.lstrip("-").replace("-", "_")


SEARCH_FLAGS = (
    Flag("--trials", {"type": int, "help": "number of candidates (overrides the recipe)"}),
    Flag("--concurrency", {"type": int, "help": "trials run at once"}),
    Flag("--sampler", {"help": "tpe, nsga2 or random"}),
    Flag("--seed", {"type": int}),
    Flag("--budget", {"action": "append", "default": [], "metavar": "EXPR",
                      "help": "e.g. size_kb<=60 or latency_ms<=2 (repeatable; adds to the "
                              "recipe's)"}),
    Flag("--tracking-uri", {"help": "MLflow tracking URI (default: $AUTOCOMPRESS_TRACKING_URI, "
                                    "$MLFLOW_TRACKING_URI, then the recipe's tracking.uri)"}),
    Flag("--experiment", {"help": "MLflow experiment name (default: the recipe's)"}),
    Flag("--storage", {"help": "where Tune keeps the search's state (default: the recipe's)"}),
)


def forwarded_search_args(args: argparse.Namespace) -> list[str]:
    """The shared search flags as given on the command line, to pass on to another process."""
    out: list[str] = []
    for f in SEARCH_FLAGS:
        value = getattr(args, f.dest)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                out += [f.flag, str(item)]
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``autocompress`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="autocompress",
        description="Search per-layer compression of a PyTorch model under hardware budgets.",
        epilog="Tracking URI: --tracking-uri, else $AUTOCOMPRESS_TRACKING_URI, else "
               "$MLFLOW_TRACKING_URI, else (search) the recipe's tracking.uri, else "
               "sqlite:///mlruns.db in the current folder.",
    )
    parser.add_argument("--version", action="version", version=f"autocompress {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_search, _submit, _jobs, _pareto, _pick, _inspect, _profile, _evaluate):
        add(sub)
    return parser


def _search(sub: Any) -> None:
    s = sub.add_parser("search", help="run a compression search (Ray Tune + Optuna, MLflow)")
    s.add_argument("recipe", help="recipe YAML, e.g. recipes/quickstart.yaml")
    _search_flags(s)
    s.add_argument("--ray-address", help="attach to a running Ray cluster")
    view = s.add_mutually_exclusive_group()
    view.add_argument("--quiet", action="store_true",
                      help="one line per phase only (baseline, search started, done)")
    view.add_argument("--verbose", action="store_true",
                      help="Ray Tune's own status tables as well as the progress view")
    s.add_argument("--resume", action="store_true",
                   help="continue the experiment's interrupted search from its saved state")
    s.set_defaults(func=f"{_CLI}.search_cmd:search")


def _search_flags(p: argparse.ArgumentParser) -> None:
    for f in SEARCH_FLAGS:
        p.add_argument(f.flag, **f.kwargs)


def _submit(sub: Any) -> None:
    s = sub.add_parser("submit", help="submit a search to a Ray cluster as a job")
    s.add_argument("recipe", help="recipe YAML; it and the files it names are uploaded")
    _address(s)
    s.add_argument("--follow", action="store_true", help="stream the job's log until it ends")
    _search_flags(s)
    s.add_argument("--submission-id", help="a job id of your own (default: Ray's)")
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the job (repeatable)")
    s.set_defaults(func=f"{_CLI}.jobs_cmd:submit")


def _jobs(sub: Any) -> None:
    j = sub.add_parser("jobs", help="status, logs or stop of a submitted search")
    j.add_argument("action", choices=("status", "logs", "stop", "follow"))
    j.add_argument("job_id")
    _address(j)
    j.add_argument("--format", choices=("text", "json"), default="text")
    j.set_defaults(func=f"{_CLI}.jobs_cmd:jobs")


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS")
                   or os.environ.get("RAY_ADDRESS") or DEFAULT_JOB_ADDRESS,
                   help="the cluster's job API, http://HEAD:8265 (default $RAY_ADDRESS or "
                        f"{DEFAULT_JOB_ADDRESS})")


def _tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiment", help="MLflow experiment name, e.g. quickstart")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: see autocompress -h)")
    p.add_argument("--run-id", help="a specific search run (default: the latest)")


def _format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), json or csv")


def _pareto(sub: Any) -> None:
    p = sub.add_parser("pareto", help="show the Pareto front of the last search of an experiment")
    _tracking(p)
    _format(p)
    p.add_argument("--all", action="store_true", help="list every trial, not only the front")
    p.add_argument("--plans", action="store_true", help="add each trial's plan to the table")
    p.add_argument("--plot", metavar="FILE",
                   help="write the front's plots: FILE.png and FILE.html (quality vs latency "
                        "and vs size; budgets, baseline, dominated trials faint)")
    p.add_argument("--layers", metavar="TRIAL",
                   help="show what each layer got in one trial's plan")
    p.set_defaults(func=f"{_CLI}.reading:pareto")


def _pick(sub: Any) -> None:
    k = sub.add_parser("pick", help="choose a Pareto model under budgets and write its artifact")
    _tracking(k)
    k.add_argument("--budget", action="append", default=[], metavar="EXPR")
    goal = k.add_mutually_exclusive_group()
    goal.add_argument("--maximize", metavar="METRIC",
                      help="a metric to maximise, e.g. accuracy (default: the search's quality "
                           "metric, in its own direction, e.g. the lowest mse)")
    goal.add_argument("--minimize", metavar="METRIC",
                      help="a metric to minimise, e.g. latency_ms or size_kb")
    k.add_argument("--output", required=True, help="where to write the compressed artifact")
    k.add_argument("--register", metavar="NAME",
                   help="also register the chosen model in the MLflow Model Registry as NAME")
    k.add_argument("--alias", help="with --register: point this alias (e.g. champion) at it")
    _format(k)
    k.set_defaults(func=f"{_CLI}.reading:pick")


def _inspect(sub: Any) -> None:
    i = sub.add_parser("inspect", help="layers, methods, bits and bytes of a compressed artifact")
    i.add_argument("artifact", help="a .acz file written by pick or save_compressed")
    _format(i)
    i.set_defaults(func=f"{_CLI}.inspect_cmd:inspect")


def _profile(sub: Any) -> None:
    f = sub.add_parser("profile", help="per-layer latency, bytes and MACs measured on a target")
    f.add_argument("path", help="a recipe YAML (its uncompressed model) or a .acz artifact")
    f.add_argument("--target", help="hardware target or a recipe's named target "
                                    "(default: the recipe's, else cpu-torch)")
    _format(f)
    f.add_argument("--threads", type=int, help="intra-op threads (default: the recipe's, else 1)")
    f.add_argument("--batch-size", type=int,
                   help="timed batch size (default: the recipe's, else 1)")
    f.add_argument("--int8", action="store_true",
                   help="cpu-onnxruntime: time an int8 graph (static QDQ unless --int8-form)")
    f.add_argument("--int8-form", choices=("static", "dynamic", "auto"),
                   help="cpu-onnxruntime: the int8 graph timed: static QDQ, dynamic, or the "
                        "fastest of float, static and dynamic (auto; layers: the static one)")
    f.add_argument("--baseline", metavar="RECIPE",
                   help="artifact only: recipe of the uncompressed model to compare with, its "
                        "input and protocol (default: the artifact's base model)")
    f.add_argument("--trust-code", action="store_true",
                   help="artifact only: import the base model's import path stored in the file "
                        "(this RUNS CODE named by the file: only for files you trust; zoo "
                        "names, and paths the --baseline recipe names, need no trust)")
    f.set_defaults(func=f"{_CLI}.profile_cmd:profile")


def _evaluate(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="quality of a compressed artifact on a recipe's data")
    e.add_argument("artifact", help="a .acz file written by pick or save_compressed")
    e.add_argument("--recipe", required=True, help="the recipe whose data and metric to use")
    e.add_argument("--split", choices=("test", "val"), default="test",
                   help="which split to score (default: test)")
    _format(e)
    e.set_defaults(func=f"{_CLI}.evaluate_cmd:evaluate")
