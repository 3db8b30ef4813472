"""Your own model, data and metric, as import paths a recipe names (``tinybert:make_model``).

A small ``BertForSequenceClassification`` built from its config (random weights: nothing is
downloaded), token-sequence data as dict batches (``input_ids``, ``attention_mask``, ``labels``)
and a user metric. This file sits beside ``recipe.yaml``, so the search (and every Ray worker)
can import it.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import Dataset

VOCAB, LENGTH, LABELS = 200, 12, 3


def make_model(hidden: int = 32, layers: int = 2) -> nn.Module:
    """A tiny BERT classifier built offline from its config (random weights)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=hidden,
                                     num_hidden_layers=layers, num_attention_heads=2,
                                     intermediate_size=2 * hidden, num_labels=LABELS,
                                     max_position_embeddings=LENGTH)
    return transformers.BertForSequenceClassification(config)


class Sequences(Dataset):
    """Random token sequences whose label is the first token's id modulo 3 (learnable)."""

    def __init__(self, count: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (count, LENGTH), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": ids[0] % LABELS}


def make_data(train: int = 256, val: int = 128, test: int = 128) -> dict[str, Dataset]:
    """Train / val / test Datasets (fixed seeds): the roles are fine-tune, choose, report."""
    return {"train": Sequences(train, 0), "val": Sequences(val, 1), "test": Sequences(test, 2)}


def balanced_accuracy(model: nn.Module, loader) -> float:
    """A user metric ``fn(model, loader) -> float``: the mean of the per-class recalls."""
    hits, counts = torch.zeros(LABELS), torch.zeros(LABELS)
    with torch.no_grad():
        for batch in loader:
            labels = batch["labels"]
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            predicted = model(**inputs).logits.argmax(-1)
            for c in range(LABELS):
                counts[c] += (labels == c).sum()
                hits[c] += ((labels == c) & (predicted == c)).sum()
    return float((hits / counts.clamp(min=1)).mean())
