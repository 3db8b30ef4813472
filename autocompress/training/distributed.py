"""Fine-tune one candidate on N Ray Train workers (Lightning DDP, or DeepSpeed ZeRO on GPUs).

The trial process stays the driver of a Ray Train V2 ``TorchTrainer`` whose workers run
``fine_tune``'s DistillationModule under ``RayDDPStrategy`` (gloo on CPU, NCCL on GPU) or
``RayDeepSpeedStrategy``. After each validation epoch rank 0 hands its accuracy to the driver
through a small actor and waits until the driver has reported it, so a scheduler that stops
the trial stops training before another epoch, as in the single-worker path. At the end rank 0
sends the student's weights back into the caller's ``student``.

Ray Train V2 (Ray 2.60's default) places the workers in a placement group of its own, not in
the Tune trial's: the trial reserves its driver only, and :func:`max_concurrent_trials` keeps
drivers from taking the CPUs their workers wait for. Ray, Lightning and DeepSpeed are imported
on first use.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from autocompress.errors import ConfigError
from autocompress.training.config import DistributedConfig

if TYPE_CHECKING:
    from autocompress.methods import DistillConfig
    from autocompress.methods.feature_distillation import AttentionTransferConfig, HintConfig
    from autocompress.methods.regularizers import SparsityConfig
    from autocompress.training.config import TrainingConfig
    from autocompress.zoo import DatasetSplits

START_RETRIES = 10  # Train retries a worker group it cannot place (60 s each) this many times
STOP_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)
EpochReport = Callable[[dict[str, Any], "str | None"], None]


def max_concurrent_trials(dist: DistributedConfig, driver_cpus: float, wanted: int,
                          cluster: Mapping[str, float] | None = None) -> int:
    """How many trials can train at once without a driver starving a Train run.

    Every running trial holds its driver's CPUs; its workers need a placement group of their
    own. If drivers took the CPUs the workers need, every Train run would wait forever.

    Args:
        dist: The distributed settings.
        driver_cpus: CPUs a trial reserves for itself (``search.cpus_per_trial``).
        wanted: ``search.concurrency``.
        cluster: Resources to share (default: :func:`training_resources` of the running Ray).

    Raises:
        ConfigError: Not even one trial with its workers fits the cluster.
    """
    cluster = training_resources(dist) if cluster is None else cluster
    per_trial = driver_cpus + dist.workers * dist.cpus_per_worker
    fit = int(cluster.get("CPU", 0) // per_trial)
    if dist.use_gpu:
        fit = min(fit, int(cluster.get("GPU", 0) // dist.workers))
    if fit < 1:
        raise ConfigError(
            f"training.distributed: a trial needs {per_trial:g} CPUs ({driver_cpus:g} for its "
            f"driver + {dist.workers} workers x {dist.cpus_per_worker:g})"
            + (f" and {dist.workers} GPUs" if dist.use_gpu else "")
            + f", the cluster has {cluster.get('CPU', 0):g} CPUs and {cluster.get('GPU', 0):g}"
            " GPUs; lower workers or cpus_per_worker, or add nodes")
    return min(wanted, fit)


def training_resources(dist: DistributedConfig) -> dict[str, float]:
    """Total resources of the live nodes the workers can use (those with the worker resource)."""
    import ray

    alive = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    name = dist.worker_resource
    total: dict[str, float] = {}
    for resources in [r for r in alive if name and r.get(name, 0) > 0] or alive:
        for key, value in resources.items():
            total[key] = total.get(key, 0.0) + value
    return total


def epoch_result(base: Mapping[str, Any], accuracy: float, epochs_trained: int
                 ) -> dict[str, Any]:
    """What a trial reports after each training epoch (the metric path ASHA follows)."""
    return {**base, "accuracy": float(accuracy), "epochs_trained": int(epochs_trained),
            "final": 0.0, "status": "training"}


@dataclass
class _Job:
    """Everything a worker needs, shipped once through Ray's object store."""

    student: nn.Module
    teacher: nn.Module | None
    splits: DatasetSplits
    training: TrainingConfig
    dist: DistributedConfig
    distillation: DistillConfig | None
    attention: AttentionTransferConfig | None
    hint: HintConfig | None
    sparsity: SparsityConfig | None
    output_layers: tuple[str, ...]
    batch_size: int
    epochs: int
    seed: int
    inbox: Any = None
    outbox: Any = None


