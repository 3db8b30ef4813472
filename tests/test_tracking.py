import multiprocessing as mp

import pytest

from autocompress.errors import ConfigError
from autocompress.hardware import parse_budgets
from autocompress.tracking import (
    SearchTracker,
    TrialRecord,
    front_of,
    init_store,
    load_search,
    normalized_hypervolume,
    pick,
)
from autocompress.tracking.store import client, normalize_uri


def _writer(uri: str, index: int, queue) -> None:
    try:
        c = client(uri)
        exp = c.get_experiment_by_name("race")
        run = c.create_run(exp.experiment_id, run_name=f"w{index}")
        for step in range(50):
            c.log_metric(run.info.run_id, "x", float(step), step=step)
        c.set_terminated(run.info.run_id)
        queue.put("ok")
    except Exception as exc:  # noqa: BLE001
        queue.put(repr(exc))


def test_store_initialised_once_then_written_by_many_processes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    c = init_store(uri)
    c.create_experiment("race")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(uri, i, queue)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    outcomes = [queue.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * 4
    runs = c.search_runs([c.get_experiment_by_name("race").experiment_id])
    assert len(runs) == 4


def test_relative_sqlite_uri_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert normalize_uri("sqlite:///mlruns.db") == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert normalize_uri("http://localhost:5000") == "http://localhost:5000"


def test_bad_uri_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="tracking.uri"):
        init_store("bogus://nowhere")


def rec(i, acc, lat, size, status="completed", feasible=1.0):
    return TrialRecord(f"run{i}", str(i), status,
                       {"accuracy": acc, "latency_ms": lat, "size_kb": size, "feasible": feasible},
                       {})


def test_front_keeps_only_feasible_completed_non_dominated():
    trials = [
        rec(0, 0.90, 1.0, 50),
        rec(1, 0.95, 1.0, 60),
        rec(2, 0.89, 1.1, 55),                       # dominated by 0
        rec(3, 0.99, 0.1, 1, status="pruned"),       # stopped early: never on the front
        rec(4, 0.99, 0.1, 1, feasible=0.0),          # over budget
        rec(5, 0.80, 0.5, 10),
    ]
    assert [t.trial_id for t in front_of(trials)] == ["0", "1", "5"]


def test_normalized_hypervolume_grows_with_a_better_point():
    baseline = {"latency_ms": 1.0, "size_kb": 100.0}
    one = [rec(0, 0.9, 1.0, 50)]
    two = one + [rec(1, 0.95, 0.5, 20)]
    assert normalized_hypervolume(one, baseline) == pytest.approx(0.9 * 1.0 * 1.5)
    assert normalized_hypervolume(two, baseline) > normalized_hypervolume(one, baseline)


def test_tracker_records_are_read_back_and_picked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = SearchTracker(uri, "exp")
    tracker.start_search("exp", {"search.trials": 3}, {"recipe.yaml": "name: exp\n"},
                         {"accuracy": 0.99, "latency_ms": 1.0, "size_kb": 100.0})
    artifact = tmp_path / "model.acz"
    artifact.write_bytes(b"artifact bytes")
    rows = {"a": (0.97, 0.8, 40.0), "b": (0.93, 0.6, 20.0), "c": (0.90, 0.9, 45.0)}
    for trial_id, (acc, lat, size) in rows.items():
        tracker.start_trial(trial_id, {"layers/fc/prune/ratio": "0.5"})
        tracker.log_result(trial_id, {"accuracy": acc, "latency_ms": lat, "size_kb": size,
                                      "feasible": 1.0}, step=1)
        tracker.finish_trial(trial_id, "completed", artifact=str(artifact))
    tracker.start_trial("d", {})
    tracker.finish_trial("d", "failed", "RuntimeError: boom")
    record = load_search(uri, "exp")
    front = front_of(record.trials)
    tracker.finish_search([t.run_id for t in front],
                          [t.run_id for t in record.trials if t not in front], {"hypervolume": 0.1})

    record = load_search(uri, "exp")
    assert record.baseline()["accuracy"] == 0.99
    assert {t.trial_id: t.status for t in record.trials} == {
        "a": "completed", "b": "completed", "c": "completed", "d": "failed"}
    assert [t.trial_id for t in record.front()] == ["a", "b"]
    failed = next(t for t in record.trials if t.trial_id == "d")
    assert failed.reason == "RuntimeError: boom"

    out = tmp_path / "picked.acz"
    chosen = pick(uri, "exp", parse_budgets(["size_kb<=30"]), "accuracy", out)
    assert chosen.trial_id == "b" and out.read_bytes() == b"artifact bytes"
    assert pick(uri, "exp", (), "accuracy").trial_id == "a"
    with pytest.raises(ConfigError, match="no Pareto member"):
        pick(uri, "exp", parse_budgets(["size_kb<=5"]))
    with pytest.raises(ConfigError, match="unknown metric 'speed'"):
        pick(uri, "exp", (), "speed")
    with pytest.raises(ConfigError, match="experiment 'nope' not found"):
        load_search(uri, "nope")
