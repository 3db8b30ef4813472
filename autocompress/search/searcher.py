"""Optuna inside Ray Tune: multi-objective, with budget constraints and honest pruning.

Ray's ``OptunaSearch`` tells Optuna only the objective values. This subclass also
(1) sets each budget's violation on the Optuna trial (``Trial.set_constraint``) so constrained
samplers keep infeasible candidates out of the front, and (2) tells trials that the scheduler
stopped before their final result as PRUNED instead of COMPLETE with truncated metrics.
With a durable study (an RDB storage) it also owns the trial count and the concurrency: it
stops suggesting once the study holds ``planned`` trials that were not lost, and while Tune's
``max_concurrent_trials`` of them run; each Optuna trial is tagged with its Tune trial id before
it is sampled. A search resumed after its driver was killed then runs exactly the planned
trials, whatever Tune's own saved counter and Ray's ``ConcurrencyLimiter`` (whose saved set of
live trials can hold lost trials, whose slots never free, and miss restored ones, whose
completion it then drops) say (see ``mark_lost``).
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
    return len(_kept(study))


def _kept(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    lost = set(study.user_attrs.get(LOST_TRIALS, ()))
    return [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get(TUNE_ID) is not None and t.user_attrs[TUNE_ID] not in lost]


def mark_lost(study: optuna.Study, keep: set[str], live: set[str] | None = None,
              lost: Iterable[str] = ()) -> int:
    """Settle the study with what Tune and MLflow hold after a kill; how many trials newly lost.

    A driver killed mid-search leaves trials in the study that no Tune trial continues and no
    MLflow run records: they stop counting toward the plan (another trial takes their place).

    Args:
        study: The durable study.
        keep: Tune ids that count: the trials Tune holds and those MLflow records (not lost).
        live: Tune ids Tune will still run (None: those in ``keep``); trials still RUNNING in
            the study that are not live are failed, as nothing will ever tell them.
        lost: Tune ids whose MLflow run was closed as lost (counted no more even when the
            searcher had been told of them).
    """
    live = keep if live is None else live
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING and trial.user_attrs.get(TUNE_ID) not in live:
            study.tell(trial.number, state=TrialState.FAIL)
    before = set(study.user_attrs.get(LOST_TRIALS, ()))
    tune_ids = {t.user_attrs.get(TUNE_ID) for t in trials} - {None}
    after = before | (tune_ids - set(keep)) | set(lost)
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
        self.max_live: int | None = None  # set by Tune through set_max_concurrency
        self._tally: tuple[int, set[str]] | None = None  # (counted, live ids), from the study

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """With a durable study, limit concurrency here (True), not in ConcurrencyLimiter."""
        if not self.durable:
            return False
        self.max_live = max_concurrent
        return True

    def restore(self, checkpoint_path: str) -> None:  # noqa: D102
        super().restore(checkpoint_path)
        self._tally = None  # the saved tally predates the kill: read the (settled) study again

    def suggest(self, trial_id: str) -> dict | None:  # noqa: D102
        if trial_id in self._ot_trials or not self.durable:
            return super().suggest(trial_id)
        if getattr(self, "_tally", None) is None:  # once per driver: Tune asks very often
            kept = _kept(self._ot_study)
            self._tally = len(kept), {t.user_attrs[TUNE_ID] for t in kept
                                      if t.state == TrialState.RUNNING}
        count, live = self._tally
        if self.planned and count >= self.planned:
            # FINISHED only once none runs: Tune saves it, and a trial that runs now may yet be
            # lost to a kill; a resumed search whose Tune state says finished adds no trial
            return None if live else Searcher.FINISHED
        if getattr(self, "max_live", None) and len(live) >= self.max_live:
            return None  # Tune asks again once a trial ends
        self._tally = count + 1, live | {trial_id}
        if callable(self._space):  # define-by-run: tagged before sampling, as a kill may come
            self._ot_trials[trial_id] = self._ot_study.ask()  # anywhere (untagged never counts)
            self._ot_trials[trial_id].set_user_attr(TUNE_ID, trial_id)
            return super().suggest(trial_id)
        config = super().suggest(trial_id)  # fixed distributions: asked in there
        self._ot_trials[trial_id].set_user_attr(TUNE_ID, trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: Mapping | None = None,
                          error: bool = False) -> None:  # noqa: D102
        if getattr(self, "_tally", None) is not None:
            self._tally[1].discard(trial_id)
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
