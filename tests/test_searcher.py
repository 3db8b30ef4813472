import pytest
from optuna.trial import TrialState

from autocompress.errors import ConfigError
from autocompress.search.searcher import ConstrainedOptunaSearch, make_sampler

OBJ = ["accuracy", "latency_ms", "size_kb"]
MODES = ["max", "min", "min"]


def space(trial):
    trial.suggest_float("layers/fc/prune/ratio", 0.0, 0.5)
    return {"distillation/alpha": 0.5}


def searcher(budgets=("size_kb<=60",)):
    s = ConstrainedOptunaSearch(space=space, metric=OBJ, mode=MODES,
                                sampler=make_sampler("random", 0, 8), constraint_names=budgets)
    s.set_search_properties(None, None, {})  # what Tune does when TuneConfig has no metric
    return s


def result(acc, lat, size, constraints, final=1.0):
    return {"accuracy": acc, "latency_ms": lat, "size_kb": size, "constraints": constraints,
            "final": final}


def test_define_by_run_keys_nest_with_slash():
    config = searcher().suggest("t1")
    assert set(config) == {"layers", "distillation"}
    assert 0.0 <= config["layers"]["fc"]["prune"]["ratio"] <= 0.5
    assert config["distillation"] == {"alpha": 0.5}


def test_study_is_multi_objective():
    assert len(searcher().study.directions) == 3


def test_budget_violations_reach_optuna_as_constraints():
    s = searcher()
    s.suggest("good")
    s.suggest("over")
    s.on_trial_complete("good", result(0.90, 1.0, 50.0, [-0.2]))
    # better on every objective, but over budget
    s.on_trial_complete("over", result(0.99, 0.5, 70.0, [0.1]))
    trials = {t.number: t for t in s.study.trials}
    assert trials[0].system_attrs["constraints:size_kb<=60"] == pytest.approx(-0.2)
    assert trials[1].system_attrs["constraints:size_kb<=60"] == pytest.approx(0.1)
    assert [t.number for t in s.study.best_trials] == [0]


def test_scheduler_stopped_trials_are_pruned_not_complete():
    s = searcher()
    s.suggest("stopped")
    s.on_trial_complete("stopped", result(0.5, 1.0, 10.0, [-0.5], final=0.0))
    (t,) = s.study.trials
    assert t.state == TrialState.PRUNED
    assert t.values is None
    assert s.study.best_trials == []


def test_failed_trials_are_failed():
    s = searcher()
    s.suggest("boom")
    s.on_trial_complete("boom", None, error=True)
    assert s.study.trials[0].state == TrialState.FAIL


def test_second_completion_is_ignored():
    s = searcher()
    s.suggest("t")
    s.on_trial_complete("t", result(0.9, 1.0, 10.0, [-1.0]))
    s.on_trial_complete("t", result(0.1, 9.0, 90.0, [1.0]))
    assert s.study.trials[0].values == [0.9, 1.0, 10.0]


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random"])
def test_samplers_by_name_are_seeded(name):
    a = make_sampler(name, 3, 8)
    b = make_sampler(name, 3, 8)
    assert type(a) is type(b)


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(ConfigError, match="search.sampler.*'cmaes'.*'tpe', 'nsga2', 'random'"):
        make_sampler("cmaes", 0, 8)


def durable_searcher(tmp_path, planned):
    import optuna

    s = ConstrainedOptunaSearch(
        space=space, metric=OBJ, mode=MODES, sampler=make_sampler("random", 0, 8),
        planned=planned, storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/o.db"),
        study_name="s")
    s.set_search_properties(None, None, {})
    return s


def resumed(s, tmp_path):
    """The searcher as a resumed driver restores it from Tune's saved state."""
    s.save(str(tmp_path / "searcher.pkl"))
    s.restore(str(tmp_path / "searcher.pkl"))
    return s


