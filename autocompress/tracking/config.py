"""The tracking section of a recipe, as plain data (no MLflow)."""

from __future__ import annotations

from dataclasses import dataclass

# the compressed artifact's file name in a trial's folder and under a run's ``model/`` artifacts
ARTIFACT_NAME = "model.acz"

__all__ = ["ARTIFACT_NAME", "TrackingConfig"]


@dataclass(frozen=True)
class TrackingConfig:
    """Where trials are recorded (MLflow)."""

    uri: str = "sqlite:///mlruns.db"
    experiment: str | None = None
