"""Searches on the user's own data and task, through the CLI, on a real local Ray and MLflow:

* a LightningDataModule over PNG files on disk, its module next to the recipe (importable from
  the Ray workers although the CLI runs in another folder);
* a regression task (MSE loss, ``metric: mse`` minimised) with a user model and dict-of-Datasets
  data, whose Pareto front minimises the MSE and whose pick takes the lowest one.

Both check the test split's role: ``test_<metric>`` is logged on the Pareto members and the
baseline only.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from autocompress.tracking import front_of, load_search, objectives, pick

pytestmark = pytest.mark.slow

PNG_MODULE = '''
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

IMAGES = Path(__file__).resolve().parent / "images"


class Folder(Dataset):
    """8x8 grey PNG files named LABEL_INDEX.png, read from disk on every access."""

    def __init__(self, root):
        self.files = sorted(Path(root).glob("*.png"))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        pixels = np.asarray(Image.open(self.files[i]), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).unsqueeze(0), int(self.files[i].stem.split("_")[0])


class PngDigits(pl.LightningDataModule):
    def __init__(self, batch_size=16):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        self.sets = {s: Folder(IMAGES / s) for s in ("train", "val", "test")}

    def train_dataloader(self):
        return DataLoader(self.sets["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=self.batch_size)


def make(batch_size=16):
    return PngDigits(batch_size)
'''

REGRESSION_MODULE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

WEIGHTS = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))


def _part(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    return TensorDataset(x, (x @ WEIGHTS).squeeze(1) + 0.05 * torch.randn(n, generator=g))


def data():
    return {"train": _part(256, 1), "val": _part(64, 2), "test": _part(64, 3)}


def mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
'''

BASE = {
    "hardware": {"target": "cpu-torch", "warmup": 2, "repeats": 10, "max_seconds": 0.2},
    "search": {"trials": 2, "concurrency": 2, "sampler": "random", "seed": 0,
               "scheduler": "asha", "grace_period": 1, "storage": "runs"},
    "budgets": ["size_kb<=200"],
}


def _search(tmp_path, name, recipe, space, module_name, module_text):
    project = tmp_path / "project"  # the recipe's folder; the CLI runs from tmp_path
    project.mkdir(exist_ok=True)
    (project / f"{module_name}.py").write_text(module_text)
    (project / "space.yaml").write_text(yaml.safe_dump(space))
    recipe = {**BASE, **recipe, "space": "space.yaml",
              "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "experiment": name}}
    (project / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "autocompress.cli", "search",
                             "project/recipe.yaml", "--quiet"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return f"sqlite:///{tmp_path / 'mlruns.db'}", load_search(f"sqlite:///{tmp_path / 'mlruns.db'}",
                                                              name)


def _check_test_split_role(search, key):
    assert f"baseline_test_{key}" in search.metrics and f"baseline_{key}" in search.metrics
    front = {t.run_id for t in search.front()}
    assert front, [(t.status, t.reason) for t in search.trials]
    for trial in search.trials:
        assert (f"test_{key}" in trial.metrics) == (trial.run_id in front), trial.trial_id


def _write_pngs(folder):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    for split, (start, count) in {"train": (0, 96), "val": (200, 32), "test": (400, 32)}.items():
        (folder / split).mkdir(parents=True)
        for i in range(start, start + count):
            Image.fromarray(images[i]).save(folder / split / f"{digits.target[i]}_{i}.png")


def test_a_lightning_datamodule_over_image_files_runs_a_two_trial_search(tmp_path):
    _write_pngs(tmp_path / "project" / "images")
    recipe = {"model": {"name": "digits_cnn", "kwargs": {"width": 4},
                        "pretrain": {"epochs": 3, "lr": 0.01}},
              "data": {"name": "pngdigits:make", "kwargs": {"batch_size": 16}},
              "training": {"epochs": 1, "lr": 0.003}}
    space = {"layers": [{"select": {"type": "Linear"},
                         "methods": {"quantize": {"bits": {"choices": [4, 8]}}}}]}
    _, search = _search(tmp_path, "pngs", recipe, space, "pngdigits", PNG_MODULE)
    assert len(search.trials) == 2
    assert all(t.status in ("completed", "pruned") for t in search.trials), [
        (t.status, t.reason) for t in search.trials]
    _check_test_split_role(search, "accuracy")
    for trial in search.front():
        assert 0.0 <= trial.metrics["test_accuracy"] <= 1.0


def test_a_regression_search_minimises_mse_and_picks_the_lowest(tmp_path):
    recipe = {"model": {"name": "regression:mlp", "pretrain": {"epochs": 10, "lr": 0.01}},
              "data": {"name": "regression:data", "batch_size": 32},
              "metric": {"name": "mse"},
              "training": {"epochs": 1, "lr": 0.003, "loss": "mse",
                           "distillation": {"alpha": 0.5, "temperature": 1.0}},
              "budgets": ["size_kb<=200", "mse<=10"]}
    recipe["search"] = {**BASE["search"], "trials": 3}
    space = {"layers": [{"select": {"type": "Linear"},
                         "methods": {"quantize": {"bits": {"choices": [2, 8]}}}}]}
    uri, search = _search(tmp_path, "regression", recipe, space, "regression",
                          REGRESSION_MODULE)
    assert search.metric == ("mse", "min")
    assert search.metrics["baseline_mse"] < 1.0  # the pretrained MLP fits the linear target
    done = [t for t in search.trials if t.status == "completed" and t.feasible]
    assert done, [(t.status, t.reason) for t in search.trials]
    expected = {t.run_id for t in front_of(search.trials, objectives("mse", "min"))}
    assert {t.run_id for t in search.front()} == expected
    best = min(done, key=lambda t: t.metrics["mse"])
    assert best.run_id in expected  # the lowest error is always on the front
    assert search.front()[0].metrics["mse"] == best.metrics["mse"]  # listed best first
    assert pick(uri, "regression", []).run_id == best.run_id
    _check_test_split_role(search, "mse")
