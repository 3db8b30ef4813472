"""Pure figures of a finished comparison: rows, hypervolumes and the issue's goals.

Quality is the test error (1 - accuracy). Hypervolumes are in baseline units,
``(error / baseline error, latency / baseline latency, size / baseline size)``, all minimised,
with reference points fixed before the run:

- ``hv``: the baseline itself, ``(1, 1, 1)``: only members at or below the baseline's test error,
  latency and size add volume (a free, perfect model would score 1);
- ``hv_tol``: the baseline with the goal's tolerance on error,
  ``((e0 + tolerance) / e0, 1, 1)`` (0.1 pt for LeNet-5, 1 pt for MiniLM).
"""

from __future__ import annotations

from dataclasses import dataclass

from autocompress.pareto import hypervolume


@dataclass(frozen=True)
class Row:
    """One candidate's reported figures."""

    method: str
    label: str
    error: float  # test, of this ORT form (torch's when there is none)
    ort_ms: float | None
    ort_form: str
    torch_ms: float | None
    torch_error: float | None
    size: int
    val_quality: float | None
    plan: str
    path: str = ""  # the file whose bytes are ``size``

    def axis_ms(self, torch_only: bool) -> float | None:
        return self.torch_ms if torch_only else self.ort_ms


def rows_of(candidates) -> list[Row]:
    """A :class:`Row` per measured deployed form: one per ORT graph (float, int8), else torch.

    A candidate with two ORT forms gives two points, each with its own latency and test error
    (the label says which); one that could not be measured is left out.
    """
    out = []
    for c in candidates:
        f = c.figures
        torch_q = f.get("torch_test_quality")
        torch_e = None if torch_q is None else 1.0 - torch_q
        forms = f.get("ort") or {}
        common = dict(torch_ms=f.get("torch_ms"), torch_error=torch_e, size=c.size_bytes,
                      val_quality=c.val_quality, plan=c.plan, path=str(c.path))
        for form, figures in forms.items():
            label = f"{c.label} [{form}]" if len(forms) > 1 else c.label
            out.append(Row(c.method, label, 1.0 - figures["test_quality"], figures["ms"],
                           form, **common))
        if not forms and torch_e is not None:
            out.append(Row(c.method, c.label, torch_e, None, "-", **common))
    return out


def _floor(error: float, n_test: int) -> float:
    return max(error, 1.0 / max(n_test, 1))  # a 0-error baseline still normalises


def hypervolumes(rows: list[Row], base: Row, tolerance: float, n_test: int) -> dict:
    """Per method: ``hv`` and ``hv_tol`` (see the module docstring) and the axis used.

    Methods without an ORT form (PyTorch dynamic int8) are scored on the cpu-torch axis
    against the baseline's cpu-torch latency.
    """
    e0 = _floor(base.error, n_test)
    out = {}
    for method in dict.fromkeys(r.method for r in rows if r.method != "baseline"):
        members = [r for r in rows if r.method == method]
        torch_only = all(r.ort_ms is None for r in members)
        b_ms = base.axis_ms(torch_only)
        points = [(r.error / e0, r.axis_ms(torch_only) / b_ms, r.size / base.size)
                  for r in members if r.axis_ms(torch_only) is not None]
        out[method] = {
            "hv": hypervolume(points, (1.0, 1.0, 1.0)) if points else 0.0,
            "hv_tol": hypervolume(points, ((e0 + tolerance) / e0, 1.0, 1.0)) if points else 0.0,
            "axis": "cpu-torch" if torch_only else "ORT",
            "members": len(members),
        }
    return out


def within(rows: list[Row], base: Row, tolerance: float) -> list[Row]:
    """Compressed rows whose test error is at most the baseline's + ``tolerance``."""
    return [r for r in rows if r.method != "baseline" and r.error <= base.error + tolerance + 1e-12]


def speedup(r: Row, base: Row) -> float | None:
    return base.ort_ms / r.ort_ms if r.ort_ms and base.ort_ms else None


