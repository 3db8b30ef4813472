"""Loading a user's checkpoint safely: a plain state dict, or a clear ConfigError."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from autocompress.errors import ConfigError

HOW = "save one with torch.save(model.state_dict(), path)"


def load_state_dict_file(path: Path, where: str) -> dict[str, torch.Tensor]:
    """Read ``path`` with ``torch.load(weights_only=True)``: tensors only, no code runs.

    A file that is not a plain state dict (a pickled module or object, a Lightning checkpoint,
    any other file) is refused without repeating torch's advice to load it unsafely.

    Args:
        path: The checkpoint file.
        where: The recipe field it came from, e.g. ``model.checkpoint``.

    Returns:
        The state dict (parameter name -> tensor).

    Raises:
        ConfigError: naming the field and the file.
    """
    if not path.is_file():
        raise ConfigError(f"{where}: file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (unpickling errors come as many types)
        raise ConfigError(f"{where}: {path} is not a plain state dict that loads safely "
                          f"({type(exc).__name__}); {HOW}") from None
    if isinstance(state, Mapping) and "state_dict" in state and not _tensors(state):
        raise ConfigError(f"{where}: {path} holds a training checkpoint, not a plain state "
                          f"dict; save its ['state_dict'] entry, or {HOW}")
    if not isinstance(state, Mapping) or not _tensors(state):
        raise ConfigError(f"{where}: {path} is not a plain state dict (a mapping of parameter "
                          f"names to tensors) but a {type(state).__name__}; {HOW}")
    return dict(state)


def load_checkpoint(model: nn.Module, path: Path, where: str, name: str) -> nn.Module:
    """Load the state dict at ``path`` into ``model`` (called ``name`` in errors).

    Raises:
        ConfigError: the file is not a plain state dict, or does not fit the model.
    """
    state = load_state_dict_file(path, where)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing / unexpected keys, shape mismatches
        raise ConfigError(f"{where}: {path} does not fit {name!r}: "
                          f"{' '.join(str(exc).split())}") from None
    return model


def _tensors(state: Mapping) -> bool:
    return bool(state) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                               for k, v in state.items())
