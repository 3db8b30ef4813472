"""The comparison's Markdown report and its PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

from autocompress.hardware.lut.table import cpu_model
from benchmarks.compare.scores import Row, speedup

COLORS = {"baseline": "black", "uniform": "tab:orange", "random": "tab:gray", "tpe": "tab:blue",
          "nsga2": "tab:green", "torch-pruning": "tab:red", "ort-int8": "tab:purple",
          "ort-dynamic-int8": "tab:pink",
          "torch-dynamic-int8": "tab:brown"}




def versions() -> str:
    import importlib.metadata as md

    names = ("torch", "onnxruntime", "optuna", "ray", "mlflow", "pytorch-lightning",
             "torch-pruning", "transformers")
    found = []
    for name in names:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            continue
    return f"python {platform.python_version()}, " + ", ".join(found)


def plots(rows: list[Row], base: Row, folder: Path, stem: str) -> list[Path]:
    """Two PNGs: test error vs ORT latency, and test error vs artifact size; all methods."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for axis, xlabel, value in (
        ("latency", "ONNX Runtime latency (ms, median of interleaved rounds)", lambda r: r.ort_ms),
        ("size", "artifact size (KB, bytes of the file that loads back)",
         lambda r: r.size / 1000),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in dict.fromkeys(r.method for r in rows):
            pts = sorted((value(r), 100 * r.error) for r in rows
                         if r.method == method and value(r) is not None)
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            marker = "*" if method == "baseline" else "o"
            ax.plot(xs, ys, marker=marker, linestyle="-" if len(pts) > 1 else "",
                    color=COLORS.get(method), label=method, markersize=12 if marker == "*" else 6)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{stem}: test error vs {axis} (members chosen on val)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        path = folder / f"{stem}_{axis}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(rows: list[Row], base: Row) -> list[str]:
    lines = ["| method | member | test error | ORT ms (form) | speed-up | cpu-torch ms | "
             "torch speed-up | size bytes | ratio | val quality | plan |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tsp = base.torch_ms / r.torch_ms if r.torch_ms and base.torch_ms else None
        ort = "-" if r.ort_ms is None else f"{r.ort_ms:.4f} ({r.ort_form})"
        lines.append(
            f"| {r.method} | {r.label} | {100 * r.error:.2f}% | {ort} | "
            f"{_fmt(speedup(r, base), '.2f')}x | {_fmt(r.torch_ms, '.4f')} | {_fmt(tsp, '.2f')}x | "
            f"{r.size:,} | {base.size / r.size:.1f}x | {_fmt(r.val_quality, '.4f')} | "
            f"{r.plan if len(r.plan) <= 160 else r.plan[:159] + '…'} |")
    return lines


def headline(rows: list[Row], base: Row, hv: dict) -> list[str]:
    """Per method: its fastest member at the best test error it reaches, and its hypervolume."""
    lines = ["| method | points | best test error | fastest ORT speed-up | largest ratio | "
             "HV (ref = baseline) | HV (ref = baseline + tolerance) | HV axis |",
             "|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r.method for r in rows):
        ms = [r for r in rows if r.method == method]
        sps = [s for r in ms if (s := speedup(r, base)) is not None]
        h = hv.get(method, {})
        lines.append(
            f"| {method} | {len(ms)} | {100 * min(r.error for r in ms):.2f}% | "
            f"{_fmt(max(sps, default=None), '.2f')}x | "
            f"{max(base.size / r.size for r in ms):.1f}x | {_fmt(h.get('hv'), '.4f')} | "
            f"{_fmt(h.get('hv_tol'), '.4f')} | {h.get('axis', '-')} |")
    return lines


def markdown(ctx: dict) -> str:
    """The whole report; ``ctx`` holds the run's facts (see ``__main__.write_report``)."""
    b, rows, suite = ctx["base"], ctx["rows"], ctx["suite"]
    when = datetime.datetime.now(datetime.timezone.utc)
    walls = ", ".join(f"{k} {v:.0f} s" for k, v in ctx["walls"].items())
    lines = [
        f"# Benchmark `{suite.name}` ({ctx['mode']} mode): per-layer search vs uniform, random "
        "and peer tools",
        "",
        f"- date: {when:%Y-%m-%d %H:%M} UTC; command: `{ctx['command']}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs); "
        f"{platform.platform()}",
        f"- versions: {ctx['versions']}",
        f"- recipe: `{ctx['recipe_path']}` (space `{ctx['space']}`), seed {ctx['seed']}; "
        f"{ctx['trials']} trials per search method, uniform grid of {ctx['grid']} points; "
        f"fine-tuning {ctx['epochs']} epoch(s) per candidate (limit_train_batches "
        f"{ctx['limit']}); same baseline checkpoint for every method",
        f"- wall time: {ctx['wall'] / 60:.1f} min in all; per method: {walls}",
        f"- timing: one interleaved session after all searches, {ctx['timing']['entries']} "
        f"(candidate, form) pairs x {ctx['timing']['rounds']} rounds x "
        f"{ctx['timing']['runs']} runs, round-robin, median of round medians; "
        f"ORT {ctx['threads']} thread(s), batch {ctx['batch']}; each candidate's float, static "
        f"int8 QDQ (calibrated on train) and dynamic int8 graphs are separate points "
        f"`[float]` / `[int8]` / `[dynamic]`, "
        f"each with its own latency and test error ({ctx['timing']['timing_s']:.0f} s)",
        f"- baseline: test error {100 * b.error:.2f}%, ORT {b.ort_ms:.4f} ms, cpu-torch "
        f"{_fmt(b.torch_ms, '.4f')} ms, {b.size:,} bytes (float artifact)",
        "- MLflow: experiment `" + ctx["experiment"] + "` (and one per search) in "
        f"`{ctx['uri']}` (not committed)",
        "",
        "## Headline",
        "",
        *headline(rows, b, ctx["hv"]),
        "",
        "## Goals (issue 10)",
        "",
        "| goal | measured | status |",
        "|---|---|---|",
        *[f"| {g['goal']} | {g['measured']} | {'met' if g['met'] else 'missed'} |"
          for g in ctx["goals"]],
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in ctx["plots"]],
        "",
        "## Every member (test split; chosen on val)",
        "",
        *table(rows, b),
        "",
        "## Notes",
        "",
        *[f"- {k}: {v}" for k, v in ctx["notes"].items()],
        "- Hypervolume: points (test error / baseline's, ORT latency / baseline's, size / "
        "baseline's), all minimised; reference fixed before the run: the baseline (1, 1, 1), "
        "and the baseline with the goal's error tolerance. A method with no member at or "
        "below the reference's error scores 0.",
        "- Sizes: `.acz` artifacts (ours, uniform, baseline), `torch.save` of the pruned "
        "module (Torch-Pruning), the `.onnx` file (ORT static and dynamic int8), `torch.save` "
        "of the state dict (PyTorch dynamic int8); every file was loaded back and the loaded "
        "model is what was tested.",
        "",
    ]
    return "\n".join(lines)