def fine_tune_distributed(
    student: nn.Module,
    teacher: nn.Module | None,
    splits: DatasetSplits,
    training: TrainingConfig,
    dist: DistributedConfig,
    report: EpochReport,
    *,
    base: Mapping[str, Any] | None = None,
    distillation: DistillConfig | None,
    batch_size: int,
    epochs: int | None = None,
    seed: int = 0,
    attention: AttentionTransferConfig | None = None,
    hint: HintConfig | None = None,
    sparsity: SparsityConfig | None = None,
    output_layers: Iterable[str] = (),
    storage_path: str | None = None,
) -> nn.Module:
    """Fine-tune ``student`` on ``dist.workers`` Ray Train workers; load the result into it.

    Loss, optimizer and feature / sparsity terms are :func:`fine_tune`'s. After each epoch,
    rank 0's accuracy on the whole validation set reaches ``report`` from this thread as
    ``report(epoch_result(base, accuracy, epoch), None)``, as the single-worker path reports.
    Needs a running Ray (``ray.init``, or inside a Tune trial).

    Args:
        student: The compressed model; the trained weights are loaded back into it.
        teacher: The original model to distil from (None: hard labels only).
        splits: Train (sharded across workers) and validation data.
        training: The recipe's training section.
        dist: Workers and strategy.
        report: The trial's report function.
        base: Metrics merged into every epoch report (the trial's costs and constraints).
        distillation: Softened-softmax distillation, as in :func:`fine_tune`.
        batch_size: The global batch size; each worker takes its share.
        epochs: Epochs (default: the recipe's).
        seed: Seed of the initial noise and of the data order.
        attention: Attention-transfer loss against the teacher.
        hint: Hint (FitNets) loss against the teacher.
        sparsity: l1 / l0 penalty (l0 gates are folded in at the end).
        output_layers: Layers never regularised.
        storage_path: Where Ray Train keeps its run state (default: a temp folder).

    Returns:
        ``student``, trained and in eval mode.

    Raises:
        ConfigError: Ray Train V2 is off, or the strategy needs CUDA that is not there.
        ray.train.TrainingFailedError: A worker failed (its error is inside).
    """
    from ray.util.queue import Queue

    from autocompress.training.deepspeed import check_accelerators
    from autocompress.training.module import check_gateable

    _check_ray_train()
    check_accelerators(dist, batch_size)
    check_gateable(student, sparsity, output_layers)
    job = _Job(student, teacher, splits, training, dist, distillation, attention, hint,
               sparsity, tuple(output_layers), dist.per_worker_batch(batch_size),
               epochs or training.epochs, seed)
    # rank 0 -> driver: ("epoch", (accuracy, epochs)) and ("state", weights); driver -> rank
    # 0: stop or not, after each epoch is reported. Actors default to 1 CPU to be scheduled.
    job.inbox, job.outbox = (Queue(actor_options={"num_cpus": 0}) for _ in range(2))
    state = _drive(_trainer(job, storage_path), job, report, dict(base or {}))
    for queue in (job.inbox, job.outbox):  # after a stop they go out of scope with the run
        queue.shutdown(force=True)
    student.load_state_dict(state)
    return student.eval()


def _check_ray_train() -> None:
    import importlib.util

    from ray.train.v2._internal.constants import V2_ENABLED_ENV_VAR, is_v2_enabled

    if not is_v2_enabled():
        raise ConfigError(f"training.distributed: needs Ray Train V2; unset "
                          f"{V2_ENABLED_ENV_VAR}=0 (V2 is Ray 2.60's default)")
    if importlib.util.find_spec("lightning") is not None:  # Ray would use lightning.pytorch
        raise ConfigError("training.distributed: the 'lightning' package is installed, so Ray "
                          "Train's strategies subclass lightning.pytorch while autocompress "
                          "uses pytorch_lightning; uninstall 'lightning'")


def _trainer(job: _Job, storage_path: str | None):
    """The Ray Train V2 TorchTrainer of one fine-tuning run."""
    import tempfile

    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    dist = job.dist
    return TorchTrainer(
        _train_worker,
        train_loop_config={"job": job},
        torch_config=TorchConfig(backend="nccl" if dist.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=dist.workers, use_gpu=dist.use_gpu,
                                     resources_per_worker=dist.worker_bundle(
                                         ray.cluster_resources())),
        run_config=RunConfig(
            name=f"finetune-{uuid.uuid4().hex[:12]}",
            storage_path=storage_path or f"{tempfile.gettempdir()}/autocompress_train",
            failure_config=FailureConfig(max_failures=0,
                                         controller_failure_limit=START_RETRIES),
        ),
    )


