"""Shared fixtures: a deterministic seed for every test, and small models with their inputs."""

from __future__ import annotations

import os

import pytest
import torch

from autocompress.testing import example_input
from autocompress.zoo import build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _tracking_env():
    """Each test starts and ends without the tracking-URI variables.

    ``mlflow.set_tracking_uri()`` also sets ``$MLFLOW_TRACKING_URI``; left behind, it outranks
    a later test's recipe ``tracking.uri`` (autocompress.locations), so that test's search
    (module-scoped fixtures included, which start before function fixtures) would record into
    another test's store. Removed after each test, not only before it.
    """
    names = ("AUTOCOMPRESS_TRACKING_URI", "MLFLOW_TRACKING_URI")
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    yield
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(saved)


@pytest.fixture
def digits():
    """A narrow digits_cnn (width 8) and a batch of four inputs."""
    model = build_model("digits_cnn", width=8)
    return model, example_input(model, batch=4)
