"""Strategies of the distributed workers: DDP, or DeepSpeed ZeRO with a config passthrough.

Lightning's DeepSpeed strategy runs on CUDA GPUs only (it refuses the CPU accelerator), but
DeepSpeed's own config classes (``deepspeed.runtime.config.DeepSpeedConfig`` and its pydantic
models, e.g. ``DeepSpeedZeroConfig``) need no GPU: a config is validated on the machine that
reads the recipe, and a machine without CUDA refuses the strategy saying whether the config
itself is valid. ``deepspeed`` and Ray are imported on first use only.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from unittest import mock

from autocompress.errors import ConfigError

if TYPE_CHECKING:
    from autocompress.training.config import DistributedConfig

FIELD = "training.distributed.deepspeed"
DEFAULT_CONFIG: dict[str, Any] = {"zero_optimization": {"stage": 2}}
INSTALL_HINT = "pip install deepspeed (DS_BUILD_OPS=0 compiles no ops at install time)"


class DeepSpeedMissing(ConfigError):
    """DeepSpeed is not installed, so a config could not be validated."""


@dataclass(frozen=True)
class DeepSpeedCheck:
    """A config DeepSpeed accepted, as Lightning will hand it over, and what it means."""

    config: dict[str, Any]
    zero_stage: int
    version: str


def _import_deepspeed():
    """``deepspeed`` and its config module, or a ConfigError saying it is missing."""
    for name in ("DeepSpeed", "deepspeed"):  # its import logs the accelerator it picked
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import deepspeed
        from deepspeed.runtime import config as ds_config
    except ImportError as exc:
        raise DeepSpeedMissing(f"{FIELD}: DeepSpeed is not installed ({exc}); the config was "
                               f"not validated. Install it with: {INSTALL_HINT}") from None
    return deepspeed, ds_config


class _FixedWorld:
    """Stands in for ``deepspeed.comm`` so batch sizes are checked for ``world_size`` ranks."""

    def __init__(self, world_size: int) -> None:
        self._world_size = world_size

    def get_rank(self) -> int:
        return 0

    def get_world_size(self, group: Any = None) -> int:
        return self._world_size


def lightning_config(config: Mapping[str, Any] | None, *, micro_batch_size: int,
                     gradient_clipping: float = 0.0) -> dict[str, Any]:
    """The dict Lightning's ``DeepSpeedStrategy(config=...)`` passes on to DeepSpeed.

    Lightning owns ``gradient_accumulation_steps`` (from the Trainer) and fills in the micro
    batch size and gradient clipping when absent.

    Args:
        config: The recipe's passthrough (None: ZeRO stage 2).
        micro_batch_size: Samples per worker and step.
        gradient_clipping: Lightning's ``gradient_clip_val``.

    Raises:
        ConfigError: The config sets a key Lightning owns, or is not a mapping.
    """
    full = strategy_config(config)
    if "gradient_accumulation_steps" in full:
        raise ConfigError(f"{FIELD}.gradient_accumulation_steps: set by Lightning from the "
                          "Trainer's accumulate_grad_batches; remove it from the config")
    full["gradient_accumulation_steps"] = 1
    full.setdefault("train_micro_batch_size_per_gpu", micro_batch_size)
    full.setdefault("gradient_clipping", gradient_clipping)
    return full


def strategy_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The dict to give ``DeepSpeedStrategy(config=...)``: a copy of the passthrough.

    The recipe's torch optimizer is a client optimizer, which ZeRO calls "untested" unless it
    is Adam, AdamW or Adagrad (SGD is not): it is allowed unless the config says otherwise.
    """
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"{FIELD}: invalid value {config!r}; allowed: a mapping (a DeepSpeed "
                          "config dict)")
    full = copy.deepcopy(dict(DEFAULT_CONFIG if config is None else config))
    full.setdefault("zero_allow_untested_optimizer", True)
    return full


def validate_deepspeed(config: Mapping[str, Any] | None, *, micro_batch_size: int = 1,
                       world_size: int = 1) -> DeepSpeedCheck:
    """Validate a DeepSpeed config with DeepSpeed's own config classes (no GPU needed).

    Args:
        config: The passthrough dict (ZeRO stage, offload, precision, ...); None means
            ZeRO stage 2.
        micro_batch_size: Samples per worker and step (filled in as Lightning does).
        world_size: Number of workers, for DeepSpeed's batch-size consistency check.

    Returns:
        The completed config, its ZeRO stage and the DeepSpeed version that accepted it.

    Raises:
        ConfigError: DeepSpeed is missing, or rejected the config (its message is kept).
    """
    full = lightning_config(config, micro_batch_size=micro_batch_size)
    deepspeed, ds_config = _import_deepspeed()
    try:
        with mock.patch.object(ds_config, "dist", _FixedWorld(world_size)):
            parsed = ds_config.DeepSpeedConfig(copy.deepcopy(full))
    except Exception as exc:  # pydantic ValidationError, AssertionError, ValueError, ...
        text = " ".join(str(exc).split())
        raise ConfigError(f"{FIELD}: rejected by DeepSpeed {deepspeed.__version__}: "
                          f"{type(exc).__name__}: {text}") from None
    _check_offload(full, parsed)
    return DeepSpeedCheck(full, int(parsed.zero_optimization_stage), deepspeed.__version__)