def _drive(trainer, job: _Job, report: EpochReport, base: dict[str, Any]) -> dict[str, Any]:
    """Run ``trainer.fit`` in a thread; report epochs from this one; return rank 0's state."""
    from ray.util.queue import Empty

    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="autocompress-train-driver", daemon=True)
    thread.start()
    try:
        while True:
            finished = not thread.is_alive()  # read first, so the last message is drained
            try:
                kind, payload = job.inbox.get(timeout=0.5)
            except Empty:
                if finished:
                    break
                continue
            if kind == "state":
                outcome["state"] = payload
            else:
                report(epoch_result(base, *payload), None)
                job.outbox.put(False)  # go on
    except BaseException:  # a stopped Tune trial exits here (SystemExit from tune.report)
        # Every rank stops after this epoch and the run winds down in the background.
        # Return at once: Tune reuses this actor only if the trial function ends within
        # TUNE_FUNCTION_THREAD_TIMEOUT_S (2 s); when it did not, the next trial hung.
        try:
            job.outbox.put(True, timeout=STOP_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - the original exit matters, not this
            log.warning("could not tell the workers to stop; the run ends with this process")
        raise
    if "error" in outcome:
        raise outcome["error"]
    if "state" not in outcome:
        raise RuntimeError("distributed fine-tuning ended without rank 0's weights")
    return outcome["state"]


def _train_worker(config: dict[str, Any]) -> None:
    """Ray Train worker loop: ``fine_tune``'s LightningModule under DDP or DeepSpeed."""
    import warnings

    import pytorch_lightning as pl
    import ray
    import ray.train
    import torch
    from pytorch_lightning.utilities.warnings import PossibleUserWarning
    from ray.train.lightning import RayLightningEnvironment, prepare_trainer
    from torch.utils.data import DataLoader, DistributedSampler

    from autocompress.training.deepspeed import full_state_dict, lightning_strategy
    from autocompress.training.evaluate import loader
    from autocompress.training.module import trainer_options

    job: _Job = config["job"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(job.dist.cpus_per_worker)))
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)  # val metrics: see below
    pl.seed_everything(job.seed, workers=False, verbose=False)
    module, close = _module(job)
    # Train data is sharded; every rank validates on the whole set, so rank 0's accuracy is
    # the single-worker number without a sync (weights are equal on all ranks).
    sampler = DistributedSampler(job.splits.train, num_replicas=world, rank=rank, shuffle=True,
                                 seed=job.seed)
    trainer = prepare_trainer(pl.Trainer(
        max_epochs=job.epochs,
        accelerator="gpu" if job.dist.use_gpu else "cpu",
        devices="auto",
        strategy=lightning_strategy(job.dist),
        plugins=[RayLightningEnvironment()],
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[_epoch_callback(job)],
        **trainer_options(job.training),
    ))
    try:
        trainer.fit(module, DataLoader(job.splits.train, job.batch_size, sampler=sampler),
                    loader(job.splits.val, 256))
    finally:
        close()
    state = full_state_dict(trainer, job.student)  # every rank: ZeRO-3 gathers collectively
    if rank == 0:
        job.inbox.put(("state", state))


def _module(job: _Job):
    """``fine_tune``'s DistillationModule with its feature and sparsity terms, and a closer."""
    from autocompress.training.module import build_module

    return build_module(job.student, job.teacher, job.splits, job.training,
                        distillation=job.distillation, attention=job.attention, hint=job.hint,
                        sparsity=job.sparsity, output_layers=job.output_layers)


def _epoch_callback(job: _Job):
    """A Lightning callback: rank 0 hands each epoch to the driver; all ranks obey a stop."""
    import pytorch_lightning as pl

    class EpochToDriver(pl.Callback):
        def on_validation_epoch_end(self, trainer, pl_module):
            if trainer.sanity_checking:
                return
            stop = False
            if trainer.is_global_zero:
                accuracy = float(trainer.callback_metrics["val_accuracy"])
                job.inbox.put(("epoch", (accuracy, trainer.current_epoch + 1)))
                stop = job.outbox.get()  # wait until reported, as the single-worker path does
            if trainer.strategy.reduce_boolean_decision(stop, all=False):
                trainer.should_stop = True

    return EpochToDriver()