def test_a_durable_study_counts_the_planned_trials_and_lost_ones_are_replaced(tmp_path):
    """After a SIGKILL Tune's saved counter may be off; the study is what counts."""
    from ray.tune.search import Searcher

    from autocompress.search.searcher import TUNE_ID, counted, mark_lost

    s = durable_searcher(tmp_path, planned=3)
    for tid in ("a", "b", "c"):
        assert s.suggest(tid) is not None
    assert s.suggest("d") is None  # planned, but not FINISHED while trials run: one may be lost
    assert s.suggest("a") is not None  # a trial already suggested is asked again freely
    assert {t.user_attrs[TUNE_ID] for t in s.study.trials} == {"a", "b", "c"}
    s.on_trial_complete("a", result(0.9, 1.0, 50.0, [-1.0]))
    # "c" was started by a killed driver and never saved by Tune: lost, and replaced
    assert mark_lost(s.study, keep={"a", "b"}) == 1
    assert counted(s.study) == 2
    assert [t.state for t in s.study.trials] == [TrialState.COMPLETE, TrialState.RUNNING,
                                                  TrialState.FAIL]
    s = resumed(s, tmp_path)
    assert s.suggest("e") is not None
    assert s.suggest("f") is None
    s.on_trial_complete("b", result(0.8, 1.0, 50.0, [-1.0]))
    s.on_trial_complete("e", result(0.7, 1.0, 50.0, [-1.0]))
    assert s.suggest("f") == Searcher.FINISHED  # planned, and none runs
    # "a" finished and told Optuna, but its MLflow run was closed as lost: it stops counting
    assert mark_lost(s.study, keep={"a", "b", "e"}, lost=["a"]) == 1
    assert counted(s.study) == 2
    assert mark_lost(s.study, keep={"a", "b", "e"}, lost=["a"]) == 0
    assert resumed(s, tmp_path).suggest("g") is not None


def test_a_restored_trial_the_searcher_state_predates_is_found_by_its_tune_id(tmp_path):
    s = durable_searcher(tmp_path, planned=2)
    s.suggest("a")
    s._ot_trials.clear()  # as if the saved searcher state were older than Tune's trials
    s.on_trial_complete("a", result(0.9, 1.0, 50.0, [-1.0]))
    assert s.study.trials[0].state == TrialState.COMPLETE


def test_a_trial_told_before_the_driver_died_is_not_told_twice(tmp_path):
    """Tune's saved state can predate a trial's end: a resumed search then runs it again."""
    s = durable_searcher(tmp_path, planned=2)
    s.suggest("a")
    s.on_trial_complete("a", result(0.9, 1.0, 50.0, [-1.0]))
    s._completed_trials.clear()  # the searcher state as saved before "a" ended
    s.on_trial_complete("a", result(0.8, 1.0, 50.0, [-1.0]))  # no "cannot tell twice" error
    assert s.study.trials[0].values[0] == 0.9


def test_a_durable_searcher_limits_concurrency_from_the_study(tmp_path):
    """Ray's ConcurrencyLimiter is bypassed: its saved live set can hold lost trials."""
    s = durable_searcher(tmp_path, planned=5)
    assert s.set_max_concurrency(2) is True
    assert s.suggest("a") is not None and s.suggest("b") is not None
    assert s.suggest("c") is None  # two run
    s.on_trial_complete("a", result(0.9, 1.0, 50.0, [-1.0]))
    assert s.suggest("c") is not None
    # the driver dies; Tune never saved "c", so it is lost: its slot is free after the resume
    from autocompress.search.searcher import mark_lost

    mark_lost(s.study, keep={"a", "b"})
    s = resumed(s, tmp_path)
    assert s.suggest("d") is not None and s.suggest("e") is None
    assert searcher().set_max_concurrency(2) is False  # in memory: Ray's limiter does it


def test_settling_keeps_what_tune_or_mlflow_holds_and_fails_what_nothing_will_tell(tmp_path):
    from autocompress.search.searcher import LOST_TRIALS, counted, mark_lost

    s = durable_searcher(tmp_path, planned=4)
    for tid in ("done", "told", "ended", "gone"):
        s.suggest(tid)
    s.on_trial_complete("done", result(0.9, 1.0, 50.0, [-1.0]))
    s.on_trial_complete("told", result(0.8, 1.0, 50.0, [-1.0]))
    # "told" finished in the study but neither Tune nor MLflow holds it; "ended" is Tune's,
    # ended, and was never told (nothing will tell it); "gone" runs for nobody
    assert mark_lost(s.study, keep={"done", "ended"}, live=set()) == 2
    assert set(s.study.user_attrs[LOST_TRIALS]) == {"told", "gone"}
    states = {t.user_attrs["tune_trial_id"]: t.state for t in s.study.trials}
    assert states == {"done": TrialState.COMPLETE, "told": TrialState.COMPLETE,
                      "ended": TrialState.FAIL, "gone": TrialState.FAIL}
    assert counted(s.study) == 2


def test_an_untagged_trial_never_counts(tmp_path):
    from autocompress.search.searcher import counted

    s = durable_searcher(tmp_path, planned=2)
    s.study.ask()  # a driver killed between asking and tagging
    assert counted(s.study) == 0
    assert s.suggest("a") is not None and s.suggest("b") is not None
    assert counted(s.study) == 2
