"""What a search's trials came to, in words: reasons of failures and budgets nobody meets.

Pure functions over :class:`~autocompress.tracking.TrialRecord` s (or anything with
``status``, ``reason`` and ``metrics``), used by the driver to stop early with a clear message
and to write the summary of a search in which no trial completed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from autocompress.errors import AutocompressError

__all__ = ["NoTrialCompleted", "best_measured", "infeasible_warning", "reasons_summary"]

EARLY_TRIALS = 5  # after this many trials all infeasible, say which budget nothing meets
_SHOWN = 3  # distinct reasons shown per status


class NoTrialCompleted(AutocompressError):
    """A search ended without a single completed trial (``summary`` says why)."""

    def __init__(self, experiment: str, summary: str, statuses: dict[str, int]):
        super().__init__(f"search {experiment!r}: no trial completed; {summary}")
        self.summary, self.statuses = summary, statuses


def reasons_summary(trials: Iterable[Any]) -> str:
    """``3 failed: ValueError: x (2), KeyError: y; 2 infeasible: breaks size_kb<=1 ...``."""
    by_status: dict[str, Counter] = {}
    for t in trials:
        by_status.setdefault(t.status, Counter())[_short(t.reason) or "no reason recorded"] += 1
    parts = []
    for status, reasons in sorted(by_status.items(), key=lambda kv: -sum(kv[1].values())):
        shown = ", ".join(f"{r} ({n})" if n > 1 else r for r, n in reasons.most_common(_SHOWN))
        more = len(reasons) - _SHOWN
        parts.append(f"{sum(reasons.values())} {status}: {shown}"
                     + (f", and {more} other reasons" if more > 0 else ""))
    return "; ".join(parts) or "no trial ran"


def best_measured(budgets: Sequence[Any], trials: Iterable[Any]) -> dict[str, float]:
    """Per budget (its text), the value closest to meeting it over ``trials``.

    The smallest measured for ``<=`` budgets, the largest for ``>=`` ones; budgets whose metric
    no trial measured are left out.
    """
    trials = list(trials)
    out: dict[str, float] = {}
    for b in budgets:
        values = [t.metrics[b.key] for t in trials
                  if isinstance(t.metrics.get(b.key), float) and math.isfinite(t.metrics[b.key])]
        if values:
            out[str(b)] = min(values) if b.op == "<=" else max(values)
    return out


def infeasible_warning(budgets: Sequence[Any], trials: Sequence[Any],
                       early: int = EARLY_TRIALS) -> str | None:
    """A warning when the first ``early`` finished trials are all infeasible, else None.

    Names each budget with the best value measured, e.g. ``size_kb<=0.01: smallest measured
    3.2``; the budgets none of them met are listed first.
    """
    if len(trials) < early or any(t.status != "infeasible" for t in trials):
        return None
    best = best_measured(budgets, trials)
    unmet = [b for b in budgets if str(b) in best and b.violation(best[str(b)]) > 0]
    shown = ", ".join(f"{b}: {'smallest' if b.op == '<=' else 'largest'} measured "
                      f"{best[str(b)]:.4g}" for b in unmet or budgets if str(b) in best)
    return (f"the first {len(trials)} trials are all infeasible; no candidate met "
            f"{', '.join(str(b) for b in unmet) or 'the budgets'} ({shown}); consider looser "
            "budgets or a space that compresses more")


def _short(reason: str, width: int = 160) -> str:
    line = " ".join((reason or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"
