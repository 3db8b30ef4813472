"""The MLflow Model Registry: register a trial's model with what it is and what it measured."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autocompress.errors import ConfigError
from autocompress.hardware.timing import chosen_form
from autocompress.tracking.pyfunc import MODEL_DIR
from autocompress.tracking.store import client
from autocompress.tracking.tracker import PARENT, ROLE, STATUS, TRIAL_ID

__all__ = ["Registered", "register"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_TAG_CHARS = 5000  # MLflow's limit on a model version tag's value
_MEASURED = ("latency_ms", "size_kb", "size_bytes", "params", "macs")


@dataclass(frozen=True)
class Registered:
    """A registered model version."""

    name: str
    version: str
    run_id: str
    alias: str | None
    source: str

    @property
    def uri(self) -> str:
        """``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) for ``pyfunc.load_model``."""
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}/{self.version}"


def register(experiment_or_run: str, name: str, alias: str | None = None,
             tags: Mapping[str, Any] | None = None, *, uri: str,
             budgets: tuple = ()) -> Registered:
    """Register a trial's MLflow Model (``runs:/RUN/model``) as a new version of ``name``.

    Args:
        experiment_or_run: A trial's run id, or an experiment name: then the Pareto member
            :func:`~autocompress.tracking.pick` chooses under ``budgets``.
        name: The registered model's name (created if new).
        alias: An alias to point at the new version (e.g. ``champion``), moved if it exists.
        tags: More tags for the version (added to the plan, budgets and measurements).
        uri: The tracking URI (the registry lives in the same store).
        budgets: Budgets for choosing the member when an experiment is given.

    Returns:
        The new version (its ``uri`` loads it).

    Raises:
        ConfigError: the run is not a completed trial with a logged model.
    """
    c = client(uri)
    run_id = _run_id(uri, experiment_or_run, budgets)
    run = _trial_run(c, run_id)
    source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_DIR}"
    _ensure_model(c, name)
    version = c.create_model_version(name, source, run_id=run_id,
                                     tags={**version_tags(c, run), **dict(tags or {})},
                                     description=_description(run))
    if alias:
        c.set_registered_model_alias(name, alias, version.version)
    return Registered(name, str(version.version), run_id, alias, source)


def version_tags(c: Any, run: Any) -> dict[str, str]:
    """The version's tags: trial, plan, the search's budgets and metric, every measurement."""
    metrics, params = run.data.metrics, run.data.params
    parent = c.get_run(run.data.tags[PARENT]) if PARENT in run.data.tags else None
    search = parent.data.params if parent else {}
    tags = {"autocompress.trial_id": run.data.tags.get(TRIAL_ID, ""),
            "autocompress.run_name": run.info.run_name or "",
            "autocompress.plan": _fit(json.dumps(params, sort_keys=True)),
            "autocompress.budgets": search.get("budgets", ""),
            "autocompress.metric": search.get("metric.name", "accuracy"),
            "autocompress.target": search.get("hardware.target", "")}
    tags.update({f"measured.{k}": repr(float(v)) for k, v in sorted(metrics.items())
                 if not k.startswith(("time_", "epoch"))})
    tags.update(forms(tags["autocompress.metric"], metrics))
    return {k: str(v) for k, v in tags.items()}


def forms(metric: str, metrics: Mapping[str, float]) -> dict[str, str]:
    """Which form the measurements are of, and which one the registered MLflow Model serves.

    A trial timed as an int8 ONNX graph reports that graph's latency and quality
    (``measured.<metric>``); the MLflow Model serves the PyTorch model, whose quality is
    ``measured.<metric>_pytorch``. Both are said, so no one deploys one form on the other's
    numbers.
    """
    served = "pytorch (the trial's model.acz, through the pyfunc flavour)"
    if f"{metric}_pytorch" not in metrics:
        return {"autocompress.measured_form": "the served model", "autocompress.served_form":
                served}
    kind = {"dynamic": "dynamic", "static": "static QDQ"}.get(chosen_form(metrics), "static QDQ")
    return {"autocompress.measured_form": (
                f"int8 ONNX graph ({kind}, ONNX Runtime): measured.latency_ms and "
                f"measured.{metric} are its; the served PyTorch model scores "
                f"measured.{metric}_pytorch"),
            "autocompress.served_form": served}


def _run_id(uri: str, experiment_or_run: str, budgets: tuple) -> str:
    if _RUN_ID.match(experiment_or_run):
        return experiment_or_run
    from autocompress.tracking.query import pick

    return pick(uri, experiment_or_run, list(budgets)).run_id


def _trial_run(c: Any, run_id: str) -> Any:
    try:
        run = c.get_run(run_id)
    except Exception:  # noqa: BLE001  (MLflow's own "not found")
        raise ConfigError(f"register: no run {run_id!r} in the tracking store") from None
    status = run.data.tags.get(STATUS)
    if run.data.tags.get(ROLE) != "trial" or status != "completed":
        raise ConfigError(f"register: run {run_id} is not a completed trial (role "
                          f"{run.data.tags.get(ROLE)!r}, status {status!r}); only completed "
                          "trials have a model")
    names = {a.path for a in c.list_artifacts(run_id, MODEL_DIR)}
    if f"{MODEL_DIR}/MLmodel" not in names:
        raise ConfigError(f"register: run {run_id} has no MLflow Model at {MODEL_DIR}/ (logged "
                          "before models were; register a trial of a newer search)")
    return run


def _ensure_model(c: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description="Compressed by autocompress (pyfunc "
                                                    "flavour loading a .acz artifact).")


def _description(run: Any) -> str:
    m = run.data.metrics
    shown = ", ".join(f"{k} {m[k]:.4g}" for k in ("accuracy", "test_accuracy", *_MEASURED[:2])
                      if k in m)
    return f"Trial {run.info.run_name or run.info.run_id}: {shown}"


def _fit(text: str) -> str:
    return text if len(text) <= _TAG_CHARS else text[: _TAG_CHARS - 1] + "…"
