"""The deploy path: an ONNX file of the compressed model, float or int8 (QDQ) for ONNX Runtime.

The exported graph computes what the compressed model computes: compressed layers are
materialised with their effective (quantized / shared / masked) weights, hashed and circulant
layers with their dense equivalents. With ``int8=True`` the graph is statically quantized to
8-bit integer weights and activations (per-channel QDQ, calibrated on real inputs), so ONNX
Runtime runs integer kernels: this is where quantization shows up in measured latency.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from autocompress.export.deploy import deployable  # noqa: F401  (re-exported here too)

INPUT, OUTPUT = "input", "logits"


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *,
                int8: bool = False, calibration: torch.Tensor | None = None,
                opset: int = 17) -> int:
    """Write the model as ONNX (batch dimension dynamic) and return the file's bytes.

    Args:
        model: The (compressed) model.
        example: An input batch.
        path: Where to write the ``.onnx`` file.
        int8: Statically quantize to int8 QDQ (per-channel weights, calibrated activations).
        calibration: Inputs for activation ranges (defaults to ``example``).
        opset: ONNX opset.
    """
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        float_path = Path(tmp) / "float.onnx" if int8 else path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(deployable(model), (example,), str(float_path), dynamo=False,
                              input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        if int8:
            _quantize_int8(float_path, path, calibration if calibration is not None else example)
    return path.stat().st_size


def _quantize_int8(source: Path, target: Path, calibration: torch.Tensor) -> None:
    import logging

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

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, nodes_to_exclude=mask_nodes(source))


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
