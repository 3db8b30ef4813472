"""MLflow store set-up: URIs, sqlite initialisation, experiments. Imports MLflow lazily."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autocompress.errors import ConfigError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def is_sqlite(uri: str) -> bool:
    """True for ``sqlite:///...`` URIs (an embedded, single-host store)."""
    return uri.startswith("sqlite:")


def normalize_uri(uri: str) -> str:
    """Make a relative sqlite path absolute so trials and later commands find the same file."""
    if is_sqlite(uri) and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifact location beside an embedded sqlite store (``mlartifacts/``), else the server's."""
    if not is_sqlite(uri):
        return None
    return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()


def client(uri: str) -> MlflowClient:
    """An MLflow client for ``uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=normalize_uri(uri))


def init_store(uri: str) -> MlflowClient:
    """Create the store's schema now, in one process.

    Several processes initialising a fresh sqlite store at once race in its schema migration;
    doing it once in the driver before any trial starts avoids that.
    """
    uri = normalize_uri(uri)
    if is_sqlite(uri):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        c = client(uri)
        c.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001  (any backend failure is the user's URI)
        raise ConfigError(f"tracking.uri: cannot open MLflow store {uri!r}: {exc}") from None
    return c


def get_or_create_experiment(c: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (with a local artifact root for sqlite) if new."""
    experiment = c.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return c.create_experiment(name, artifact_location=artifact_root(normalize_uri(uri)))


def find_experiment(c: MlflowClient, name: str) -> str:
    """The id of an existing experiment, or a ConfigError listing the known ones."""
    experiment = c.get_experiment_by_name(name)
    if experiment is None:
        names = sorted(e.name for e in c.search_experiments())
        known = ", ".join(names) or "none"
        raise ConfigError(f"experiment {name!r} not found in the tracking store; known: {known}")
    return experiment.experiment_id
