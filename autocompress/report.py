"""Terminal and JSON views of a search (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

COLUMNS = ("accuracy", "latency_ms", "size_kb", "params", "macs")


def _columns(search) -> tuple[str, ...]:
    """The search's quality metric (val, then test) and the cost columns."""
    key = search.metric[0] if hasattr(search, "metric") else "accuracy"
    return (key, f"test_{key}", *COLUMNS[1:])


def _plan_summary(params: dict[str, str]) -> str:
    """The plan in words, ``conv1: prune 50% · 8-bit; fc: svd 25%`` ("?" if unreadable)."""
    from autocompress.viz.plans import plan_from_params, plan_text

    plan = plan_from_params(params)
    return "?" if plan is None else plan_text(plan, limit=99)


def front_rows(search, include_all: bool = False) -> list[dict[str, Any]]:
    """The baseline and the front (or all trials) as flat rows (CSV)."""
    doc = front_json(search, include_all)
    base = {"trial": "baseline", "status": "-", **{k: doc["baseline"].get(k)
                                                  for k in _columns(search)}}
    return [base, *doc["trials"]]


def front_json(search, include_all: bool = False) -> dict[str, Any]:
    """The front (or all trials) of a SearchRecord as JSON-ready dicts."""
    trials = search.trials if include_all else search.front()
    return {
        "search_run_id": search.run_id,
        "baseline": search.baseline(),
        "hypervolume": search.metrics.get("hypervolume"),
        "trials": [
            {"trial": t.trial_id, "run_id": t.run_id, "status": t.status, "pareto": t.pareto,
             **{k: t.metrics.get(k) for k in _columns(search)}, "plan": _plan_summary(t.params),
             **({"failure_reason": t.reason} if t.reason else {})}
            for t in trials
        ],
    }


def print_front(search, include_all: bool = False, plans: bool = False,
                console: Console | None = None) -> None:
    """Print the Pareto front with the baseline as the first row."""
    console = console or Console()
    title = "all trials" if include_all else "Pareto front"
    table = Table(title=f"{title} (search {search.run_id[:8]}, "
                        f"hypervolume {search.metrics.get('hypervolume', float('nan')):.4f})")
    columns = _columns(search)
    for name in ("trial", "status", *columns):
        table.add_column(_header(name), no_wrap=True, min_width=8 if name == "trial" else None)
    if plans:
        table.add_column("plan", overflow="fold")
    base = search.baseline()
    table.add_row("baseline", "-", *(_fmt(base.get(k)) for k in columns),
                  *(["uncompressed"] if plans else []))
    for t in search.trials if include_all else search.front():
        status = t.status + (" *" if t.pareto else "")
        table.add_row(escape(t.trial_id), status, *(_fmt(t.metrics.get(k)) for k in columns),
                      *([escape(_plan_summary(t.params))] if plans else []))
    console.print(table)


def print_summary(summary, console: Console | None = None) -> None:
    """Print the result of run_search."""
    console = console or Console()
    console.print(f"[bold]search[/bold] {summary.experiment} ({summary.parent_run_id}): "
                  f"{summary.trials} trials {summary.statuses} in {summary.wall_s:.1f}s; "
                  f"{summary.infeasible_s:.1f}s spent on infeasible candidates (never trained)")
    table = Table(title=f"Pareto front (hypervolume {summary.hypervolume:.4f})")
    key = getattr(summary, "metric", "accuracy")
    columns = (key, f"test_{key}", "latency_ms", "size_kb")
    for name in ("trial", *columns):
        table.add_column(_header(name))
    table.add_row("baseline", *(_fmt(summary.baseline.get(k)) for k in columns))
    for row in summary.front:
        table.add_row(escape(str(row["trial"])), *(_fmt(row.get(k)) for k in columns))
    console.print(table)


def _header(name: str) -> str:
    """A column's title: ``test`` for the test split's metric (its key is in the JSON)."""
    return "test" if name.startswith("test_") else name


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
