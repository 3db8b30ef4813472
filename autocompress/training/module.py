"""Lightning fine-tuning of a compressed student with distillation from its teacher."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from autocompress.data import DataSplits, as_args, as_splits, call_model, outputs_of, split_batch
from autocompress.errors import PlanError
from autocompress.hardware.quiet import quiet_node
from autocompress.methods import DistillConfig
from autocompress.methods.feature_distillation import (
    AttentionTransferConfig,
    FeatureDistiller,
    HintConfig,
)
from autocompress.methods.layers import COMPRESSED
from autocompress.methods.regularizers import SparsityConfig, SparsityRegularizer, select_layers
from autocompress.metrics import MetricConfig, MetricState, evaluate_metric, metric_state
from autocompress.training.config import TrainingConfig
from autocompress.training.losses import task_loss
from autocompress.training.schedule import build_scheduler
from autocompress.zoo import DatasetSplits


class DistillationModule(pl.LightningModule):
    """Trains ``student`` on hard labels and, when given, the teacher's softened outputs.

    The teacher is kept out of the module's children: it is never optimised, never saved, and
    stays in eval mode (its BatchNorm statistics must not move).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None,
                 distillation: DistillConfig | None, training: TrainingConfig,
                 features: FeatureDistiller | None = None,
                 regularizer: SparsityRegularizer | None = None,
                 metric: MetricConfig | None = None, label_key: str | None = None):
        super().__init__()
        self.student = student
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []
        self.distillation = distillation or DistillConfig(alpha=1.0)
        self.training_config = training
        self.features = features  # attention transfer / hints (its regressors train too)
        self.regularizer = regularizer  # l1 / l0 sparsity penalty (l0 gates train too)
        self.metric = metric or MetricConfig()  # logged as val_<key> after each validation
        self.label_key = label_key  # the targets' key in dict batches
        self._metric_state = metric_state(self.metric)

    def on_fit_start(self) -> None:  # noqa: D102
        for teacher in self._teacher:
            teacher.to(self.device).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.student(x)

    def training_step(self, batch, batch_idx):  # noqa: D102
        x, y = split_batch(batch, self.label_key)
        outputs = outputs_of(call_model(self.student, x))
        teacher_outputs = None
        if self._teacher and (self.distillation.alpha < 1.0 or self.features is not None):
            with torch.no_grad():
                teacher_outputs = outputs_of(call_model(self._teacher[0], x))
        loss = task_loss(outputs, teacher_outputs, y, self.training_config.loss,
                         self.distillation)
        if self.features is not None:
            loss = loss + self.features.loss()
        if self.regularizer is not None:
            loss = loss + self.regularizer.penalty()
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        if self._metric_state is not None:
            self._metric_state.reset()

    def validation_step(self, batch, batch_idx):  # noqa: D102
        if self._metric_state is None:  # a user metric reads the whole split at the end
            return
        x, y = split_batch(batch, self.label_key)
        outputs = outputs_of(call_model(self.student, x))
        if self.metric.decomposable:  # a mean over samples: weighted batch means are exact
            batch = MetricState(self.metric)
            batch.update(outputs, y)
            self.log(f"val_{self.metric.key}", batch.compute(), on_step=False, on_epoch=True,
                     batch_size=batch.count)
        else:
            self._metric_state.update(outputs, y)

    def on_validation_epoch_end(self) -> None:
        """Log a metric that is not a mean over samples as ``val_<key>``, over the whole split.

        Read it from ``on_validation_end`` (callbacks' epoch-end hooks run before this one).
        """
        if self.metric.decomposable:
            return
        if self._metric_state is not None:
            value = self._metric_state.compute()
        else:
            value = evaluate_metric(self.student, self.trainer.val_dataloaders, self.metric,
                                    self.label_key)
        self.log(f"val_{self.metric.key}", float(value), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        """The recipe's optimizer and, when it has one, its per-step learning-rate schedule."""
        cfg = self.training_config
        optimizer = _optimizer(cfg, [p for p in self.parameters() if p.requires_grad])
        if not cfg.changes_lr:
            return optimizer
        trainer = self.trainer
        scheduler = build_scheduler(optimizer, cfg, cfg.lr, trainer.estimated_stepping_batches,
                                    trainer.max_epochs)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def _optimizer(cfg: TrainingConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The recipe's optimizer over ``params`` (the student's, hint regressors', l0 gates')."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def trainer_options(training: TrainingConfig) -> dict[str, Any]:
    """The Trainer arguments a recipe's training section sets: batch limits and clipping.

    Shared by the single-process and the distributed fine-tuning paths.
    """
    options: dict[str, Any] = {"limit_train_batches": training.limit_train_batches,
                               "limit_val_batches": training.limit_val_batches}
    if training.gradient_clip_val is not None:
        options.update(gradient_clip_val=training.gradient_clip_val,
                       gradient_clip_algorithm=training.gradient_clip_algorithm)
    return options


def fine_tune(
    student: nn.Module,
    teacher: nn.Module | None,
    splits: DataSplits | DatasetSplits,
    training: TrainingConfig,
    *,
    distillation: DistillConfig | None,
    batch_size: int,
    epochs: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    seed: int = 0,
    quiet: bool = True,
    attention: AttentionTransferConfig | None = None,
    hint: HintConfig | None = None,
    sparsity: SparsityConfig | None = None,
    output_layers: Iterable[str] = (),
    metric: MetricConfig | None = None,
) -> nn.Module:
    """Fine-tune ``student`` in place for ``epochs`` (default: the recipe's) and return it.

    Besides softened-softmax distillation, ``attention`` / ``hint`` add feature losses against
    the teacher and ``sparsity`` adds an l1 or relaxed-l0 penalty; l0 gates are folded into the
    weights at the end (closed channels become exactly zero). ``output_layers`` are never
    regularised. With ``quiet`` every training and validation batch holds this node shared,
    so latency timings on the node wait for it (:mod:`autocompress.hardware.quiet`).
    ``splits`` may hold data of any form (:class:`~autocompress.data.DataSplits`); the
    validation split is scored with ``metric`` (default: accuracy), logged as ``val_<key>``.
    """
    splits = as_splits(splits)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pl.seed_everything(seed, workers=False, verbose=False)
    module, close = build_module(student, teacher, splits, training, distillation=distillation,
                                 attention=attention, hint=hint, sparsity=sparsity,
                                 output_layers=output_layers, metric=metric)
    trainer = pl.Trainer(
        max_epochs=epochs or training.epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[*callbacks, *([QuietBatches()] if quiet else [])],
        **trainer_options(training),
    )
    try:
        trainer.fit(
            module,
            splits.loader("train", batch_size, shuffle=True, seed=seed),
            splits.loader("val", 256),
        )
    finally:
        close()
    return student.eval()


class QuietBatches(pl.Callback):
    """Hold the node shared during each batch, so latency timings on it wait for quiet."""

    def __init__(self) -> None:
        self._held: contextlib.ExitStack | None = None

    def _enter(self) -> None:
        self._exit()
        self._held = contextlib.ExitStack()
        self._held.enter_context(quiet_node().work())

    def _exit(self, *_: object, **__: object) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    def on_train_batch_start(self, *_: object, **__: object) -> None:  # noqa: D102
        self._enter()

    def on_validation_batch_start(self, *_: object, **__: object) -> None:  # noqa: D102
        self._enter()

    on_train_batch_end = on_validation_batch_end = on_exception = teardown = _exit


def build_module(student: nn.Module, teacher: nn.Module | None,
                 splits: DataSplits | DatasetSplits, training: TrainingConfig, *,
                 distillation: DistillConfig | None,
                 attention: AttentionTransferConfig | None = None,
                 hint: HintConfig | None = None, sparsity: SparsityConfig | None = None,
                 output_layers: Iterable[str] = (), metric: MetricConfig | None = None):
    """The DistillationModule with its feature and sparsity terms, and the closer of its hooks.

    Shared by the single-process and the distributed (Ray Train) fine-tuning paths.
    """
    splits = as_splits(splits)
    student.train()  # students are copies of an eval-mode teacher; Lightning keeps modes as found
    features = regularizer = None
    if teacher is not None and (attention is not None or hint is not None):
        features = FeatureDistiller(student, teacher, attention=attention, hint=hint,
                                    example_inputs=as_args(student,
                                                           splits.example_inputs(2, "train")))
    if sparsity is not None and not sparsity.is_identity():
        check_gateable(student, sparsity, output_layers)
        regularizer = SparsityRegularizer(student, sparsity, exclude=output_layers)
    module = DistillationModule(student, teacher, distillation, training, features, regularizer,
                                metric=metric, label_key=splits.label_key)

    def close() -> None:
        if features is not None:
            features.close()
        if regularizer is not None:
            regularizer.close(fold=sparsity.kind == "l0")

    return module, close


def check_gateable(student: nn.Module, sparsity: SparsityConfig | None,
                   exclude: Iterable[str]) -> None:
    """l0 gates fold into float weights: refuse layers whose weights are codes or a codebook.

    Raises:
        PlanError: naming a selected layer whose weights are quantized or shared.
    """
    if sparsity is None or sparsity.kind != "l0" or sparsity.is_identity():
        return
    for name, layer in select_layers(student, sparsity, exclude).items():
        if isinstance(layer, COMPRESSED) and (layer.uniform or layer.share_bits):
            raise PlanError(f"{name}: l0 gates cannot fold into quantized or shared weights; "
                            "restrict sparsity.layers to float layers")