def goals(rows: list[Row], base: Row, suite, hv: dict) -> list[dict]:
    """The issue's goals for this suite: each with its measured figure and met / missed."""
    ok = within(rows, base, suite.tolerance)
    ours = [r for r in ok if r.method in ("tpe", "nsga2")]
    tol = f"<= +{100 * suite.tolerance:g} pt test error"
    out = [_best_speedup(ours, base, suite, tol), _best_ratio(ours, base, suite, tol)]
    if suite.name == "lenet5":
        out.append(_ahead_of_tp(rows, base))
    if suite.name == "minilm":
        both = [r for r in ours if (speedup(r, base) or 0) >= suite.speedup_goal
                and base.size / r.size >= suite.ratio_goal]
        out.append({"goal": f">= {suite.speedup_goal:g}x ORT speed-up AND >= "
                            f"{suite.ratio_goal:g}x smaller, one member, {tol}",
                    "measured": f"{len(both)} member(s)", "met": bool(both)})
    for ours_m in ("tpe", "nsga2"):
        for other in ("uniform", "random"):
            out.append(_hv_goal(hv, ours_m, other))
    return out


def _best_speedup(ours, base, suite, tol) -> dict:
    best = max(ours, key=lambda r: speedup(r, base) or 0.0, default=None)
    value = speedup(best, base) if best else None
    return {"goal": f">= {suite.speedup_goal:g}x ORT speed-up (TPE/NSGA-II), {tol}",
            "measured": "no member within tolerance" if value is None else
            f"{value:.2f}x ({best.method} {best.label}, error {100 * best.error:.2f}%)",
            "met": value is not None and value >= suite.speedup_goal}


def _best_ratio(ours, base, suite, tol) -> dict:
    best = max(ours, key=lambda r: base.size / r.size, default=None)
    value = base.size / best.size if best else None
    return {"goal": f">= {suite.ratio_goal:g}x smaller artifact (TPE/NSGA-II), {tol}",
            "measured": "no member within tolerance" if value is None else
            f"{value:.1f}x ({best.method} {best.label}, {best.size:,} bytes)",
            "met": value is not None and value >= suite.ratio_goal}


def _ahead_of_tp(rows, base) -> dict:
    tp = next((r for r in rows if r.method == "torch-pruning"), None)
    goal = "ahead of Torch-Pruning uniform 50 %: faster on ORT at equal or lower test error"
    if tp is None or tp.ort_ms is None:
        return {"goal": goal, "measured": "Torch-Pruning not measured", "met": False}
    better = [r for r in rows if r.method in ("tpe", "nsga2") and r.error <= tp.error
              and r.ort_ms is not None and r.ort_ms < tp.ort_ms]
    best = min(better, key=lambda r: r.ort_ms, default=None)
    text = (f"TP {speedup(tp, base):.2f}x at {100 * tp.error:.2f}%; " +
            ("no member of ours at <= its error is faster" if best is None else
             f"ours {speedup(best, base):.2f}x at {100 * best.error:.2f}% ({best.method} "
             f"{best.label})"))
    return {"goal": goal, "measured": text, "met": best is not None}


def _hv_goal(hv: dict, ours: str, other: str) -> dict:
    a, b = hv.get(ours, {}).get("hv", 0.0), hv.get(other, {}).get("hv", 0.0)
    at, bt = hv.get(ours, {}).get("hv_tol", 0.0), hv.get(other, {}).get("hv_tol", 0.0)
    ratio = a / b if b > 0 else (float("inf") if a > 0 else float("nan"))
    ratio_t = at / bt if bt > 0 else (float("inf") if at > 0 else float("nan"))
    return {"goal": f"hypervolume {ours} >= 1.2x {other}'s (reference = baseline)",
            "measured": f"{a:.4f} vs {b:.4f} -> {ratio:.2f}x (with the goal's tolerance: "
                        f"{at:.4f} vs {bt:.4f} -> {ratio_t:.2f}x)",
            "met": ratio >= 1.2}
