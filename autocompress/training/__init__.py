"""How accuracy is recovered: Lightning fine-tuning with distillation.

``fine_tune`` and ``DistillationModule`` import Lightning, so they are loaded on first use; so
are the distributed path (Ray Train) and the DeepSpeed config check.
"""

from autocompress.training.evaluate import evaluate, loader

_LAZY = {
    "DistillationModule": "module",
    "fine_tune": "module",
    "DistributedConfig": "distributed",
    "epoch_result": "distributed",
    "fine_tune_distributed": "distributed",
    "max_concurrent_trials": "distributed",
    "validate_deepspeed": "deepspeed",
}

__all__ = ["evaluate", "loader", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"autocompress.training.{_LAZY[name]}"), name)
    raise AttributeError(name)
