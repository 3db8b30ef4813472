"""Terminal and JSON views of ``autocompress profile``: per-layer breakdown and baseline ratios."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from autocompress.hardware.breakdown import Breakdown, LayerRow
from autocompress.hardware.measurement import Measurement

COLUMNS = ("layer", "type", "latency ms", "share", "bytes", "MACs", "bits")
_NUMERIC = frozenset(COLUMNS[2:])


def ratios(totals: Measurement, baseline: Measurement) -> dict[str, float | None]:
    """How much better the profiled model is than the baseline (> 1: better).

    Returns:
        ``latency_speedup`` (baseline latency / latency), ``size_ratio`` (baseline artifact
        bytes / artifact bytes), ``macs_ratio`` and ``params_ratio`` (baseline / model);
        None where a value is missing or zero.
    """
    return {
        "latency_speedup": _ratio(baseline.latency_ms, totals.latency_ms),
        "size_ratio": _ratio(baseline.size_bytes, totals.size_bytes),
        "macs_ratio": _ratio(baseline.macs, totals.macs),
        "params_ratio": _ratio(baseline.params, totals.params),
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def profile_json(breakdown: Breakdown, baseline: Measurement, source: str,
                 baseline_source: str) -> dict[str, Any]:
    """One JSON-ready object: source, layers, totals, baseline and ratios."""
    return {"source": source, **breakdown.to_dict(),
            "baseline": {"source": baseline_source, **dataclasses.asdict(baseline),
                         "size_kb": baseline.size_kb},
            "ratios": ratios(breakdown.totals, baseline)}


def print_profile(breakdown: Breakdown, baseline: Measurement, source: str,
                  baseline_source: str, console: Console | None = None) -> None:
    """Print the per-layer table, the whole-model totals and the baseline comparison."""
    console = console or Console()
    console.print(layer_table(breakdown, source))
    console.print(totals_line(breakdown))
    if baseline is breakdown.totals:
        console.print(f"baseline: {baseline_source}; profile an artifact to compare with it")
    else:
        console.print(baseline_table(breakdown.totals, baseline, baseline_source))


def layer_table(breakdown: Breakdown, source: str) -> Table:
    """One row per leaf layer (plus the synthetic rows), and a total row."""
    t = breakdown.totals
    table = Table(title=f"{source} on {t.target} ({t.runtime}, {t.threads} thread(s), "
                        f"batch {t.batch_size})", box=box.SIMPLE_HEAD)
    for name in COLUMNS:  # numbers never truncated; long names fold on narrow terminals
        if name in _NUMERIC:
            table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
        else:
            table.add_column(name, overflow="fold")
    rows = breakdown.layers
    for i, row in enumerate(rows):
        table.add_row(*_cells(row), end_section=i == len(rows) - 1)
    table.add_row("total", "", _ms(breakdown.instrumented_ms),
                  "100.0%" if breakdown.instrumented_ms is not None else "-",
                  f"{sum(r.bytes for r in rows):,}", f"{sum(r.macs for r in rows):,}", "",
                  style="bold")
    return table


def _cells(row: LayerRow) -> tuple[str, ...]:
    share = "-" if row.share is None else f"{row.share:.1%}"
    return (row.name, row.type, _ms(row.latency_ms), share, f"{row.bytes:,}", f"{row.macs:,}",
            "" if row.bits is None else str(row.bits))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def totals_line(breakdown: Breakdown) -> str:
    """The whole model as the profiler measures it, and how the per-layer times were taken."""
    t = breakdown.totals
    parts = []
    if t.latency_ms is not None:
        parts.append(f"latency {t.latency_ms:.4f} ms median, p90 {t.latency_p90_ms:.4f} ms, "
                     f"spread {t.latency_spread:.1%} over {t.runs} runs"
                     + (" [yellow](noisy)[/yellow]" if t.noisy else ""))
    parts.append(f"artifact {t.size_bytes:,} bytes ({t.size_kb:.1f} KB)")
    parts.append(f"{t.macs:,} MACs, {t.bops:,} BOPs per sample")
    parts.append(f"peak memory {t.peak_mem_mb:.2f} MiB")
    line = "[bold]whole model[/bold]: " + "; ".join(parts)
    if breakdown.method:
        line += (f"\nper-layer latency: {breakdown.method}, medians of {breakdown.runs} "
                 f"instrumented runs (total {breakdown.instrumented_ms:.4f} ms: instrumentation "
                 "adds overhead, so shares are of that total)")
    return line


def baseline_table(totals: Measurement, baseline: Measurement, source: str) -> Table:
    """The profiled model against the uncompressed baseline, measured the same way."""
    table = Table(title=f"vs. baseline: {source}", box=box.SIMPLE_HEAD)
    for name in ("metric", "this model", "baseline", "ratio"):
        table.add_column(name, justify="left" if name == "metric" else "right", no_wrap=True)
    r = ratios(totals, baseline)
    table.add_row("latency ms", _ms(totals.latency_ms), _ms(baseline.latency_ms),
                  _times(r["latency_speedup"], "faster", "slower"))
    table.add_row("artifact bytes", f"{totals.size_bytes:,}", f"{baseline.size_bytes:,}",
                  _times(r["size_ratio"], "smaller", "larger"))
    table.add_row("MACs", f"{totals.macs:,}", f"{baseline.macs:,}",
                  _times(r["macs_ratio"], "fewer", "more"))
    table.add_row("params", f"{totals.params:,}", f"{baseline.params:,}",
                  _times(r["params_ratio"], "fewer", "more"))
    return table


def _times(value: float | None, better: str, worse: str) -> str:
    if value is None:
        return "-"
    return f"×{value:.2f} {better}" if value >= 1 or value <= 0 else f"×{1 / value:.2f} {worse}"
