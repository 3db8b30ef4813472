"""Small classifier networks that structural pruning can handle.

Every network keeps its layers in two ``nn.Sequential`` blocks, ``features`` (convolutions) and
``classifier`` (flatten then linear layers), so layer names read ``features.0`` or
``classifier.1``. Flattened sizes are computed from the input shape when the network is built
and there are no reshapes that assume a channel count, so removing channels or neurons needs
no change to ``forward``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import Tensor, nn

from autocompress.zoo.checks import ZooError, check_positive
from autocompress.zoo.text import minilm_classifier

__all__ = [
    "MODELS",
    "ZooError",
    "ZooNet",
    "build_model",
    "digits_cnn",
    "lenet300_100",
    "lenet5",
    "lenet5_caffe",
    "minilm_classifier",
]


class ZooNet(nn.Module):
    """A classifier made of an optional ``features`` block and a ``classifier`` block.

    Attributes:
        input_shape: Shape of one input sample, without the batch dimension.
        num_classes: Number of output logits.
    """

    def __init__(
        self,
        features: nn.Sequential | None,
        classifier: nn.Sequential,
        input_shape: tuple[int, ...],
        num_classes: int,
    ) -> None:
        super().__init__()
        if features is not None:
            self.features = features
        self.classifier = classifier
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """Return the logits, shape ``(batch, num_classes)``, of a batch of inputs."""
        if hasattr(self, "features"):
            x = self.features(x)
        return self.classifier(x)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Return a 3x3 same-padding convolution, its batch norm and a ReLU."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def _classifier(*widths: int) -> nn.Sequential:
    """Flatten, then linear layers of these widths (input first, logits last), ReLU between."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers += [nn.ReLU(inplace=True)] if i else []
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def digits_cnn(num_classes: int = 10, width: int = 32) -> ZooNet:
    """Build a three-convolution CNN for the 8x8 scikit-learn digits, input ``(1, 8, 8)``.

    Args:
        num_classes: Number of output logits.
        width: Channels of the first convolution; the next two have ``2 * width``.

    Returns:
        The network, in training mode.
    """
    check_positive("digits_cnn", num_classes=num_classes, width=width)
    features = nn.Sequential(
        *_conv_bn_relu(1, width),
        *_conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * width, 2 * width),
    )
    flat = 2 * width * 4 * 4  # 8x8 input, one 2x2 pool, same-padding convolutions
    return ZooNet(features, _classifier(flat, 128, num_classes), (1, 8, 8), num_classes)


def lenet5(num_classes: int = 10) -> ZooNet:
    """Build the classic LeNet-5 (6/16 channels, 120/84 hidden) for input ``(1, 28, 28)``.

    Args:
        num_classes: Number of output logits.

    Returns:
        The network (61,706 parameters with 10 classes), in training mode.
    """
    check_positive("lenet5", num_classes=num_classes)
    features = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )
    classifier = _classifier(16 * 5 * 5, 120, 84, num_classes)  # 28 -> 28 -> 14 -> 10 -> 5
    return ZooNet(features, classifier, (1, 28, 28), num_classes)


def lenet5_caffe(num_classes: int = 10) -> ZooNet:
    """Build Caffe's LeNet-5 (20/50 channels, 500 hidden), as in Deep Compression.

    Input ``(1, 28, 28)``. As in Caffe, there is no activation after the convolutions.

    Args:
        num_classes: Number of output logits.

    Returns:
        The network (431,080 parameters with 10 classes), in training mode.
    """
    check_positive("lenet5_caffe", num_classes=num_classes)
    features = nn.Sequential(
        nn.Conv2d(1, 20, kernel_size=5),
        nn.MaxPool2d(2),
        nn.Conv2d(20, 50, kernel_size=5),
        nn.MaxPool2d(2),
    )
    classifier = _classifier(50 * 4 * 4, 500, num_classes)  # 28 -> 24 -> 12 -> 8 -> 4
    return ZooNet(features, classifier, (1, 28, 28), num_classes)


def lenet300_100(num_classes: int = 10) -> ZooNet:
    """Build the LeNet-300-100 multilayer perceptron for input ``(1, 28, 28)``.

    Args:
        num_classes: Number of output logits.

    Returns:
        The network (266,610 parameters with 10 classes), in training mode. It has no
        ``features`` block.
    """
    check_positive("lenet300_100", num_classes=num_classes)
    return ZooNet(None, _classifier(28 * 28, 300, 100, num_classes), (1, 28, 28), num_classes)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": digits_cnn,
    "lenet5": lenet5,
    "lenet5_caffe": lenet5_caffe,
    "lenet300_100": lenet300_100,
    "minilm_classifier": minilm_classifier,  # needs the nlp extra (transformers)
}


def _unknown(kind: str, name: object, valid: Iterable[str]) -> ZooError:
    """Build the error for a name that is neither registered nor an import path."""
    names = ", ".join(sorted(valid))
    return ZooError(
        f"unknown {kind} {name!r}; valid names: {names}, "
        "or an import path 'package.module:function'"
    )


def resolve(name: str, registry: Mapping[str, Callable[..., Any]], kind: str) -> Callable[..., Any]:
    """Look a factory up by registered name or by ``"package.module:function"`` path.

    Args:
        name: Registered name or import path.
        registry: The registered factories, by name.
        kind: What is looked up (``"model"``, ``"dataset"``), for error messages.

    Returns:
        The factory.

    Raises:
        ZooError: The name is unknown, or the import path cannot be imported or is not
            callable.
    """
    if not isinstance(name, str):
        raise _unknown(kind, name, registry)
    if name in registry:
        return registry[name]
    if ":" not in name:
        raise _unknown(kind, name, registry)
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ZooError(f"{kind} {name!r}: cannot import module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ZooError(f"{kind} {name!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def _check_kwargs(name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise ZooError naming the model and argument if ``factory`` rejects ``kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        accepted = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        bad = sorted(set(kwargs) - set(accepted)) or sorted(kwargs)
        raise ZooError(
            f"model {name!r}: invalid argument(s) {', '.join(bad)} ({exc}); "
            f"accepted: {', '.join(accepted) or 'none'}"
        ) from exc


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model of the zoo, or one given by an import path.

    Args:
        name: A key of ``MODELS`` or ``"package.module:function"``.
        **kwargs: Keyword arguments of the factory, e.g. ``num_classes`` or ``width``.

    Returns:
        The new model, in training mode.

    Raises:
        ZooError: The name is unknown, an argument is not accepted or has a bad value, or
            the factory did not return an ``nn.Module``.
    """
    factory = resolve(name, MODELS, "model")
    _check_kwargs(name, factory, kwargs)
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ZooError(f"model {name!r}: factory returned {type(model).__name__}, not nn.Module")
    # How the artifact rebuilds the architecture without unpickling (see autocompress.export).
    model._autocompress_base = {"model": name, "kwargs": dict(kwargs)}
    return model
