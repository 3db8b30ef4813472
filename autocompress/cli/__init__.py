"""The command line: search, submit, jobs, pareto, pick, inspect, profile, evaluate.

Parsing imports nothing heavy (no torch, Ray or MLflow): each command's module is imported only
when that command runs, so ``--help`` and ``--version`` answer at once. User errors print one
line and exit with code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import import_module

from autocompress.cli.parser import build_parser
from autocompress.errors import AutocompressError

EXIT_USAGE = 2

__all__ = ["EXIT_USAGE", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autocompress``."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    try:
        return _command(args.func)(args)
    except AutocompressError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message wrapped
        print(f"autocompress: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("autocompress: interrupted", file=sys.stderr)
        return 130


def _command(target: str):
    """The function named ``module:function`` (its module imported now, not at parse time)."""
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)
