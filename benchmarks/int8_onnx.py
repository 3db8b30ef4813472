"""Measured latency of the int8 deploy path: float vs int8 QDQ ONNX in ONNX Runtime, one thread.

Usage: python benchmarks/int8_onnx.py   (prints a Markdown table; weights need no training:
latency does not depend on their values)
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import onnxruntime
import torch

from autocompress.export.onnx import export_onnx
from autocompress.hardware.onnxruntime import measure_onnx_latency
from autocompress.zoo import build_model

MODELS = {"digits_cnn": (1, 8, 8), "lenet5": (1, 28, 28), "lenet5_caffe": (1, 28, 28),
          "lenet300_100": (1, 28, 28)}


def main() -> None:
    torch.manual_seed(0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"onnxruntime {onnxruntime.__version__}; 1 intra-op thread\n")
    print("| model | batch | float ONNX ms (median) | int8 QDQ ms | speed-up | float KB "
          "| int8 KB |")
    print("|---|---|---|---|---|---|---|")
    for name, shape in MODELS.items():
        model = build_model(name).eval()
        calibration = torch.randn(64, *shape)
        for batch in (1, 32):
            row(name, model, calibration, batch)


def row(name, model, calibration, batch) -> None:
    example = calibration[:batch]
    with tempfile.TemporaryDirectory() as tmp:
        f, q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        f_size = export_onnx(model, example, f)
        q_size = export_onnx(model, example, q, int8=True, calibration=calibration)
        tf = measure_onnx_latency(f, example, repeats=300, max_seconds=3)["latency_ms"]
        tq = measure_onnx_latency(q, example, repeats=300, max_seconds=3)["latency_ms"]
    print(f"| {name} | {batch} | {tf:.3f} | {tq:.3f} | {tf / tq:.2f}x | {f_size / 1024:.0f} | "
          f"{q_size / 1024:.0f} |")


if __name__ == "__main__":
    main()
