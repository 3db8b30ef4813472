"""Plots of a search's trials: quality vs latency and quality vs size.

The front's members are drawn strongly and joined in order, dominated trials faint, the
baseline as a star, and budgets on the plotted metrics as dashed lines. Two forms of the same
picture: a PNG (matplotlib, Agg: no display needed) and an interactive, self-contained HTML page
(plotly; hovering a point shows its trial and plan).

Rows are plain dicts, as :func:`front_rows` makes them from a search read back from MLflow, so
the search's end (logging on the parent run) and ``autocompress pareto --plot`` draw the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["AXES", "front_figures", "front_rows", "write_front_plots"]

AXES = (("latency_ms", "latency (ms)"), ("size_kb", "artifact size (KB)"))
_FRONT, _OTHER, _BASE, _BUDGET = "#1f77b4", "#9aa5b1", "#d62728", "#ff7f0e"


def front_rows(search: Any) -> list[dict[str, Any]]:
    """One dict per trial of a SearchRecord: trial, status, pareto, plan and its metrics."""
    from autocompress.viz.plans import plan_from_params, plan_text

    rows = []
    for t in search.trials:
        plan = plan_from_params(t.params)
        rows.append({"trial": t.trial_id, "status": t.status, "pareto": bool(t.pareto),
                     "plan": plan_text(plan) if plan is not None else "", **t.metrics})
    return rows


def _budget_lines(budgets: Iterable[Any]) -> dict[str, list[float]]:
    """Limits per plotted metric (default target only), from Budget objects or strings."""
    from autocompress.hardware import parse_budgets

    items = [b for b in budgets if not isinstance(b, str)]
    texts = [b for b in budgets if isinstance(b, str)]
    if texts:
        try:
            items += list(parse_budgets(texts))
        except Exception:  # noqa: BLE001  (a budget on a user metric: parsed by the caller)
            pass
    lines: dict[str, list[float]] = {}
    for b in items:
        if getattr(b, "target", None) is None:
            lines.setdefault(b.metric, []).append(float(b.limit))
    return lines


def _split(rows: Sequence[Mapping[str, Any]], key: str, metric: str):
    usable = [r for r in rows if _num(r.get(key)) and _num(r.get(metric))]
    front = sorted((r for r in usable if r.get("pareto")), key=lambda r: r[key])
    return front, [r for r in usable if not r.get("pareto")]


def _num(value: Any) -> bool:
    import math

    return isinstance(value, (int, float)) and math.isfinite(value)


def matplotlib_figure(rows, budgets=(), baseline=None, metric: str = "accuracy"):
    """The PNG form: two panels sharing the quality axis."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    lines = _budget_lines(budgets)
    for ax, (key, label) in zip(fig.subplots(1, 2, sharey=True), AXES, strict=True):
        front, others = _split(rows, key, metric)
        ax.scatter([r[key] for r in others], [r[metric] for r in others], color=_OTHER,
                   alpha=0.35, s=18, label="dominated / other trials")
        ax.plot([r[key] for r in front], [r[metric] for r in front], "o-", color=_FRONT,
                label="Pareto front")
        if baseline and _num(baseline.get(key)) and _num(baseline.get(metric)):
            ax.scatter([baseline[key]], [baseline[metric]], marker="*", s=180, color=_BASE,
                       label="baseline (uncompressed)", zorder=5)
        for limit in lines.get(key, []):
            ax.axvline(limit, color=_BUDGET, linestyle="--", label=f"budget {key}<={limit:g}")
        for limit in lines.get(metric, []):
            ax.axhline(limit, color=_BUDGET, linestyle=":", label=f"budget {metric}>={limit:g}")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.axes[0].set_ylabel(f"{metric} (val)")
    fig.suptitle(f"{metric} vs latency and size: Pareto front")
    return fig


def plotly_figure(rows, budgets=(), baseline=None, metric: str = "accuracy"):
    """The HTML form: the same two panels, hover text with trial, status and plan."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=[label for _, label in AXES])
    lines = _budget_lines(budgets)
    for col, (key, label) in enumerate(AXES, start=1):
        front, others = _split(rows, key, metric)
        for group, name, style in ((others, "other trials", {"color": _OTHER, "opacity": 0.35}),
                                   (front, "Pareto front", {"color": _FRONT})):
            fig.add_scatter(x=[r[key] for r in group], y=[r[metric] for r in group],
                            mode="markers" if group is others else "lines+markers",
                            name=name, legendgroup=name, showlegend=col == 1,
                            marker={"color": style["color"], "size": 8},
                            opacity=style.get("opacity", 1.0),
                            text=[_hover(r) for r in group], hoverinfo="text+x+y",
                            row=1, col=col)
        if baseline and _num(baseline.get(key)) and _num(baseline.get(metric)):
            fig.add_scatter(x=[baseline[key]], y=[baseline[metric]], mode="markers",
                            name="baseline", legendgroup="baseline", showlegend=col == 1,
                            marker={"symbol": "star", "size": 16, "color": _BASE},
                            row=1, col=col)
        for limit in lines.get(key, []):
            fig.add_vline(x=limit, line_dash="dash", line_color=_BUDGET, row=1, col=col,
                          annotation_text=f"{key}<={limit:g}")
        for limit in lines.get(metric, []):
            fig.add_hline(y=limit, line_dash="dot", line_color=_BUDGET, row=1, col=col)
        fig.update_xaxes(title_text=label, row=1, col=col)
    fig.update_yaxes(title_text=f"{metric} (val)", row=1, col=1)
    fig.update_layout(title=f"{metric} vs latency and size: Pareto front", template="plotly_white")
    return fig


def _hover(row: Mapping[str, Any]) -> str:
    return f"{row.get('trial', '')} ({row.get('status', '')})<br>{row.get('plan', '')}"


def front_figures(rows: Sequence[Mapping[str, Any]], budgets: Iterable[Any] = (),
                  baseline: Mapping[str, float] | None = None,
                  metric: str = "accuracy") -> tuple[Any, Any]:
    """The front's picture as a matplotlib Figure and a plotly Figure.

    Args:
        rows: One dict per trial with ``metric``, ``latency_ms``, ``size_kb``, ``pareto``
            (bool), and optionally ``trial``, ``status``, ``plan`` (see :func:`front_rows`).
        budgets: Budget objects or expressions (``size_kb<=60``); those on the plotted metrics
            and the default target are drawn.
        baseline: The uncompressed model's metrics (same keys), marked with a star.
        metric: The quality metric's key.
    """
    budgets = list(budgets)
    return (matplotlib_figure(rows, budgets, baseline, metric),
            plotly_figure(rows, budgets, baseline, metric))


def write_front_plots(rows: Sequence[Mapping[str, Any]], budgets: Iterable[Any],
                      baseline: Mapping[str, float] | None, path: str | Path,
                      metric: str = "accuracy") -> list[Path]:
    """Write ``PATH.png`` and ``PATH.html`` (a suffix on ``path`` is replaced); return both."""
    base = Path(path)
    if base.suffix.lower() in (".png", ".html", ".htm"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    png, html = base.with_name(base.name + ".png"), base.with_name(base.name + ".html")
    figure, interactive = front_figures(rows, budgets, baseline, metric)
    figure.savefig(png, dpi=120)
    interactive.write_html(html, include_plotlyjs=True, full_html=True)
    return [png, html]
