"""Tests of autocompress.export: bit packing and the compressed artifact."""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from autocompress.errors import ArtifactError
from autocompress.export import load_compressed, model_ref, read_spec, save_compressed, to_bytes
from autocompress.export.packing import pack_codes, unpack_codes
from autocompress.methods import (
    CompressedConv2d,
    CompressedLinear,
    CompressionPlan,
    LowRankLinear,
    apply_plan,
    compressible_layers,
)
from autocompress.testing import build_tiny, example_input
from autocompress.zoo import build_model

MIXED = {
    "layers": {
        "features.0": {"quantize": {"bits": 1}},
        "features.3": {"prune": {"ratio": 0.5}, "quantize": {"bits": 2}},
        "features.7": {"prune": {"ratio": 0.25}, "quantize": {"bits": 16}},
        "classifier.1": {"svd": {"rank_ratio": 0.25}, "quantize": {"bits": 4}},
        "classifier.3": {"quantize": {"bits": 8, "per_channel": False}},
    }
}


def assert_reloads(model: nn.Module, x: torch.Tensor, path) -> nn.Module:
    """Save ``model``, load it back and check it computes the same outputs."""
    model.eval()
    size = save_compressed(model, path)
    assert size == os.path.getsize(path)
    loaded = load_compressed(path, trust_code=True)  # test models are import paths
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    return loaded


@pytest.fixture
def artifact(tmp_path):
    """A saved, pruned and quantized digits_cnn: (path, bytes)."""
    model = build_model("digits_cnn", width=8)
    x = example_input(model)
    student = apply_plan(model, CompressionPlan.from_dict(MIXED), x)
    path = tmp_path / "model.acz"
    save_compressed(student, path)
    return path, path.read_bytes()


def damaged(path, data: bytes) -> str:
    path.write_bytes(data)
    with pytest.raises(ArtifactError) as info:
        load_compressed(path)
    return str(info.value)


# --- packing --------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 7, 13, 1001])
def test_pack_unpack_round_trip(bits, count):
    rng = np.random.default_rng(bits * 1000 + count)
    codes = rng.integers(0, 2**bits, size=count)
    packed = pack_codes(codes, bits)
    assert packed.dtype == np.uint8
    assert packed.size == math.ceil(count * bits / 8)
    np.testing.assert_array_equal(unpack_codes(packed, bits, count), codes)


def test_pack_is_least_significant_bit_first():
    np.testing.assert_array_equal(pack_codes(np.array([1, 2, 3, 0]), 2), [0b00111001])


def test_pack_refuses_codes_too_wide():
    with pytest.raises(ValueError, match="does not fit in 3 bits"):
        pack_codes(np.array([0, 8]), 3)


def test_unpack_checks_the_byte_count():
    with pytest.raises(ValueError, match="expected 2 for 5 codes"):
        unpack_codes(np.zeros(3, dtype=np.uint8), 3, 5)


# --- save / load ----------------------------------------------------------------------------


