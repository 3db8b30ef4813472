"""The deploy path: an ONNX file of the compressed model, float or int8, for ONNX Runtime.

The exported graph computes what the compressed model computes: compressed layers are
materialised with their effective (quantized / shared / masked) weights, hashed and circulant
layers with their dense equivalents. Two int8 forms let ONNX Runtime run integer kernels (this
is where quantization shows up in measured latency):

- ``static`` (``int8=True``): 8-bit weights and activations, per-channel QDQ, activation
  ranges calibrated on real inputs; usually the fast form of CNNs;
- ``dynamic``: 8-bit weights, activations quantized at run time from each batch's own range
  (no calibration); ONNX Runtime's recommended form for transformers, whose activation ranges
  vary per input.

Which is faster, and which loses less quality, depends on the model and the machine: the
``cpu-onnxruntime`` target measures it (``int8: auto``), the code never assumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from autocompress.errors import invalid
from autocompress.export.deploy import deployable  # noqa: F401  (re-exported here too)

INPUT, OUTPUT = "input", "logits"
# the graph forms: float32, static int8 QDQ (calibrated), dynamic int8 (weights only ahead)
FORMS = ("float", "static", "dynamic")


def graph_form(int8: bool | str) -> str:
    """The form named by an ``int8`` option: False ``float``, True ``static``, or the name."""
    if int8 is False:
        return "float"
    if int8 is True:
        return "static"
    if int8 in FORMS:
        return str(int8)
    raise invalid("int8", int8, (False, True, *FORMS))


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *,
                int8: bool | str = False, calibration: torch.Tensor | None = None,
                opset: int = 17) -> int:
    """Write the model as ONNX (batch dimension dynamic) and return the file's bytes.

    Args:
        model: The (compressed) model.
        example: An input batch.
        path: Where to write the ``.onnx`` file.
        int8: The graph's form: False (or ``"float"``) float32; True (or ``"static"``) int8
            QDQ with per-channel weights and calibrated activations; ``"dynamic"`` int8
            weights with activations quantized at run time.
        calibration: Inputs for the static form's activation ranges (defaults to ``example``).
        opset: ONNX opset.
    """
    path, form = Path(path), graph_form(int8)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx" if form != "float" else path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(deployable(model), (example,), str(float_path), dynamo=False,
                              input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        if form == "static":
            _quantize_int8(float_path, path, calibration if calibration is not None else example)
        elif form == "dynamic":
            _quantize_dynamic(float_path, path)
    return path.stat().st_size


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs through the root logger: raise it to ERROR meanwhile."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_int8(source: Path, target: Path, calibration: torch.Tensor) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(torch.split(calibration.detach(), 32))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch.numpy()}

    with _quiet_quantizer():
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, nodes_to_exclude=mask_nodes(source))


def _quantize_dynamic(source: Path, target: Path) -> None:
    """int8 weights (per tensor, signed); activations quantized per batch at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def mask_nodes(path: Path) -> list[str]:
    """Nodes kept in float: every ``Where``, the nodes reading its output, and their readers.

    In transformers, ``Where`` builds the additive attention mask (large negative fill
    values), which calibration turns into an infinite scale; left in float, the graph's
    int8 outputs track its float outputs.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    kept = [n for n in graph.node if n.op_type == "Where"]
    for _ in range(2):  # the mask's Add, then the Softmax reading the masked scores
        masked = {out for n in kept for out in n.output}
        kept += [n for n in graph.node if masked & set(n.input) and n not in kept]
    return sorted({n.name for n in kept if n.name})
