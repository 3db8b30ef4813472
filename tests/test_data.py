"""Data of any form: batch handling, DataSplits adapters, and dict batches through fine-tuning."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from autocompress.data import DataSplits, as_args, as_splits, load_data, split_batch
from autocompress.errors import ConfigError
from autocompress.metrics import MetricConfig
from autocompress.recipe import TrainingConfig
from autocompress.training import evaluate, fine_tune


def test_split_batch_reads_tensors_tuples_and_dicts():
    x, y = torch.zeros(4, 3), torch.arange(4)
    assert split_batch(x) == (x, None)
    assert split_batch((x, y))[0] is x and split_batch([x, y])[1] is y
    inputs, targets = split_batch((x, x, y))
    assert isinstance(inputs, tuple) and len(inputs) == 2 and targets is y
    inputs, targets = split_batch({"input_ids": x, "attention_mask": x, "labels": y})
    assert set(inputs) == {"input_ids", "attention_mask"} and targets is y
    assert split_batch({"a": x, "label": y})[1] is y
    assert split_batch({"a": x, "target": y}, label_key="target")[1] is y


def test_a_dict_batch_without_its_label_key_names_the_field():
    with pytest.raises(ConfigError, match=r"data.label_key.*'labels' or 'label'.*input_ids"):
        split_batch({"input_ids": torch.zeros(2)})


class KeywordModel(nn.Module):
    """A classifier called as ``model(input_ids=..., attention_mask=...)``, like Hugging Face's."""

    def __init__(self, vocab: int = 20, classes: int = 3):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, classes)
        self.calls: list[tuple[str, ...]] = []

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        given = (("attention_mask", attention_mask), ("token_type_ids", token_type_ids))
        self.calls.append(tuple(k for k, v in given if v is not None))
        hidden = self.embed(input_ids)
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp_min(1))


def test_as_args_orders_a_dict_by_the_forward_signature():
    model = KeywordModel()
    ids, mask = torch.ones(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long)
    assert as_args(model, {"attention_mask": mask, "input_ids": ids}) == (ids, mask)
    args = as_args(model, {"token_type_ids": mask, "input_ids": ids})
    assert args[0] is ids and args[1] is None and args[2] is mask
    with pytest.raises(ConfigError, match="not positional parameters"):
        as_args(model, {"pixel_values": ids})


class DictDataset(Dataset):
    """Token ids whose label is the most frequent of three token classes (learnable)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 20, (n, 6), generator=g)
        self.labels = (self.ids % 3).mode(dim=1).values

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(6, dtype=torch.long),
                "labels": self.labels[i]}


def test_dict_batches_reach_a_keyword_model_in_training_and_evaluation():
    splits = as_splits({"train": DictDataset(64, 0), "val": DictDataset(32, 1),
                        "test": DictDataset(32, 2)}, "dicts")
    model = KeywordModel()
    before = evaluate(model, splits.fixed_loader("val"))
    fine_tune(model, None, splits, TrainingConfig(epochs=6, lr=0.05), distillation=None,
              batch_size=16, quiet=False)
    assert model.calls and all(call == ("attention_mask",) for call in model.calls)
    after = evaluate(model, splits.fixed_loader("val"))
    assert 0.0 <= before <= 1.0 and after > before


class PairModel(nn.Module):
    """Two positional inputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, a, b):
        return self.fc(a + b)


def test_tuple_batches_with_two_inputs_train_and_give_positional_examples():
    x = torch.randn(32, 4)
    data = TensorDataset(x, -x * 0.5, (x.sum(1) > 0).long())
    splits = as_splits((data, data), "pairs")
    example = splits.example_inputs(3)
    assert isinstance(example, tuple) and example[0].shape == (3, 4)
    model = PairModel()
    fine_tune(model, None, splits, TrainingConfig(epochs=1), distillation=None, batch_size=8,
              quiet=False)
    assert model(*example).shape == (3, 2)


class Stream(IterableDataset):
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for _ in range(20):
            yield torch.randn(4, generator=g), torch.tensor(1)


class Module(pl.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.calls = []

    def prepare_data(self):
        self.calls.append("prepare")

    def setup(self, stage=None):
        self.calls.append(stage)
        self.data = TensorDataset(torch.arange(10.0).view(10, 1), torch.arange(10))

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=4, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=4)


def test_a_lightning_datamodule_gives_its_loaders_and_no_test_when_it_has_none():
    module = Module()
    splits = as_splits(module, "dm")
    assert module.calls[:2] == ["prepare", "fit"]
    assert isinstance(splits.train, DataLoader) and splits.test is None
    # a shuffling train loader is read in a fixed order for calibration
    x, y = splits.sample(6, "train")
    assert torch.equal(y, torch.arange(6)) and x.shape == (6, 1)
    assert torch.equal(splits.example_inputs(2), torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ConfigError, match="no test split"):
        splits.sample(1, "test")


def test_iterable_datasets_are_batched_and_sampled():
    splits = DataSplits(Stream(), Stream(), Stream(), "stream")
    batches = list(splits.loader("train", 8))
    assert [len(b[0]) for b in batches] == [8, 8, 4]
    x, y = splits.sample(10, "test")
    assert x.shape == (10, 4) and torch.equal(y, torch.ones(10, dtype=torch.long))


def test_the_zoo_splits_adapt_with_their_test_split():
    splits = load_data("digits", {"seed": 0})
    assert splits.num_classes == 10 and splits.input_shape == (1, 8, 8)
    assert len(splits.test) == 360 and splits.example_inputs(2).shape == (2, 1, 8, 8)


def test_a_factory_of_the_wrong_kind_or_a_missing_module_names_data_name():
    with pytest.raises(ConfigError, match=r"data.name: .*no_such_module"):
        load_data("no_such_module:make")
    with pytest.raises(ConfigError, match=r"data.name: builtins:int returned int"):
        load_data("builtins:int")
    with pytest.raises(ConfigError, match="data.kwargs"):
        load_data("tests.test_data:pairs", {"bogus": 1})


def pairs():
    """A data factory returning a tuple of Datasets (used by the tests above by import path)."""
    data = TensorDataset(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    return data, data, data


class Logged(pl.Callback):
    """Keeps each validation's metrics as the trial's epoch report reads them."""

    def __init__(self):
        self.epochs = []

    def on_validation_end(self, trainer, pl_module):
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()})


@pytest.mark.parametrize("metric, key", [
    (MetricConfig("tests.test_data:count_batches", direction="maximize"), "val_count_batches"),
    (MetricConfig("macro_f1"), "val_macro_f1"),
    (MetricConfig("top_k", k=2), "val_top2_accuracy"),
])
def test_the_validation_metric_is_logged_over_the_whole_split_each_epoch(metric, key):
    splits = as_splits(pairs(), "p")
    model, logged = nn.Linear(4, 3), Logged()
    fine_tune(model, None, splits, TrainingConfig(epochs=2), distillation=None, batch_size=4,
              quiet=False, metric=metric, callbacks=[logged])
    assert len(logged.epochs) == 2
    expected = evaluate(model, splits.fixed_loader("val"), metric=metric)
    assert logged.epochs[-1][key] == pytest.approx(expected)
    if key == "val_count_batches":
        assert expected == 1.0  # 8 samples: one batch of 256


def count_batches(model, loader):
    """A user metric: the number of batches it was given (fn(model, loader) -> float)."""
    assert not model.training
    return float(sum(1 for _ in loader))


def loaders():
    """A data factory returning DataLoaders (used by import path in test_fail_fast)."""
    data = TensorDataset(torch.randn(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
    return DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)
