"""What a user watches during ``search``: phases, one line per finished trial, and a status.

:class:`SearchProgress` keeps the counts (done, running, pruned, infeasible, failed), the best
quality within budgets, the size of the front so far, elapsed time and an estimate of the time
left. On a terminal it draws a live rich status line below the trial lines; elsewhere (CI logs,
``submit --follow``) it prints one plain line per event. It imports no Ray:
:class:`~autocompress.search.progress_callback.ProgressCallback` feeds it from Ray Tune.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from autocompress.pareto import non_dominated, orient
from autocompress.search.results import TrialResult, TrialStatus

__all__ = ["SearchProgress", "epoch_callback"]

_COUNTED = ("completed", "pruned", "infeasible", "failed")


class SearchProgress:
    """The progress of one search, printed as it goes.

    Args:
        metric: The quality metric's key (on val), e.g. ``accuracy``.
        mode: ``max`` or ``min``: the metric's direction.
        planned: How many trials the search runs.
        stream: Where to write (default stdout).
        live: Draw a live status line (rich); default: when ``stream`` is a terminal.
        quiet: Print phases only (no trial lines, no status).
        clock: Seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, metric: str = "accuracy", mode: str = "max", planned: int = 0,
                 stream: TextIO | None = None, live: bool | None = None, quiet: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.metric, self.mode, self.planned = metric, mode, planned
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.clock = clock
        self.started = clock()
        self.first_trial: float | None = None  # the pace of trials is timed from here
        self.running: set[str] = set()
        self.counts = dict.fromkeys(_COUNTED, 0)
        self.points: list[tuple[float, ...]] = []  # completed within budgets, oriented
        self.best: float | None = None
        self._live = None
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = (is_tty if live is None else live) and not quiet

    def __getstate__(self) -> dict[str, Any]:
        """Tune saves its callbacks with the search's state: no stream, no live view."""
        return {**self.__dict__, "stream": None, "_live": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, stream=sys.stdout)

    # events -------------------------------------------------------------------------------
    def phase(self, text: str) -> None:
        """A phase of the search (printed in every mode, ``--quiet`` included)."""
        self._print(f"[{self._clock_text()}] {text}")

    def trial_started(self, trial_id: str) -> None:
        """A trial started running."""
        if self.first_trial is None:
            self.first_trial = self.clock()
        self.running.add(trial_id)
        self._refresh()

    def trial_finished(self, trial_id: str, name: str, result: TrialResult,
                       plan: str = "") -> None:
        """A trial ended: count it, print its line and the status."""
        self.running.discard(trial_id)
        status = _counted(result.status)
        self.counts[status] += 1
        if status == "completed" and result.feasible:
            self._add_point(result.metrics)
        if not self.quiet:
            self._print(self.trial_line(name, result, plan))
            if not self.live:
                self._print(self.status_line())
        self._refresh()

    def close(self) -> None:
        """Stop the live view (its last status stays on screen)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    # text ---------------------------------------------------------------------------------
    @property
    def done(self) -> int:
        """Trials that ended, whatever their outcome."""
        return sum(self.counts.values())

    def status_line(self) -> str:
        """``3/8 done · 2 running · 1 pruned · 1 infeasible · 0 failed · best ... · ETA``."""
        best = "-" if self.best is None else f"{self.best:.4g}"
        return (f"{self.done}/{self.planned} done · {len(self.running)} running · "
                f"{self.counts['pruned']} pruned · {self.counts['infeasible']} infeasible · "
                f"{self.counts['failed']} failed · best {self.metric} within budgets {best} · "
                f"front {len(non_dominated(self.points)) if self.points else 0} · "
                f"elapsed {_duration(self.elapsed)} · ETA {self.eta_text()}")

    def trial_line(self, name: str, result: TrialResult, plan: str = "") -> str:
        """One finished trial: name, status, quality, latency, size, plan (and why, if bad)."""
        m = result.metrics
        parts = [f"trial {name}", _counted(result.status),
                 f"{self.metric} {_num(m.get(self.metric))}",
                 f"latency {_num(m.get('latency_ms'))} ms", f"size {_num(m.get('size_kb'))} KB",
                 plan or "-"]
        if result.reason and result.status != TrialStatus.COMPLETED:
            parts.append(f"({result.reason})")
        return "  ".join(parts)

    @property
    def elapsed(self) -> float:  # noqa: D102
        return self.clock() - self.started

    def eta_text(self) -> str:
        """Time left at the pace of the trials so far (``-`` before the first ends).

        The pace is timed from the first trial's start, so set-up (data, baseline) does not
        count; with trials run concurrently it is their throughput.
        """
        if not self.done or not self.planned or self.first_trial is None:
            return "-"
        left = max(0, self.planned - self.done)
        return _duration((self.clock() - self.first_trial) / self.done * left)

    # internals ----------------------------------------------------------------------------
    def _add_point(self, metrics: Mapping[str, float]) -> None:
        goals = {self.metric: self.mode, "latency_ms": "min", "size_kb": "min"}
        if not all(_finite(metrics.get(k)) for k in goals):
            return
        self.points.append(orient(metrics, goals))
        value = metrics[self.metric]
        better = self.best is None or (value > self.best if self.mode == "max"
                                       else value < self.best)
        self.best = value if better else self.best

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def _refresh(self) -> None:
        if not self.live:
            return
        from rich.text import Text

        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(Text(""), console=Console(file=self.stream),
                              refresh_per_second=4, transient=False)
            self._live.start()
        self._live.update(Text(self.status_line(), style="bold"))

    def _clock_text(self) -> str:
        return _duration(self.elapsed)


def epoch_callback(progress: SearchProgress, what: str, epochs: int):
    """A Lightning callback printing one phase line per epoch (the baseline's training)."""
    import pytorch_lightning as pl

    class _EpochLines(pl.Callback):
        def on_validation_epoch_end(self, trainer, module):  # noqa: D102
            if trainer.sanity_checking:
                return
            scores = {k: float(v) for k, v in trainer.callback_metrics.items()
                      if k.startswith("val_")}
            text = " ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items()))
            progress.phase(f"{what}: epoch {trainer.current_epoch + 1}/{epochs} {text}".rstrip())

    return _EpochLines()


def _counted(status: TrialStatus) -> str:
    """The status as counted: diverged trials count as failed, running as pruned."""
    if status.ended_badly:
        return "failed"
    if status == TrialStatus.RUNNING:
        return "pruned"
    return status.value


def _num(value: float | None) -> str:
    return "-" if value is None or not _finite(value) else f"{value:.4g}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
