"""``autocompress search``: run a search with a progress view, then print its front."""

from __future__ import annotations

import argparse
import sys


def search(args: argparse.Namespace) -> int:
    """Run the recipe's search (CLI overrides applied) and print the summary."""
    from autocompress.locations import resolve_tracking_uri
    from autocompress.recipe import Recipe
    from autocompress.search import apply_overrides, run_search
    from autocompress.search.outcomes import NoTrialCompleted
    from autocompress.search.progress import SearchProgress

    recipe = Recipe.from_yaml(args.recipe)
    location = resolve_tracking_uri(args.tracking_uri, recipe.tracking.uri)
    recipe = apply_overrides(
        recipe, trials=args.trials, concurrency=args.concurrency, sampler=args.sampler,
        seed=args.seed, budgets=args.budget, uri=location.uri, experiment=args.experiment,
        storage=args.storage,
    )
    progress = SearchProgress(recipe.metric.key, recipe.metric.mode, recipe.search.trials,
                              stream=sys.stdout, quiet=args.quiet)
    try:
        summary = run_search(recipe, ray_address=args.ray_address,
                             verbose=1 if args.verbose else 0, resume=args.resume,
                             progress=progress)
    except NoTrialCompleted as exc:  # the search ran, but gave nothing: exit 1, say why
        print(f"autocompress: search failed: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    from autocompress.report import print_summary

    print_summary(summary)
    print(location.describe())
    return 0
