"""Tiny models covering the graph shapes compression must handle: plain, residual and concat.

Every factory takes keyword arguments, returns a model in training mode with an ``input_shape``
attribute (one sample, no batch dimension) and has a ``forward`` that hard-codes no channel
count, so structured pruning can shrink any hidden layer. Build them with
``autocompress.zoo.build_model("autocompress.testing.models:<factory>", **kwargs)`` when the
model must round-trip through a compressed artifact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def _positive(model: str, **values: int) -> None:
    """Raise ValueError unless every value is a positive int."""
    for arg, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {arg} must be a positive integer, got {value!r}")


def _conv_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 3x3 same-padding convolution followed by batch norm."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _head(channels: int, num_classes: int) -> nn.Sequential:
    """Global average pool, flatten and a linear classifier."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)
    )


def tiny_mlp(num_classes: int = 10, hidden: int = 32) -> nn.Sequential:
    """Flatten, ``Linear(16, hidden)``, ReLU, ``Linear(hidden, num_classes)``; input ``(1, 4, 4)``.

    Layer names are ``1`` (hidden) and ``3`` (output).
    """
    _positive("tiny_mlp", num_classes=num_classes, hidden=hidden)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(16, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )
    model.input_shape = (1, 4, 4)
    return model


class TinyResidual(nn.Module):
    """``stem -> relu(x + block(x)) -> head``: the addition couples stem and block widths.

    Layers: ``stem.0`` (conv), ``block.0`` and ``block.3`` (convs of the residual branch),
    ``head.2`` (the output linear layer). Input ``(1, 8, 8)``.
    """

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, width), nn.ReLU())
        self.block = nn.Sequential(*_conv_bn(width, width), nn.ReLU(), *_conv_bn(width, width))
        self.relu = nn.ReLU()
        self.head = _head(width, num_classes)
        self.input_shape = (1, 8, 8)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits, shape ``(batch, num_classes)``."""
        x = self.stem(x)
        return self.head(self.relu(x + self.block(x)))


class TinyConcat(nn.Module):
    """Two conv branches concatenated on channels, a fusing conv, then a linear head.

    Layers: ``left.0``, ``right.0`` (branches, 3x3 and 1x1), ``fuse.0`` (conv over the
    concatenation), ``head.2`` (the output linear layer). Input ``(1, 8, 8)``.
    """

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.left = nn.Sequential(*_conv_bn(1, width), nn.ReLU())
        self.right = nn.Sequential(
            nn.Conv2d(1, width, kernel_size=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.fuse = nn.Sequential(*_conv_bn(2 * width, 2 * width), nn.ReLU())
        self.head = _head(2 * width, num_classes)
        self.input_shape = (1, 8, 8)

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits, shape ``(batch, num_classes)``."""
        return self.head(self.fuse(torch.cat([self.left(x), self.right(x)], dim=1)))


def tiny_residual(num_classes: int = 10, width: int = 8) -> TinyResidual:
    """Build a :class:`TinyResidual` (input ``(1, 8, 8)``)."""
    _positive("tiny_residual", num_classes=num_classes, width=width)
    return TinyResidual(num_classes, width)


def tiny_concat(num_classes: int = 10, width: int = 8) -> TinyConcat:
    """Build a :class:`TinyConcat` (input ``(1, 8, 8)``)."""
    _positive("tiny_concat", num_classes=num_classes, width=width)
    return TinyConcat(num_classes, width)


TINY_MODELS: dict[str, Callable[..., nn.Module]] = {
    "tiny_mlp": tiny_mlp,
    "tiny_residual": tiny_residual,
    "tiny_concat": tiny_concat,
}


def build_tiny(name: str, **kwargs) -> nn.Module:
    """Build a tiny model through the zoo, so compressed artifacts can rebuild it.

    Args:
        name: A key of :data:`TINY_MODELS`.
        **kwargs: Keyword arguments of its factory.
    """
    from autocompress.zoo import build_model  # the zoo may import this kit lazily, not at load

    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; valid names: {', '.join(TINY_MODELS)}")
    return build_model(f"{__name__}:{name}", **kwargs)


def example_input(model: nn.Module, batch: int = 2, seed: int = 0) -> Tensor:
    """A deterministic random batch shaped for ``model`` (which has an ``input_shape``)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *model.input_shape, generator=generator)
