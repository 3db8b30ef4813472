"""Optuna inside Ray Tune: multi-objective, with budget constraints and honest pruning.

Ray's ``OptunaSearch`` tells Optuna only the objective values. This subclass also
(1) sets each budget's violation on the Optuna trial (``Trial.set_constraint``) so constrained
samplers keep infeasible candidates out of the front, and (2) tells trials that the scheduler
stopped before their final result as PRUNED instead of COMPLETE with truncated metrics.
With a durable study (an RDB storage) it also owns the trial count: it stops suggesting once
the study holds ``planned`` trials that were not lost, and tags each Optuna trial with its Tune
trial id, so a search resumed after its driver was killed runs exactly the planned trials
whatever Tune's own saved counter says (see ``mark_lost``).
It uses ``OptunaSearch._ot_trials`` / ``_ot_study`` (private): Ray's minor version is pinned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from autocompress.errors import invalid
from autocompress.search.config import SAMPLERS
from autocompress.search.results import TrialStatus


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by name (tpe, nsga2, random), seeded."""
    if name == "tpe":
        startup = max(2, min(10, trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True)
    if name == "nsga2":
        population = max(4, min(50, trials // 3))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise invalid("search.sampler", name, SAMPLERS)


TUNE_ID = "tune_trial_id"  # Optuna trial user attribute: the Tune trial it belongs to
LOST_TRIALS = "lost_trials"  # Optuna study user attribute: Tune ids of the trials lost to a kill


def counted(study: optuna.Study) -> int:
    """Trials the study holds that count toward the plan (all but the lost ones)."""
    lost = set(study.user_attrs.get(LOST_TRIALS, ()))
    return sum(t.user_attrs.get(TUNE_ID) not in lost for t in study.get_trials(deepcopy=False))


def mark_lost(study: optuna.Study, known: set[str], lost: Iterable[str] = ()) -> int:
    """Record as lost the trials no Tune trial in ``known`` continues; how many are new.

    They were started by a driver killed before Tune saved them: a resumed search cannot
    continue them, so they stop counting toward the plan and another trial takes their place.
    Those still RUNNING in the study are failed; ``lost`` adds trials whose MLflow run was
    closed as lost (one the searcher had already been told of counts no more than the others).
    """
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if t.user_attrs.get(TUNE_ID) not in known]
    for trial in running:
        study.tell(trial.number, state=TrialState.FAIL)
    before = set(study.user_attrs.get(LOST_TRIALS, ()))
    after = before | {t.user_attrs.get(TUNE_ID) for t in running} | set(lost)
    after.discard(None)
    if after != before:
        study.set_user_attr(LOST_TRIALS, sorted(after))
    return len(after - before)


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that reports budget constraints and scheduler-stopped trials faithfully."""

    def __init__(self, *args, constraint_names: tuple[str, ...] = (),
                 planned: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.constraint_names = constraint_names
        self.planned = planned
        self.durable = kwargs.get("storage") is not None

    def suggest(self, trial_id: str) -> dict | None:  # noqa: D102
        new = trial_id not in self._ot_trials
        if new and self.durable and self.planned and counted(self._ot_study) >= self.planned:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if new and trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(TUNE_ID, trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: Mapping | None = None,
                          error: bool = False) -> None:  # noqa: D102
        if trial_id not in self._ot_trials:
            self._adopt(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if self._already_told(ot_trial):  # a finished trial a resumed search ran again
            self._completed_trials.add(trial_id)
            return
        if error or not result or TrialStatus.parse(result.get("status")).ended_badly:
            self._tell(trial_id, ot_trial, None, TrialState.FAIL)
            return
        if not result.get("final"):
            self._tell(trial_id, ot_trial, None, TrialState.PRUNED)
            return
        for name, value in zip(self.constraint_names, result.get("constraints", ()), strict=False):
            ot_trial.set_constraint(name, float(value))
        super().on_trial_complete(trial_id, result, error)

    def _already_told(self, ot_trial: optuna.trial.Trial) -> bool:
        """Whether the durable study has this trial finished (told before the driver died)."""
        if not self.durable:
            return False
        return self._ot_study.get_trials(deepcopy=False)[ot_trial.number].state.is_finished()

    def _adopt(self, trial_id: str) -> None:
        """Find a restored trial the saved searcher state predates, by its Tune id."""
        if not self.durable:
            return
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.user_attrs.get(TUNE_ID) == trial_id:
                self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, frozen._trial_id)

    def _tell(self, trial_id, ot_trial, values, state) -> None:
        self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> optuna.Study:
        """The underlying Optuna study."""
        return self._ot_study
