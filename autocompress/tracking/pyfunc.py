"""Every completed trial's model as an MLflow Model: a pyfunc flavour that loads the ``.acz``.

``mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`` gives a model whose ``predict`` runs the
compressed network (rebuilt by :func:`~autocompress.export.load_compressed`) on a numpy array,
a dict of arrays (named inputs, e.g. a tokenizer's output) or a pandas DataFrame. The logged
signature is the input's tensor shape, and MLflow enforces it: a DataFrame fits a model whose
input is one feature vector per row; images go in as numpy arrays.

Trade-off, written down: the model is logged as "models from code" (``python_model=`` the path
of ``_pyfunc_entry.py``), not as a cloudpickled object, so logging never pickles user code and
what MLflow stores is a short, readable source file plus the ``.acz`` (tensors and a JSON spec).
Loading *any* pyfunc model still runs its code file: load pyfunc models only from a tracking
store you trust. ``load_compressed(path, base=...)`` on the downloaded ``.acz`` runs no code
named by the file and stays the safe way for files of unknown origin. The code imports
``autocompress``, so serving needs it installed; a base model given by an import path (not a
zoo name) is refused, as by ``load_compressed`` without ``trust_code``.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AczModel", "ENTRY", "MODEL_DIR", "example_array", "log_pyfunc", "predict_with"]

ENTRY = Path(__file__).with_name("_pyfunc_entry.py")
MODEL_DIR = "model"  # runs:/<run_id>/model
ACZ = "acz"  # the artifact's key in the model's context
_log = logging.getLogger(__name__)

try:  # a subclass of PythonModel when MLflow is importable (always, when this module runs)
    from mlflow.pyfunc import PythonModel as _Base
except ImportError:  # pragma: no cover
    _Base = object


class AczModel(_Base):
    """pyfunc model: ``load_context`` rebuilds the ``.acz``, ``predict`` runs it (no grad)."""

    def load_context(self, context: Any) -> None:
        """Rebuild the compressed model from the logged artifact."""
        from autocompress.export import load_compressed

        self.model = load_compressed(context.artifacts[ACZ]).eval()
        shape = (getattr(context, "model_config", None) or {}).get("input_shape")
        self.model._pyfunc_input_shape = tuple(shape) if shape else None

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        """The model's output (logits) for ``model_input`` as a numpy array.

        Not annotated: MLflow reads ``predict``'s type hints as a signature, and the logged
        tensor signature is the one to enforce.
        """
        return predict_with(self.model, model_input)


def predict_with(model: Any, model_input: Any) -> np.ndarray:
    """Run ``model`` on a numpy array, a DataFrame, a dict of arrays or a tensor."""
    import torch

    with torch.no_grad():
        if isinstance(model_input, Mapping):
            out = model(**{k: torch.as_tensor(np.asarray(v)) for k, v in model_input.items()})
        else:
            out = model(_tensor(model, model_input))
    out = getattr(out, "logits", out)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().cpu().numpy()


def _tensor(model: Any, model_input: Any):
    import torch

    if hasattr(model_input, "to_numpy"):  # pandas: one flattened input per row
        array = np.ascontiguousarray(model_input.to_numpy(dtype=np.float32))
        shape = getattr(model, "_pyfunc_input_shape", None)
        if shape is not None and array.shape[1:] != tuple(shape):
            array = array.reshape((len(array), *shape))
        return torch.from_numpy(array)
    return torch.as_tensor(np.asarray(model_input))


def example_array(example: Any) -> Any:
    """A model input (tensor, tuple of one tensor, or dict of tensors) as numpy, else None."""
    if isinstance(example, (tuple, list)):
        example = example[0] if len(example) == 1 else None
    if isinstance(example, Mapping):
        return {k: v.detach().cpu().numpy() for k, v in example.items()}
    return None if example is None else example.detach().cpu().numpy()


def log_pyfunc(uri: str, run_id: str, artifact: str, example: Any = None) -> None:
    """Save the artifact as a pyfunc MLflow Model and log it under ``model/`` of the run.

    The model is saved locally and logged with the client (no fluent run, no global tracking
    URI): ``model/MLmodel``, ``model/artifacts/model.acz`` and the entry code (``model/model.acz``,
    which ``pick`` reads, is the tracker's own upload of the artifact). With
    ``example`` (numpy, or a dict of arrays) the signature and input example are recorded.
    """
    import mlflow

    from autocompress.tracking.store import client

    signature = _signature(artifact, example)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_DIR
        with warnings.catch_warnings():  # "add type hints to predict": see AczModel.predict
            warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
            mlflow.pyfunc.save_model(
                str(path), python_model=str(ENTRY), artifacts={ACZ: artifact},
                signature=signature,
                input_example=example if signature is not None else None,
                pip_requirements=_requirements(),
                model_config={"input_shape": list(example.shape[1:])}
                if isinstance(example, np.ndarray) else None)
        client(uri, create=True).log_artifacts(run_id, str(path), MODEL_DIR)


def _signature(artifact: str, example: Any) -> Any:
    """The model's signature from one prediction on ``example``, or None (no example)."""
    if example is None:
        return None
    from mlflow.models import infer_signature

    from autocompress.export import load_compressed

    try:
        output = predict_with(load_compressed(artifact).eval(), example)
    except Exception as exc:  # noqa: BLE001  (logged without signature, never a failed trial)
        _log.warning("pyfunc model of %s logged without signature: %s", artifact, exc)
        return None
    return infer_signature(example, output)


def _requirements() -> list[str]:
    """Pinned requirements of the serving environment (autocompress itself must be there)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("torch", "numpy", "mlflow"):
        try:
            out.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:  # pragma: no cover
            out.append(package)
    return out