def test_uncompressed_zoo_model_round_trips(tmp_path):
    model = build_model("digits_cnn", width=8)
    x = example_input(model, batch=4)
    model.train()(x)  # move the batch-norm running statistics off their defaults
    loaded = assert_reloads(model, x, tmp_path / "plain.acz")
    assert model_ref(loaded) == {"model": "digits_cnn", "kwargs": {"width": 8}}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_mixed_plan_round_trips(tmp_path):
    model = build_model("digits_cnn", width=8)
    x = example_input(model, batch=4)
    student = apply_plan(model, CompressionPlan.from_dict(MIXED), x)
    loaded = assert_reloads(student, x, tmp_path / "mixed.acz")
    assert isinstance(loaded.features[0], CompressedConv2d) and loaded.features[0].bits == 1
    assert loaded.features[3].weight.shape == (8, 8, 3, 3)
    assert loaded.features[7].bits == 16
    assert isinstance(loaded.classifier[1], LowRankLinear)
    assert isinstance(loaded.classifier[1].u, CompressedLinear) and loaded.classifier[1].u.bits == 4
    assert not loaded.classifier[3].per_channel
    spec = read_spec(tmp_path / "mixed.acz")
    args = {m["name"]: m["args"] for m in spec["modules"]}
    assert args["features.0"]["bits"] == 1 and args["features.7"]["bits"] == 16
    assert spec["encodings"]["features.0"]["values"]["coding"] in ("fixed", "huffman")
    assert spec["encodings"]["features.7"]["values"] == {"coding": "raw"}


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_pruned_residual_round_trips(tmp_path, ratio):
    model = build_tiny("tiny_residual", width=8)
    x = example_input(model, batch=3)
    layers = {
        layer.name: {"prune": {"ratio": ratio}, "quantize": {"bits": 4}}
        for layer in compressible_layers(model, x) if not layer.is_output
    }
    student = apply_plan(model, CompressionPlan.from_dict({"layers": layers}), x)
    loaded = assert_reloads(student, x, tmp_path / "residual.acz")
    assert loaded.stem[0].out_channels == round(8 * (1 - ratio))


def test_pruned_concat_round_trips(tmp_path):
    model = build_tiny("tiny_concat")
    x = example_input(model)
    plan = CompressionPlan.from_dict({"layers": {"left.0": {"prune": {"ratio": 0.5}},
                                                 "fuse.0": {"prune": {"ratio": 0.5}}}})
    assert_reloads(apply_plan(model, plan, x), x, tmp_path / "concat.acz")


def test_extra_metadata_is_kept(tmp_path):
    model = build_tiny("tiny_mlp")
    save_compressed(model, tmp_path / "m.acz", extra={"plan": "uncompressed", "accuracy": 0.9})
    assert read_spec(tmp_path / "m.acz")["extra"] == {"plan": "uncompressed", "accuracy": 0.9}


def test_explicit_base_for_a_model_not_built_by_the_zoo(tmp_path):
    model = build_tiny("tiny_mlp")
    plain = nn.Sequential(*model)  # same architecture, no base reference
    base = {"model": "autocompress.testing.models:tiny_mlp", "kwargs": {}}
    save_compressed(plain, tmp_path / "m.acz", base=base)
    x = example_input(model)
    loaded = load_compressed(tmp_path / "m.acz", trust_code=True)
    torch.testing.assert_close(loaded(x), plain(x))


def test_a_model_without_reference_saves_and_loads_with_its_base(tmp_path):
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))  # a notebook's model
    x = torch.randn(5, 4)
    save_compressed(plain, tmp_path / "m.acz")
    assert read_spec(tmp_path / "m.acz")["base"] == {
        "model": None, "class": "torch.nn.modules.container.Sequential"}
    with pytest.raises(ArtifactError, match="no factory reference.*base="):
        load_compressed(tmp_path / "m.acz")
    def factory():
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    fresh = factory()
    for loaded in (load_compressed(tmp_path / "m.acz", base=fresh),
                   load_compressed(tmp_path / "m.acz", base=factory)):
        torch.testing.assert_close(loaded(x), plain(x), atol=0, rtol=0)
    assert not torch.equal(fresh[0].weight, plain[0].weight)  # the base passed is not modified


def test_four_bit_artifact_is_a_sixth_of_the_float_one():
    model = build_model("digits_cnn", width=16)
    x = example_input(model)
    names = [layer.name for layer in compressible_layers(model, x)]
    plan = CompressionPlan.from_dict({"layers": {n: {"quantize": {"bits": 4}} for n in names}})
    float_bytes = len(to_bytes(model))
    quant_bytes = len(to_bytes(apply_plan(model, plan, x)))
    assert quant_bytes < float_bytes / 6


