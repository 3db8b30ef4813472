"""The driver-side Tune callback: every trial ends in MLflow with its status and reason."""

from types import SimpleNamespace

from autocompress.search.callbacks import TrackingCallback
from autocompress.tracking import SearchTracker, load_search


def make(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = SearchTracker(uri, "cb")
    tracker.start_search("cb", {}, {}, {"accuracy": 1.0, "latency_ms": 1.0, "size_kb": 1.0})
    callback = TrackingCallback(tracker, lambda config: {"layers/fc/prune/ratio": "0.5"})
    return uri, callback


def trial(tmp_path, trial_id, last_result=None, checkpoint=None, error=None):
    error_file = None
    if error:
        error_file = tmp_path / f"{trial_id}.txt"
        error_file.write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
    return SimpleNamespace(trial_id=trial_id, config={}, last_result=last_result,
                           checkpoint=checkpoint, error_file=str(error_file) if error else None)


def report(callback, t, **metrics):
    result = {"training_iteration": 1, "accuracy": 0.9, "latency_ms": 1.0, "size_kb": 10.0,
              "feasible": 1.0, "constraints": [-0.5], **metrics}
    callback.on_trial_result(0, [], t, result)
    t.last_result = result


def test_statuses_reasons_and_artifacts_are_recorded(tmp_path):
    uri, cb = make(tmp_path)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.acz").write_bytes(b"x")

    done = trial(tmp_path, "done", checkpoint=SimpleNamespace(path=str(ckpt)))
    cb.on_trial_start(0, [], done)
    report(cb, done, final=1.0, status="completed")
    cb.on_trial_complete(0, [], done)

    stopped = trial(tmp_path, "stopped")
    cb.on_trial_start(0, [], stopped)
    report(cb, stopped, final=0.0, status="running")
    cb.on_trial_complete(0, [], stopped)

    over = trial(tmp_path, "over")
    report(cb, over, final=1.0, status="infeasible", feasible=0.0, constraints=[0.3])
    cb.on_trial_complete(0, [], over)

    crashed = trial(tmp_path, "crashed", error="PlanError: fc: svd rank 99 exceeds 10")
    cb.on_trial_start(0, [], crashed)
    cb.on_trial_error(0, [], crashed)

    trials = {t.trial_id: t for t in load_search(uri, "cb").trials}
    assert {k: t.status for k, t in trials.items()} == {
        "done": "completed", "stopped": "pruned", "over": "infeasible", "crashed": "failed"}
    assert trials["crashed"].reason == "PlanError: fc: svd rank 99 exceeds 10"
    assert trials["stopped"].reason == "stopped early by the scheduler"
    assert trials["over"].metrics["violation/0"] == 0.3  # unnamed: positional (old results)
    assert trials["done"].params == {"layers/fc/prune/ratio": "0.5"}
    from autocompress.tracking.store import client

    artifacts = [a.path for a in client(uri).list_artifacts(trials["done"].run_id, "model")]
    assert {"model/model.acz", "model/MLmodel"} <= set(artifacts)  # file + MLflow Model
