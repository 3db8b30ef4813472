"""Batches of any form: a tensor, a tuple ``(x, ..., y)`` or a dict with a label key.

Every part of a search that touches data (training, evaluation, calibration, timing) splits a
batch into the model's *inputs* and the *targets* with :func:`split_batch`, and calls the model
with :func:`call_model`: a tensor is passed as one argument, a tuple as positional arguments,
a dict as keyword arguments (so a Hugging Face classifier gets ``input_ids`` and
``attention_mask``). Compression methods and profilers take positional example inputs; a dict
is turned into a tuple ordered by the model's ``forward`` signature by :func:`as_args`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError

LABEL_KEYS = ("labels", "label")  # looked up in this order when no label key is configured

__all__ = [
    "LABEL_KEYS",
    "as_args",
    "batch_size_of",
    "call_model",
    "concat",
    "outputs_of",
    "shaped_like",
    "split_batch",
    "take",
]


def split_batch(batch: Any, label_key: str | None = None) -> tuple[Any, Any]:
    """Split a batch into the model's inputs and the targets.

    Args:
        batch: A tensor (inputs only), a tuple or list ``(x, y)`` or ``(x1, ..., xn, y)``, or a
            mapping holding the targets under ``label_key``.
        label_key: The targets' key in dict batches; None looks up ``labels``, then ``label``.

    Returns:
        ``(inputs, targets)``; inputs are a tensor, a tuple of tensors or a dict (without the
        label key); targets are None when the batch has none.

    Raises:
        ConfigError: A dict batch has no label key.
    """
    if isinstance(batch, Mapping):
        key = _label_key(batch, label_key)
        return {k: v for k, v in batch.items() if k != key}, batch[key]
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        inputs = batch[0] if len(batch) == 2 else tuple(batch[:-1])
        return inputs, batch[-1]
    return batch, None


def _label_key(batch: Mapping, label_key: str | None) -> str:
    """The key of the targets in a dict batch."""
    keys = (label_key,) if label_key else LABEL_KEYS
    for key in keys:
        if key in batch:
            return key
    raise ConfigError(f"data.label_key: dict batch has no key {' or '.join(map(repr, keys))}; "
                      f"its keys: {', '.join(map(str, batch))}")


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Run ``model`` on inputs from :func:`split_batch` (dict -> keywords, tuple -> positional)."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


def outputs_of(output: Any) -> torch.Tensor:
    """The prediction tensor of a model's output: itself, ``.logits``, ``["logits"]`` or ``[0]``."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    if isinstance(output, Sequence) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise ConfigError(f"model output of type {type(output).__name__} holds no prediction "
                      "tensor (expected a tensor, .logits, ['logits'] or a tuple)")


def shaped_like(targets: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Targets shaped as the outputs when they hold as many values (``(B,)`` vs ``(B, 1)``)."""
    if targets.shape != outputs.shape and targets.numel() == outputs.numel():
        return targets.reshape(outputs.shape)
    return targets


def take(inputs: Any, n: int) -> Any:
    """The first ``n`` samples of inputs (a tensor, a tuple or a dict of tensors)."""
    if isinstance(inputs, Mapping):
        return {k: take(v, n) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(take(v, n) for v in inputs)
    return inputs[:n] if isinstance(inputs, torch.Tensor) and inputs.dim() > 0 else inputs


def concat(parts: Sequence[Any]) -> Any:
    """Concatenate inputs (or targets) of several batches along the batch dimension."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts)) if first.dim() > 0 else first
    return first


def batch_size_of(inputs: Any) -> int:
    """How many samples inputs hold (the first tensor's leading dimension)."""
    if isinstance(inputs, Mapping):
        return batch_size_of(next(iter(inputs.values())))
    if isinstance(inputs, (tuple, list)):
        return batch_size_of(inputs[0])
    return int(inputs.shape[0]) if isinstance(inputs, torch.Tensor) and inputs.dim() else 1


def as_args(model: nn.Module, inputs: Any) -> Any:
    """Inputs as positional arguments of ``model``: a tensor or tuple as is, a dict as a tuple.

    A dict is ordered by ``model.forward``'s parameters (a parameter the dict lacks between two
    it has gets None, the usual default of optional inputs such as ``token_type_ids``). This is
    how dict batches reach compression methods and profilers, which call ``model(*args)``.

    Raises:
        ConfigError: A key is not a parameter of ``forward``.
    """
    if not isinstance(inputs, Mapping):
        return inputs
    params = [p.name for p in inspect.signature(model.forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    unknown = [k for k in inputs if k not in params]
    if unknown:
        raise ConfigError(f"data: batch keys {unknown} are not positional parameters of "
                          f"{type(model).__name__}.forward ({', '.join(params)})")
    last = max(params.index(k) for k in inputs)
    values = tuple(inputs.get(name) for name in params[: last + 1])
    return values[0] if len(values) == 1 else values
