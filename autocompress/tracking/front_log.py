"""The parent run's view of a search: a front table, the front's plots and a description."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autocompress.tracking.tracker import NOTE

__all__ = ["front_markdown", "log_front", "search_note"]

_log = logging.getLogger(__name__)


def log_front(tracker: Any, rows: Sequence[Mapping[str, Any]], all_rows: Sequence[Mapping],
              budgets: Sequence[Any], baseline: Mapping[str, float], metric: str,
              note: str) -> None:
    """Log ``front.json``, ``front.md``, ``plots/front.{png,html}`` and the run description.

    Args:
        tracker: The search's SearchTracker (its parent run receives everything).
        rows: The front's members as dicts (trial, run id, name, plan, metrics).
        all_rows: Every trial as :func:`autocompress.viz.front.front_rows` makes them (plots).
        budgets: The search's budgets (drawn on the plots).
        baseline: The baseline's metrics (the reference, starred on the plots).
        metric: The quality metric's key.
        note: The run's description (``mlflow.note.content``, shown in the MLflow UI).
    """
    c, run_id = tracker.client, tracker.parent_id
    doc = {"metric": metric, "budgets": [str(b) for b in budgets],
           "baseline": _finite(baseline), "front": [_finite(r) for r in rows]}
    c.log_text(run_id, json.dumps(doc, indent=2), "front.json")
    c.log_text(run_id, front_markdown(rows, baseline, metric), "front.md")
    tracker.tag_search({NOTE: note})
    _log_plots(c, run_id, all_rows, budgets, baseline, metric)


def _log_plots(c: Any, run_id: str, rows, budgets, baseline, metric: str) -> None:
    """The front's PNG and HTML on the parent run (skipped, logged, when plotting fails)."""
    if not rows:
        return
    try:
        from autocompress.viz.front import write_front_plots

        with tempfile.TemporaryDirectory() as tmp:
            write_front_plots(rows, budgets, baseline, Path(tmp) / "front", metric)
            c.log_artifacts(run_id, tmp, "plots")
    except Exception as exc:  # noqa: BLE001  (a plot never fails a finished search)
        _log.warning("front plots not logged: %s", exc)


def front_markdown(rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, float],
                   metric: str) -> str:
    """The front as a Markdown table, the baseline (reference) first."""
    columns = [metric, f"test_{metric}", "latency_ms", "size_kb"]
    lines = ["| trial | plan | " + " | ".join(columns) + " |",
             "|---|---|" + "---:|" * len(columns)]
    lines.append("| baseline (reference) | uncompressed | "
                 + " | ".join(_cell(baseline.get(k)) for k in columns) + " |")
    for r in rows:
        lines.append(f"| {r.get('name') or r.get('trial')} | {r.get('plan', '')} | "
                     + " | ".join(_cell(r.get(k)) for k in columns) + " |")
    return "\n".join(lines) + "\n"


def search_note(experiment: str, statuses: Mapping[str, int], front: int, hypervolume: float,
                budgets: Sequence[Any], baseline_breaks: Sequence[str],
                warning: str = "") -> str:
    """The parent run's description (Markdown)."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    text = [f"**autocompress search** `{experiment}`: {sum(statuses.values())} trials "
            f"({counts}); Pareto front of {front}, normalised hypervolume {hypervolume:.4f}.",
            f"Budgets: {', '.join(str(b) for b in budgets) or 'none'}.",
            "See `front.md` / `front.json` and `plots/front.html`; child runs are the trials."]
    if baseline_breaks:
        text.append(f"The baseline (uncompressed reference) breaks {', '.join(baseline_breaks)}"
                    ": it is shown for reference only, never as a front member.")
    if warning:
        text.append(f"Warning: {warning}")
    return "\n\n".join(text)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _finite(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not (isinstance(v, float) and not math.isfinite(v))}
