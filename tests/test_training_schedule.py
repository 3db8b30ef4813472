"""Learning-rate schedules, gradient clipping and batch limits of fine-tuning."""

import math

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import TensorDataset

from autocompress.errors import ConfigError
from autocompress.recipe import PretrainConfig, Recipe, TrainingConfig
from autocompress.testing.models import tiny_mlp
from autocompress.training import fine_tune
from autocompress.training.schedule import lr_factor
from autocompress.zoo import DatasetSplits
from tests.helpers import QUICKSTART

BATCH = 8


def random_splits(samples: int = 64) -> DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 1, 4, 4, generator=generator)
    y = torch.randint(0, 10, (samples,), generator=generator)
    return DatasetSplits(TensorDataset(x, y), TensorDataset(x[:16], y[:16]), (1, 4, 4), 10,
                         "random")


class StepLRs(pl.Callback):
    """The learning rate each optimizer step runs at, and the one left after the run."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.final = math.nan

    def on_train_batch_start(self, trainer, *_):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_end(self, trainer, *_):
        self.final = trainer.optimizers[0].param_groups[0]["lr"]


def run(training: TrainingConfig, *callbacks: pl.Callback, samples: int = 64):
    torch.manual_seed(0)
    return fine_tune(tiny_mlp(), None, random_splits(samples), training, distillation=None,
                     batch_size=BATCH, callbacks=callbacks, quiet=False)


def test_warmup_ramps_linearly_to_the_full_rate():
    config = TrainingConfig(lr=0.1, schedule="none", warmup_steps=4, epochs=2)
    factors = [lr_factor(config, 0.1, k, 20, 10) for k in range(7)]
    assert factors == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    by_epochs = TrainingConfig(lr=0.1, warmup_epochs=0.5, epochs=2)  # 5 of 10 steps per epoch
    assert lr_factor(by_epochs, 0.1, 4, 20, 10) == pytest.approx(5 / 6)
    assert lr_factor(by_epochs, 0.1, 5, 20, 10) == 1.0


@pytest.mark.parametrize("schedule, midway", [("cosine", 0.5), ("linear", 0.5)])
def test_decays_reach_min_lr_at_the_end(schedule, midway):
    config = TrainingConfig(lr=0.1, schedule=schedule, warmup_steps=10, min_lr=0.01)
    floor = 0.1
    assert lr_factor(config, 0.1, 10, 110, 10) == 1.0  # warm-up end: the full rate
    assert lr_factor(config, 0.1, 60, 110, 10) == pytest.approx(floor + (1 - floor) * midway)
    assert lr_factor(config, 0.1, 110, 110, 10) == pytest.approx(floor)
    if schedule == "cosine":  # a quarter of the way down: cos(pi / 4) of the span
        assert lr_factor(config, 0.1, 35, 110, 10) == pytest.approx(
            floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi / 4)))


def test_step_decays_by_gamma_every_step_size_epochs_down_to_min_lr():
    config = TrainingConfig(lr=1.0, schedule="step", step_size=0.5, gamma=0.5, min_lr=0.2,
                            epochs=4)
    factors = [lr_factor(config, 1.0, k, 40, 10) for k in (0, 4, 5, 9, 10, 15, 39)]
    assert factors == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.2, 0.2])


def test_a_fit_follows_the_cosine_schedule_step_by_step():
    training = TrainingConfig(epochs=2, lr=0.01, schedule="cosine", warmup_steps=4,
                              min_lr=0.001, distillation=None)
    lrs = StepLRs()
    run(training, lrs)
    steps = 2 * 64 // BATCH
    assert len(lrs.lrs) == steps
    assert lrs.lrs == pytest.approx([0.01 * lr_factor(training, 0.01, k, steps, steps // 2)
                                     for k in range(steps)])
    assert lrs.lrs[0] == pytest.approx(0.002) and lrs.lrs[4] == pytest.approx(0.01)
    assert lrs.lrs[10] == pytest.approx(0.001 + 0.009 * 0.5)  # midway down the 12-step decay
    assert lrs.final == pytest.approx(0.001)


def test_no_schedule_keeps_the_rate_constant():
    lrs = StepLRs()
    run(TrainingConfig(epochs=1, lr=0.01, distillation=None), lrs)
    assert lrs.lrs == [0.01] * 8 and lrs.final == 0.01


@pytest.mark.parametrize("limit, per_epoch", [(3, 3), (0.5, 4)])
def test_limit_train_batches_is_a_count_or_a_fraction_and_the_schedule_spans_it(limit,
                                                                                per_epoch):
    training = TrainingConfig(epochs=2, lr=0.01, schedule="linear", limit_train_batches=limit,
                              limit_val_batches=1, distillation=None)
    lrs = StepLRs()
    run(training, lrs)
    assert len(lrs.lrs) == 2 * per_epoch
    assert lrs.final == pytest.approx(0.0, abs=1e-12)  # the decay ended with the last step


def test_a_warmup_as_long_as_the_run_is_refused_naming_the_field():
    training = TrainingConfig(epochs=1, warmup_steps=8, distillation=None)
    with pytest.raises(ConfigError, match=r"training\.warmup_steps: invalid value 8"):
        run(training)


class GradientNorms(pl.Callback):
    """Gradients as Lightning hands them to the optimizer (before) and as it steps (after)."""

    def __init__(self) -> None:
        self.before: list[float] = []
        self.after: list[tuple[float, float]] = []  # (total norm, largest |value|)

    def on_train_start(self, trainer, pl_module):
        trainer.optimizers[0].register_step_post_hook(self._stepped)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.before.append(_norm(optimizer)[0])

    def _stepped(self, optimizer, *_):
        self.after.append(_norm(optimizer))


def _norm(optimizer) -> tuple[float, float]:
    grads = [p.grad for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    return (float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))),
            max(float(g.abs().max()) for g in grads))


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_bounds_the_gradients_the_optimizer_steps_with(algorithm):
    clip = 0.01
    norms = GradientNorms()
    run(TrainingConfig(epochs=1, lr=0.01, gradient_clip_val=clip,
                       gradient_clip_algorithm=algorithm, distillation=None), norms)
    assert len(norms.after) == 8
    assert min(norms.before) > 10 * clip  # unclipped, every step would have been larger
    measured = [total if algorithm == "norm" else largest for total, largest in norms.after]
    assert max(measured) <= clip * (1 + 1e-5)
    if algorithm == "norm":  # scaled onto the bound, not zeroed
        assert min(measured) == pytest.approx(clip, rel=1e-4)


def test_without_clipping_gradients_are_left_alone():
    norms = GradientNorms()
    run(TrainingConfig(epochs=1, lr=0.01, distillation=None), norms)
    assert [n for n, _ in norms.after] == pytest.approx(norms.before)


def _recipe(**training):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["training"] = {**raw["training"], **training}
    return Recipe.from_dict(raw)


@pytest.mark.parametrize("training, field", [
    ({"schedule": "exponential"}, "training.schedule"),
    ({"schedule": "step"}, "training.step_size"),
    ({"schedule": "cosine", "step_size": 1}, "training.step_size"),
    ({"schedule": "step", "step_size": 0}, "training.step_size"),
    ({"schedule": "step", "step_size": 1, "gamma": 1.5}, "training.gamma"),
    ({"schedule": "cosine", "min_lr": 1.0}, "training.min_lr"),
    ({"schedule": "cosine", "min_lr": -1e-5}, "training.min_lr"),
    ({"min_lr": 1e-5}, "training.min_lr"),
    ({"warmup_epochs": -1}, "training.warmup_epochs"),
    ({"warmup_epochs": 4}, "training.warmup_epochs"),  # the quickstart trains 4 epochs
    ({"warmup_epochs": "nan"}, "training.warmup_epochs"),
    ({"warmup_steps": 1.5}, "training.warmup_steps"),
    ({"warmup_steps": 5, "warmup_epochs": 1}, "training.warmup_steps"),
    ({"gradient_clip_val": 0}, "training.gradient_clip_val"),
    ({"gradient_clip_val": "inf"}, "training.gradient_clip_val"),
    ({"gradient_clip_algorithm": "l2"}, "training.gradient_clip_algorithm"),
    ({"limit_train_batches": 0}, "training.limit_train_batches"),
    ({"limit_train_batches": 1.5}, "training.limit_train_batches"),
    ({"limit_val_batches": -0.5}, "training.limit_val_batches"),
    ({"limit_val_batches": "all"}, "training.limit_val_batches"),
])
def test_bad_training_values_name_the_field(training, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        _recipe(**training)


def test_schedule_keys_parse_and_round_trip():
    recipe = _recipe(schedule="cosine", warmup_epochs=0.5, min_lr=1e-5, gradient_clip_val=1.0,
                     limit_train_batches=0.25, limit_val_batches=2)
    t = recipe.training
    assert (t.schedule, t.warmup_epochs, t.min_lr, t.gradient_clip_val) == (
        "cosine", 0.5, 1e-5, 1.0)
    assert type(t.limit_train_batches) is float and type(t.limit_val_batches) is int
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_pretraining_takes_the_same_schedule_and_names_its_own_section(tmp_path, monkeypatch):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["model"]["pretrain"] = {"epochs": 2, "schedule": "step"}
    with pytest.raises(ConfigError, match=r"^model\.pretrain\.step_size: "):
        Recipe.from_dict(raw)
    raw["model"]["pretrain"] = {"epochs": 2, "lr": 0.01, "schedule": "cosine",
                                "warmup_steps": 3, "min_lr": 0.001}
    recipe = Recipe.from_dict(raw).replace(search={"storage": str(tmp_path)})
    assert recipe.model.pretrain == PretrainConfig(epochs=2, lr=0.01, schedule="cosine",
                                                   warmup_steps=3, min_lr=0.001)
    seen = []

    def fake_fine_tune(model, teacher, splits, training, **kwargs):
        seen.append(training)
        return model

    from autocompress.search import baseline
    from autocompress.training import module

    monkeypatch.setattr(module, "fine_tune", fake_fine_tune)
    baseline.load_or_train(recipe, tmp_path)
    (training,) = seen
    assert (training.epochs, training.lr, training.schedule, training.warmup_steps,
            training.min_lr) == (2, 0.01, "cosine", 3, 0.001)


@pytest.mark.slow
def test_ray_train_workers_take_the_schedule_and_the_clipping(tmp_path):
    """Two DDP workers: clipped SGD moves each weight at most lr x clip x steps x 1/(1 - 0.9)."""
    ray = pytest.importorskip("ray")
    from autocompress.training import DistributedConfig, fine_tune_distributed

    clip, lr, epochs = 1e-4, 0.05, 2
    training = TrainingConfig(epochs=epochs, optimizer="sgd", lr=lr, schedule="cosine",
                              warmup_steps=2, gradient_clip_val=clip, distillation=None)
    torch.manual_seed(0)
    student = tiny_mlp()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    reports = []
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        fine_tune_distributed(student, None, random_splits(), training,
                              DistributedConfig(workers=2), lambda m, _: reports.append(m),
                              distillation=None, batch_size=2 * BATCH,
                              storage_path=str(tmp_path))
        too_long = TrainingConfig(epochs=1, warmup_steps=50, distillation=None)
        with pytest.raises(Exception, match=r"training\.warmup_steps: invalid value 50"):
            fine_tune_distributed(tiny_mlp(), None, random_splits(), too_long,
                                  DistributedConfig(workers=2), lambda m, _: None,
                                  distillation=None, batch_size=2 * BATCH,
                                  storage_path=str(tmp_path))
    finally:
        ray.shutdown()
    assert [m["epochs_trained"] for m in reports] == [1, 2]
    steps = epochs * 64 // (2 * BATCH)  # each worker steps on its half of the 64 samples
    moved = max(float((student.state_dict()[k] - v).abs().max()) for k, v in before.items())
    assert 0 < moved <= lr * clip * steps * 10


@pytest.mark.parametrize("kwargs, field", [
    ({"gamma": 5.0, "schedule": "step", "step_size": 1.0}, "training.gamma"),
    ({"min_lr": float("nan"), "schedule": "cosine"}, "training.min_lr"),
    ({"gradient_clip_val": -1.0}, "training.gradient_clip_val"),
    ({"lr": 0.0}, "training.lr"),
])
def test_configs_built_in_code_are_checked_too(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        TrainingConfig(**kwargs)
    with pytest.raises(ConfigError, match=r"^model\.pretrain\.warmup_steps: "):
        PretrainConfig(warmup_steps=-2)