def test_size_shrinks_with_bits():
    model = build_model("digits_cnn", width=8)
    x = example_input(model)
    names = [layer.name for layer in compressible_layers(model, x)]
    sizes = []
    for bits in (16, 8, 4, 2, 1):
        plan = CompressionPlan.from_dict(
            {"layers": {n: {"quantize": {"bits": bits}} for n in names}})
        sizes.append(len(to_bytes(apply_plan(model, plan, x))))
    assert sizes == sorted(sizes, reverse=True)
    assert len(set(sizes)) == len(sizes)


def test_save_returns_the_file_size(tmp_path, artifact):
    path, data = artifact
    assert os.path.getsize(path) == len(data)
    assert save_compressed(load_compressed(path), tmp_path / "again.acz") == len(data)


# --- damaged artifacts ----------------------------------------------------------------------


def test_flipped_tensor_byte_fails_the_checksum(tmp_path, artifact):
    path, data = artifact
    header = int.from_bytes(data[:8], "little")
    flipped = bytearray(data)
    flipped[8 + header + (len(data) - 8 - header) // 2] ^= 0xFF
    message = damaged(tmp_path / "bad.acz", bytes(flipped))
    assert "damaged" in message and "checksum" in message and "bad.acz" in message


def test_changed_spec_fails_the_checksum(tmp_path, artifact):
    from safetensors.torch import load, save

    from autocompress.export.artifact import _pack_spec, _unpack_spec

    path, data = artifact
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    spec = _unpack_spec(header["__metadata__"]["autocompress"])
    spec["base"]["kwargs"]["width"] = 9  # a plausible edit that keeps the old checksum
    changed = save(load(data), metadata={"autocompress": _pack_spec(spec)})
    message = damaged(tmp_path / "bad.acz", changed)
    assert "checksum" in message


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, artifact, keep):
    _, data = artifact
    message = damaged(tmp_path / "cut.acz", data[: int(len(data) * keep)])
    assert "not a valid autocompress artifact" in message and "cut.acz" in message


@pytest.mark.parametrize("seed", range(3))
def test_random_garbage(tmp_path, seed):
    garbage = np.random.default_rng(seed).integers(0, 256, size=5000, dtype=np.uint8).tobytes()
    assert "not a valid autocompress artifact" in damaged(tmp_path / "junk.acz", garbage)


def test_empty_file(tmp_path):
    assert "not a valid autocompress artifact" in damaged(tmp_path / "empty.acz", b"")


def test_plain_safetensors_file_is_not_an_artifact(tmp_path):
    from safetensors.torch import save

    data = save({"w": torch.zeros(3)})
    assert "not a valid autocompress artifact" in damaged(tmp_path / "w.safetensors", data)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.acz"
    with pytest.raises(ArtifactError, match=r"nope\.acz: cannot read artifact"):
        load_compressed(missing)
    with pytest.raises(ArtifactError, match=r"nope\.acz: cannot read artifact"):
        read_spec(missing)


def test_any_module_type_is_stored_as_its_tensors(tmp_path):
    model = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), act=nn.PReLU()))
    nn.init.constant_(model.act.weight, 0.1)
    save_compressed(model, tmp_path / "m.acz")
    fresh = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), act=nn.PReLU()))
    x = torch.randn(3, 4)
    torch.testing.assert_close(load_compressed(tmp_path / "m.acz", base=fresh)(x), model(x))
    wrong = nn.Sequential(OrderedDict(fc=nn.Linear(4, 4), act=nn.ReLU6()))
    with pytest.raises(ArtifactError, match=r"act was a torch\.nn\.modules\.activation\.PReLU"):
        load_compressed(tmp_path / "m.acz", base=wrong)


def test_parameter_free_modules_need_no_builder(tmp_path):
    model = build_tiny("tiny_concat")  # pools, ReLUs, Flatten and the root have no parameters
    x = example_input(model)
    assert_reloads(model, x, tmp_path / "concat.acz")
