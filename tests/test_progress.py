"""The search's progress view, fed the results Tune would hand its callback."""

import io
import pickle
from types import SimpleNamespace

from autocompress.search.progress import SearchProgress
from autocompress.search.progress_callback import ProgressCallback
from autocompress.search.results import TrialResult, TrialStatus


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def trial(trial_id, result=None, error=""):
    return SimpleNamespace(trial_id=trial_id, last_result=result, error_msg=error,
                           config={"plan": trial_id})


def final(status, accuracy, latency, size, violation=-1.0, reason=""):
    return TrialResult(status, {"accuracy": accuracy, "latency_ms": latency, "size_kb": size},
                       {"violation/size_kb": violation}, reason=reason).to_report()


def run_search(stream, quiet=False):
    clock = Clock()
    view = SearchProgress("accuracy", "max", planned=5, stream=stream, quiet=quiet, clock=clock)
    callback = ProgressCallback(view, lambda config: f"conv1: prune 50% · {config['plan']}")
    view.phase("baseline measured: accuracy 0.97")
    clock.now = 10.0
    for name in ("a", "b", "c"):
        callback.on_trial_start(0, [], trial(name))
    clock.now = 20.0
    callback.on_trial_complete(0, [], trial("a", final("completed", 0.95, 1.0, 20.0)))
    callback.on_trial_complete(0, [], trial("b", {"accuracy": 0.5, "final": 0.0}))  # ASHA
    clock.now = 30.0
    callback.on_trial_start(0, [], trial("d"))
    callback.on_trial_complete(0, [], trial("c", final("infeasible", 0.9, 0.5, 80.0, 20.0,
                                                       "breaks size_kb<=60 untrained")))
    callback.on_trial_error(0, [], trial("d", error="Traceback\nValueError: boom"))
    clock.now = 40.0
    callback.on_trial_start(0, [], trial("e"))
    callback.on_trial_complete(0, [], trial("e", final("completed", 0.93, 0.6, 15.0)))
    callback.on_experiment_end([])
    return view, stream.getvalue().splitlines()


def test_plain_lines_one_per_trial_and_a_status_after_each():
    view, lines = run_search(io.StringIO())
    assert lines[0] == "[0s] baseline measured: accuracy 0.97"
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert [line.split()[1] for line in trial_lines] == ["t001", "t002", "t003", "t004", "t005"]
    assert trial_lines[0] == ("trial t001  completed  accuracy 0.95  latency 1 ms  size 20 KB  "
                              "conv1: prune 50% · a")
    assert " pruned " in trial_lines[1] and "(stopped early by the scheduler)" in trial_lines[1]
    assert " infeasible " in trial_lines[2] and "(breaks size_kb<=60 untrained)" in trial_lines[2]
    assert " failed " in trial_lines[3] and "(ValueError: boom)" in trial_lines[3]
    status = [line for line in lines if " done · " in line]
    assert len(status) == 5
    assert status[0].startswith("1/5 done · 2 running · 0 pruned · 0 infeasible · 0 failed · "
                                "best accuracy within budgets 0.95 · front 1")
    assert status[-1].startswith("5/5 done · 0 running · 1 pruned · 1 infeasible · 1 failed · "
                                 "best accuracy within budgets 0.95 · front 2")
    assert view.counts == {"completed": 2, "pruned": 1, "infeasible": 1, "failed": 1}


def test_eta_is_the_pace_since_the_first_trial_started():
    view = SearchProgress(planned=4, stream=io.StringIO(), clock=Clock())
    view.clock.now = 100.0  # set-up took 100 s: not part of the pace
    view.trial_started("a")
    view.clock.now = 110.0
    view.trial_finished("a", "t001", TrialResult(TrialStatus.PRUNED, final=False))
    assert view.eta_text() == "30s"  # 10 s per trial, 3 left
    assert "elapsed 1m50s · ETA 30s" in view.status_line()


def test_quiet_prints_phases_only():
    _, lines = run_search(io.StringIO(), quiet=True)
    assert lines == ["[0s] baseline measured: accuracy 0.97"]


def test_a_minimised_metric_keeps_the_lowest_as_best():
    view = SearchProgress("mse", "min", planned=2, stream=io.StringIO())
    for value in (0.3, 0.1):
        view.trial_finished("x", "t", TrialResult(
            TrialStatus.COMPLETED, {"mse": value, "latency_ms": 1.0, "size_kb": 1.0}))
    assert view.best == 0.1


def test_live_view_on_a_terminal_draws_the_status_and_pickles_without_it():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    view, _ = run_search(Terminal())
    assert view.live and view._live is None  # stopped at the experiment's end
    clone = pickle.loads(pickle.dumps(view))  # Tune saves callbacks with its state
    assert clone.counts == view.counts and clone._live is None
