"""Shared fixtures: a deterministic seed for every test, and small models with their inputs."""

from __future__ import annotations

import pytest
import torch

from autocompress.testing import example_input
from autocompress.zoo import build_model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _tracking_env(monkeypatch):
    """Each test starts and ends without the tracking-URI variables.

    ``mlflow.set_tracking_uri()`` also sets ``$MLFLOW_TRACKING_URI``; left behind, it outranks
    a later test's recipe ``tracking.uri`` (autocompress.locations), so that test's search
    would record into another test's store.
    """
    for name in ("AUTOCOMPRESS_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def digits():
    """A narrow digits_cnn (width 8) and a batch of four inputs."""
    model = build_model("digits_cnn", width=8)
    return model, example_input(model, batch=4)
