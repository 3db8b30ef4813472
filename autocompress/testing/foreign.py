"""Architectures autocompress was never tuned for, for tests and benchmarks of "any model".

Hugging Face ``transformers`` models built offline from their configs (random weights), and two
models written to break naive tools: a conv subclass that pads in its own ``forward`` (as
TF-ported convs do) and a custom module holding a parameter and a buffer. Each comes with an
example input and a plan mixing pruning, low-rank factorization and quantization.

    factory, example, plan = FOREIGN["resnet"]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers


def resnet() -> nn.Module:
    """A small ``ResNetForImageClassification`` (bottleneck blocks, residual shortcuts)."""
    t = _transformers()
    return t.ResNetForImageClassification(t.ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_labels=10))


def mobilenet_v2() -> nn.Module:
    """``MobileNetV2ForImageClassification``: its conv wrappers pad TF-style in ``forward``."""
    t = _transformers()
    return t.MobileNetV2ForImageClassification(t.MobileNetV2Config(
        depth_multiplier=0.35, num_labels=10, image_size=64))


def efficientnet_b0() -> nn.Module:
    """EfficientNet-B0: depthwise convs subclass ``nn.Conv2d``; squeeze-and-excitation."""
    t = _transformers()
    return t.EfficientNetForImageClassification(t.EfficientNetConfig(
        width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280, num_labels=10,
        image_size=64))


def bert() -> nn.Module:
    """A small random ``BertForSequenceClassification`` (embeddings, attention, FFN)."""
    t = _transformers()
    return t.BertForSequenceClassification(t.BertConfig(
        vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3))


class SameConv(nn.Conv2d):
    """A TF-"same" padding conv: pads in ``forward``, so it computes differently from Conv2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = max(self.kernel_size[0] - self.stride[0], 0)
        pad_w = max(self.kernel_size[1] - self.stride[1], 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


class Scale(nn.Module):
    """A custom module with a per-channel parameter and a persistent buffer."""

    def __init__(self, channels: int):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.register_buffer("offset", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain[:, None, None] + self.offset[:, None, None]


def custom_net() -> nn.Module:
    """Two :class:`SameConv` layers around a :class:`Scale`, pooling and a Linear head."""
    return nn.Sequential(
        SameConv(3, 16, 3, stride=2), nn.ReLU(), Scale(16),
        SameConv(16, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 5))


_STAGE = "resnet.encoder.stages.{}.layers.0.layer.{}.convolution"

# name -> (factory, example input, plan layers mixing pruning, low-rank and quantization)
FOREIGN: dict[str, tuple[Callable[[], nn.Module], Callable[[], Any], dict[str, Any]]] = {
    "resnet": (resnet, lambda: torch.randn(2, 3, 64, 64), {
        _STAGE.format(1, 0): {"prune": {"ratio": 0.5}},
        _STAGE.format(2, 1): {"tucker": {"rank_ratio": 0.25}, "quantize": {"bits": 4}},
        _STAGE.format(3, 0): {"prune": {"ratio": 0.25}, "quantize": {"bits": 8}},
        "classifier.1": {"svd": {"rank": 4}, "quantize": {"bits": 8}},
    }),
    "mobilenet_v2": (mobilenet_v2, lambda: torch.randn(2, 3, 64, 64), {
        "mobilenet_v2.conv_stem.first_conv.convolution": {"tucker": {"rank_ratio": 0.5}},
        "mobilenet_v2.layer.2.expand_1x1.convolution": {"prune": {"ratio": 0.5},
                                                       "quantize": {"bits": 4}},
        "classifier": {"svd": {"rank": 8}, "quantize": {"bits": 8}},
    }),
    "efficientnet_b0": (efficientnet_b0, lambda: torch.randn(2, 3, 64, 64), {
        "efficientnet.encoder.blocks.1.expansion.expand_conv": {"prune": {"ratio": 0.5}},
        "efficientnet.encoder.blocks.1.depthwise_conv.depthwise_conv": {"quantize": {"bits": 8}},
        "efficientnet.encoder.blocks.2.projection.project_conv": {"quantize": {"bits": 4}},
        "efficientnet.embeddings.convolution": {"tucker": {"rank_ratio": 0.5}},
        "classifier": {"quantize": {"bits": 8}},
    }),
    "bert": (bert, lambda: torch.randint(1, 500, (2, 16)), {
        "bert.embeddings.word_embeddings": {"svd": {"rank": 8}, "quantize": {"bits": 4}},
        "bert.embeddings.position_embeddings": {"share": {"bits": 4}},
        "bert.encoder.layer.0.intermediate.dense": {"prune": {"ratio": 0.5}},
        "bert.encoder.layer.1.attention.self.query": {"svd": {"rank_ratio": 0.25}},
        "bert.encoder.layer.1.output.dense": {"quantize": {"bits": 8}},
    }),
    "custom": (custom_net, lambda: torch.randn(2, 3, 15, 15), {
        "3": {"prune": {"ratio": 0.5}},
        "7": {"quantize": {"bits": 4}},
    }),
}

__all__ = ["FOREIGN", "SameConv", "Scale", "bert", "custom_net", "efficientnet_b0",
           "mobilenet_v2", "resnet"]