def _check_offload(full: dict[str, Any], parsed: Any) -> None:
    """ZeRO-Offload refuses a client optimizer at engine start unless told it is wanted."""
    device = getattr(parsed.zero_config.offload_optimizer, "device", None)
    offloaded = device is not None and str(getattr(device, "value", device)) != "none"
    if offloaded and full.get("zero_force_ds_cpu_optimizer", True):
        raise ConfigError(
            f"{FIELD}.zero_optimization.offload_optimizer: DeepSpeed refuses the recipe's torch "
            "optimizer with optimizer offload unless the config sets "
            "zero_force_ds_cpu_optimizer: false (slower than DeepSpeedCPUAdam); set it, or "
            "drop offload_optimizer")


def cuda_devices() -> int:
    """GPUs the workers could get: the Ray cluster's when Ray is up, else this machine's."""
    try:
        import ray

        if ray.is_initialized():
            return int(ray.cluster_resources().get("GPU", 0))
    except ImportError:
        pass
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def refuse_without_cuda(config: Mapping[str, Any] | None, *, micro_batch_size: int,
                        world_size: int, gpus: int | None = None) -> DeepSpeedCheck:
    """Validate the config, then refuse the DeepSpeed strategy where there is no CUDA GPU.

    Args:
        config: The passthrough dict (None: ZeRO stage 2).
        micro_batch_size: Samples per worker and step.
        world_size: Number of workers (one GPU each).
        gpus: GPUs available (default: :func:`cuda_devices`).

    Returns:
        The validated config, when there are GPUs for every worker.

    Raises:
        ConfigError: The config is invalid, or there are fewer GPUs than workers; the message
            says whether DeepSpeed validated the config.
    """
    gpus = cuda_devices() if gpus is None else gpus
    if gpus >= world_size:
        return validate_deepspeed(config, micro_batch_size=micro_batch_size,
                                  world_size=world_size)
    need = (f"training.distributed.strategy: 'deepspeed' needs CUDA GPUs (Lightning's DeepSpeed "
            f"strategy refuses the CPU accelerator): {world_size} worker(s) need "
            f"{world_size} GPU(s), {gpus} found")
    try:
        check = validate_deepspeed(config, micro_batch_size=micro_batch_size,
                                   world_size=world_size)
    except DeepSpeedMissing as exc:
        raise ConfigError(f"{need}. {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{need}; and the DeepSpeed config is invalid: {exc}") from None
    raise ConfigError(f"{need}. The DeepSpeed config was validated by DeepSpeed "
                      f"{check.version} (ZeRO stage {check.zero_stage}) and is valid; run it "
                      "where CUDA exists, or use strategy 'ddp' to train on CPUs")


def full_state_dict(trainer: Any, model: Any) -> dict[str, Any]:
    """``model``'s state dict on CPU; under ZeRO-3 gathered first (call it on every rank)."""

    def copy_state() -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    if not getattr(trainer.strategy, "zero_stage_3", False):
        return copy_state()
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        return copy_state()


def check_accelerators(dist: DistributedConfig, batch_size: int, gpus: int | None = None):
    """Fail early, in the driver: DeepSpeed config invalid, or no CUDA for DeepSpeed / GPUs.

    Args:
        dist: The distributed settings.
        batch_size: The recipe's (global) batch size.
        gpus: GPUs available (default: :func:`cuda_devices`).

    Returns:
        The :class:`~autocompress.training.deepspeed.DeepSpeedCheck` for strategy deepspeed,
        else None.
    """
    if dist.strategy == "deepspeed":
        return refuse_without_cuda(dist.deepspeed, world_size=dist.workers, gpus=gpus,
                                   micro_batch_size=dist.per_worker_batch(batch_size))
    if not dist.use_gpu:
        return None
    gpus = cuda_devices() if gpus is None else gpus
    if gpus < dist.workers:
        raise ConfigError(f"training.distributed.use_gpu: {dist.workers} worker(s) need "
                          f"{dist.workers} CUDA GPU(s), {gpus} found; set use_gpu: false")
    return None


def lightning_strategy(dist: DistributedConfig):
    """The Ray Train Lightning strategy of ``dist``: DDP, or DeepSpeed with the passthrough."""
    from ray.train.lightning import RayDDPStrategy, RayDeepSpeedStrategy

    if dist.strategy == "deepspeed":
        return RayDeepSpeedStrategy(config=strategy_config(dist.deepspeed))
    return RayDDPStrategy(find_unused_parameters=dist.find_unused_parameters)
