"""MLflow store set-up: URIs, sqlite initialisation, experiments. Imports MLflow lazily."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

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


def client(uri: str, *, create: bool = False, where: str = "tracking URI") -> MlflowClient:
    """An MLflow client for the store at ``uri``, checked to open.

    Reading commands (``pareto``, ``pick``) never create a store or a folder: without
    ``create``, a local store (a sqlite file, a file-store folder) must already exist.

    Args:
        uri: The tracking URI.
        create: Allow MLflow to create the store (the search does, reading commands do not).
        where: What the URI is called in errors (``tracking.uri`` for a recipe's).

    Raises:
        ConfigError: naming the URI, when the store is missing or cannot be opened.
    """
    from mlflow.tracking import MlflowClient

    uri = normalize_uri(uri)
    if not create:
        _check_exists(uri)
    try:
        c = MlflowClient(tracking_uri=uri)
        if not create:
            c.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001  (any backend failure is the user's URI)
        raise ConfigError(f"{where} {uri!r}: cannot open the MLflow store: "
                          f"{_first_line(exc)}") from None
    return c


def _check_exists(uri: str) -> None:
    """Refuse a local store that is not there (MLflow would create it on opening)."""
    path = _local_path(uri)
    if path is None:
        return
    if is_sqlite(uri) and not _is_mlflow_sqlite(path):
        raise ConfigError(f"tracking URI {uri!r}: no MLflow store at {path} (reading "
                          "commands create none); run a search first, or check --tracking-uri")
    if not is_sqlite(uri) and not path.is_dir():
        raise ConfigError(f"tracking URI {uri!r}: no MLflow store folder at {path} (reading "
                          "commands create none); run a search first, or check --tracking-uri")


def _local_path(uri: str) -> Path | None:
    """The file or folder of a local store (sqlite, ``file:`` or a plain path), else None."""
    if is_sqlite(uri):
        rest = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        return Path(rest) if rest and rest != ":memory:" else None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:2] == ":"):  # C:\ paths
        return Path(uri)
    return None


def _is_mlflow_sqlite(path: Path) -> bool:
    """True when ``path`` is a sqlite database holding MLflow's tables (opened read-only)."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error:
        return False
    return "experiments" in tables


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def init_store(uri: str) -> MlflowClient:
    """Create the store's schema now, in one process.

    Several processes initialising a fresh sqlite store at once race in its schema migration;
    doing it once in the driver before any trial starts avoids that.
    """
    uri = normalize_uri(uri)
    if is_sqlite(uri):
        try:
            Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"tracking.uri: cannot create the folder of {uri!r}: "
                              f"{exc.strerror or exc}") from None
    c = client(uri, create=True, where="tracking.uri")
    try:
        c.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001  (any backend failure is the user's URI)
        raise ConfigError(f"tracking.uri: cannot open MLflow store {uri!r}: "
                          f"{_first_line(exc)}") from None
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
