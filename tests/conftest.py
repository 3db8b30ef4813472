"""Shared fixtures: a deterministic seed for every test, and small models with their inputs."""

from __future__ import annotations

import pytest
import torch

from autocompress.testing import example_input
from autocompress.zoo import build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def digits():
    """A narrow digits_cnn (width 8) and a batch of four inputs."""
    model = build_model("digits_cnn", width=8)
    return model, example_input(model, batch=4)
