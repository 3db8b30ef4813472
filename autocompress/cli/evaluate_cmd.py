"""``autocompress evaluate ARTIFACT --recipe R``: the artifact's quality on the recipe's data."""

from __future__ import annotations

import argparse

from autocompress.cli.output import emit


def evaluate(args: argparse.Namespace) -> int:
    """Score the artifact on the recipe's test (or val) split with the recipe's metric."""
    from autocompress.evaluation import evaluate_artifact

    result = evaluate_artifact(args.artifact, args.recipe, args.split)
    emit(args.format, [result], result, lambda: _show(result))
    return 0


def _show(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape

    better = "higher" if result["mode"] == "max" else "lower"
    Console().print(f"{escape(result['artifact'])}: {result['metric']} "
                    f"[bold]{result['value']:.4f}[/bold] on the {result['split']} split of "
                    f"{escape(result['recipe'])} ({better} is better)")
