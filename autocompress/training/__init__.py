"""How accuracy is recovered: Lightning fine-tuning with distillation.

``fine_tune`` and ``DistillationModule`` import Lightning, so they are loaded on first use.
"""

from autocompress.training.evaluate import evaluate, loader

__all__ = ["DistillationModule", "evaluate", "fine_tune", "loader"]


def __getattr__(name: str):
    if name in ("DistillationModule", "fine_tune"):
        from autocompress.training import module

        return getattr(module, name)
    raise AttributeError(name)
