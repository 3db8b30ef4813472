"""The int8 deploy path: ONNX export (float and QDQ int8) run in ONNX Runtime."""

import numpy as np
import onnx
import pytest
import torch

from autocompress.export.onnx import deployable, export_onnx
from autocompress.hardware.onnxruntime import measure_onnx_latency, run
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.zoo import build_model

PLAN = {"layers": {
    "features.3": {"prune": {"ratio": 0.5}, "quantize": {"bits": 8}},
    "features.7": {"sparsify": {"sparsity": 0.5}, "share": {"bits": 4}},
    "classifier.1": {"hashed": {"compression": 0.25}},
    "classifier.3": {"quantize": {"bits": 4}},
}}


@pytest.fixture(scope="module")
def compressed():
    torch.manual_seed(0)
    model = build_model("digits_cnn", width=8).eval()
    x = torch.randn(64, 1, 8, 8)
    return apply_plan(model, CompressionPlan.from_dict(PLAN), x[:1]).eval(), x


def test_deployable_copy_is_plain_and_computes_the_same(compressed):
    model, x = compressed
    plain = deployable(model)
    kinds = {type(m).__name__ for m in plain.modules()}
    assert not kinds & {"CompressedLinear", "CompressedConv2d", "HashedLinear"}
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=1e-4)


def test_deployable_keeps_circulant_layers_unless_asked_and_never_modifies(compressed):
    torch.manual_seed(0)
    model = build_model("digits_cnn", width=8).eval()
    x = torch.randn(4, 1, 8, 8)
    plan = CompressionPlan.from_dict({"layers": {"classifier.1": {"circulant": {"block": 8}}}})
    circ = apply_plan(model, plan, x[:1]).eval()
    before = {type(m).__name__ for m in circ.modules()}
    kept = {type(m).__name__ for m in deployable(circ, dense_circulant=False).modules()}
    dense = {type(m).__name__ for m in deployable(circ).modules()}
    assert "CirculantLinear" in before and "CirculantLinear" in kept
    assert "CirculantLinear" not in dense
    assert {type(m).__name__ for m in circ.modules()} == before
    with torch.no_grad():
        torch.testing.assert_close(deployable(circ)(x), circ(x), atol=1e-5, rtol=1e-4)


def test_deployed_layers_keep_the_dtype(compressed):
    model, x = compressed
    double = deployable(model.double())
    assert {p.dtype for p in double.parameters()} == {torch.float64}
    with torch.no_grad():
        torch.testing.assert_close(double(x.double()), model(x.double()))
    model.float()


def test_eager_targets_time_the_deployed_model(compressed, monkeypatch):
    from autocompress.hardware.profilers import get_profiler
    from autocompress.methods.layers import CompressedConv2d, CompressedLinear

    model, x = compressed

    def not_deployed(*_):
        raise AssertionError("timed a compressed layer as-is, not the deployed model")

    monkeypatch.setattr(CompressedLinear, "forward", not_deployed)
    monkeypatch.setattr(CompressedConv2d, "forward", not_deployed)
    with get_profiler("cpu-torch").runner(model, x[:1]) as run:
        run()


def test_float_onnx_reproduces_the_model(compressed, tmp_path):
    model, x = compressed
    size = export_onnx(model, x[:1], tmp_path / "f.onnx")
    assert size == (tmp_path / "f.onnx").stat().st_size
    with torch.no_grad():
        np.testing.assert_allclose(run(tmp_path / "f.onnx", x), model(x).numpy(), atol=1e-4)


def test_int8_onnx_stores_int8_weights_and_stays_close(compressed, tmp_path):
    model, x = compressed
    f = export_onnx(model, x[:1], tmp_path / "f.onnx")
    q = export_onnx(model, x[:1], tmp_path / "q.onnx", int8=True, calibration=x)
    graph = onnx.load(tmp_path / "q.onnx").graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8 and q < f / 2  # weights are int8 in the file
    with torch.no_grad():
        ref = model(x).numpy()
    out = run(tmp_path / "q.onnx", x)
    assert (out.argmax(1) == ref.argmax(1)).mean() > 0.9
    timing = measure_onnx_latency(tmp_path / "q.onnx", x[:1], warmup=2, repeats=10,
                                  max_seconds=0.5)
    assert timing["latency_ms"] <= timing["latency_p90_ms"] and timing["runs"] >= 5
