"""Interrupt a search's driver (Ctrl-C) and resume it: no duplicate and no lost MLflow run."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from autocompress.tracking import load_search
from tests.helpers import small_recipe

pytestmark = pytest.mark.slow
TRIALS = 4


def closed_trials(db) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:  # read-only: no migration
            return c.execute(
                "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                "where t.key = 'autocompress.role' and t.value = 'trial' "
                "and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def write(recipe, tmp):
    raw = {**recipe.to_dict(), "space": str(recipe.resolve(recipe.space))}
    raw.pop("base_dir", None)
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(raw))


def search(tmp, *extra, session: bool = False):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "autocompress.cli", "search", "recipe.yaml",
                             "--quiet", *extra], cwd=tmp, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=session)


def study_file(tmp):
    """The search's Optuna study (one search per test folder)."""
    (found,) = tmp.rglob("optuna.db")
    return found


def run_states(db) -> list[tuple[str, str]]:
    """(trial id, MLflow run status) of every trial run in the store."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return c.execute(
            "select t.value, r.status from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'autocompress.trial_id'").fetchall()


def story(tmp, db) -> str:
    """What MLflow and the study hold, to read when an assertion fails."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        runs = c.execute(
            "select t.value, r.status, coalesce((select substr(value, 1, 30) from tags "
            "where run_uuid = r.run_uuid and key = 'autocompress.failure_reason'), '') "
            "from runs r join tags t on t.run_uuid = r.run_uuid "
            "where t.key = 'autocompress.trial_id' order by r.start_time").fetchall()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{study_file(tmp)}")
    trials = [(t.number, t.state.name, t.user_attrs.get("tune_trial_id")) for t in study.trials]
    return f"runs {runs}; study {trials}; study attrs {study.user_attrs}"


def test_a_search_whose_driver_is_killed_resumes_without_duplicates_or_running_runs(tmp_path):
    """SIGKILL: no handler runs, MLflow keeps RUNNING runs and Tune its last saved state."""
    recipe = small_recipe(tmp_path, trials=TRIALS, epochs=1, concurrency=2, scheduler="none")
    write(recipe, tmp_path)
    db = tmp_path / "mlruns.db"
    first = search(tmp_path, session=True)
    deadline = time.time() + 300
    while closed_trials(db) < 2 and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert first.poll() is None, first.communicate()[1][-2000:]
    os.kill(first.pid, signal.SIGKILL)  # the driver only, mid-search
    first.communicate(timeout=60)
    time.sleep(3)
    with contextlib.suppress(ProcessLookupError):  # Ray's processes the driver left behind
        os.killpg(first.pid, signal.SIGKILL)
    before = run_states(db)
    assert 2 <= len([s for _, s in before if s == "FINISHED"]) < TRIALS

    second = search(tmp_path, "--resume")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    after = run_states(db)
    ids = [trial for trial, _ in after]
    assert len(ids) == len(set(ids)), after  # no duplicate run
    assert {status for _, status in after} <= {"FINISHED", "FAILED"}  # none stuck RUNNING
    resumed = load_search(f"sqlite:///{db}", "test")
    assert resumed.metrics["trials"] == TRIALS, story(tmp_path, db)
    assert {trial for trial, s in before if s == "FINISHED"} <= set(ids)  # none lost
    # a trial the killed driver had started but Tune never saved cannot be continued: its run
    # is closed as lost, and exactly the planned trials ran to the end besides
    lost = [t for t in resumed.trials if t.reason.startswith("lost:")]
    assert all(t.status == "failed" for t in lost)
    assert resumed.metrics["trials_lost"] == len(lost)
    assert len(resumed.trials) - len(lost) == TRIALS, story(tmp_path, db)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{study_file(tmp_path)}")
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), story(tmp_path, db)


def test_an_interrupted_search_resumes_to_exactly_the_planned_trials(tmp_path):
    recipe = small_recipe(tmp_path, trials=TRIALS, epochs=2, concurrency=1, scheduler="none")
    write(recipe, tmp_path)
    db = tmp_path / "mlruns.db"
    first = search(tmp_path)
    deadline = time.time() + 300
    while closed_trials(db) < 1 and first.poll() is None and time.time() < deadline:
        time.sleep(1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err[-2000:]
    assert "--resume" in err
    interrupted = load_search(f"sqlite:///{db}", "test")
    done_before = {t.trial_id for t in interrupted.trials if t.status == "completed"}
    assert 1 <= len(done_before) < TRIALS

    second = search(tmp_path, "--resume")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    resumed = load_search(f"sqlite:///{db}", "test")
    assert resumed.run_id == interrupted.run_id  # the same search, continued
    ids = [t.trial_id for t in resumed.trials]
    assert len(ids) == len(set(ids)) == TRIALS  # no duplicate, none lost
    assert done_before <= set(ids)
    assert all(t.status in ("completed", "infeasible", "failed") for t in resumed.trials)
    assert resumed.metrics["trials"] == TRIALS
    assert "--resume" not in err


def test_resume_without_an_interrupted_search_is_a_clear_error(tmp_path):
    recipe = small_recipe(tmp_path)
    write(recipe, tmp_path)
    proc = search(tmp_path, "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "nothing to resume" in err
