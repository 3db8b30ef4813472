"""Reproduce Deep Compression's MNIST rows (Han et al., ICLR 2016, Tables 1-3) with autocompress.

Per model: train a seeded baseline (cached under /tmp/autocompress_bench), prune it iteratively
by magnitude with retraining (distillation from the baseline), share the surviving weights
through k-means codebooks whose centroids are fine-tuned, and write the artifact (positions and
indices are Huffman-coded automatically). The compressed error is measured on the model
reloaded from the artifact: the model a user gets.

Each model has two rows: the paper's own per-layer recipe (kept fractions and bits of Tables 2
and 3), then a harder hand-picked combination that continues pruning from the first row's pruned
model and shares with fewer bits.

Usage: python benchmarks/deep_compression.py [--model {lenet300_100,lenet5_caffe,all}] [--quick]
Prints a Markdown report (KB = 1000 bytes; ratio = float32 state_dict bytes / artifact bytes).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from autocompress.export import load_compressed, save_compressed
from autocompress.methods import CompressionPlan, DistillConfig, apply_plan
from autocompress.recipe import TrainingConfig
from autocompress.training import evaluate, fine_tune
from autocompress.zoo import build_model, load_dataset

CACHE = Path(os.environ.get("AUTOCOMPRESS_BENCH_CACHE", "/tmp/autocompress_bench"))
SEED = 0
EXAMPLE = torch.zeros(1, 1, 28, 28)
DISTILL = DistillConfig(temperature=4.0, alpha=0.5)


@dataclass(frozen=True)
class Paper:
    """One row of Deep Compression's Table 1."""

    base_err: float
    comp_err: float
    kb_from: int
    kb_to: int
    ratio: int


@dataclass(frozen=True)
class Recipe:
    """A compression to reach: kept fraction and shared-index bits per layer."""

    label: str
    density: dict[str, float]
    bits: dict[str, int]


@dataclass(frozen=True)
class Setup:
    """How one model is trained and compressed."""

    model: str
    paper: Paper
    recipes: tuple[Recipe, ...]
    baseline_epochs: int
    prune_steps: int
    prune_epochs: int
    share_epochs: int
    batch_size: int = 128
    lr: float = 1e-3
    retrain_lr: float = 5e-4


LENET300 = ("classifier.1", "classifier.3", "classifier.5")
LENET5 = ("features.0", "features.2", "classifier.1", "classifier.3")

SETUPS = {
    "lenet300_100": Setup(
        "lenet300_100",
        Paper(1.64, 1.58, 1070, 27, 40),
        (
            Recipe("paper recipe", dict(zip(LENET300, (0.08, 0.09, 0.26))),
                   dict.fromkeys(LENET300, 6)),
            Recipe("harder", dict(zip(LENET300, (0.04, 0.07, 0.20))),
                   dict(zip(LENET300, (4, 5, 5)))),
        ),
        baseline_epochs=15, prune_steps=4, prune_epochs=2, share_epochs=2,
    ),
    "lenet5_caffe": Setup(
        "lenet5_caffe",
        Paper(0.80, 0.74, 1720, 44, 39),
        (
            Recipe("paper recipe", dict(zip(LENET5, (0.66, 0.12, 0.08, 0.19))),
                   dict(zip(LENET5, (8, 8, 5, 5)))),
            Recipe("harder", dict(zip(LENET5, (0.50, 0.08, 0.03, 0.15))),
                   dict(zip(LENET5, (6, 5, 4, 5)))),
        ),
        baseline_epochs=6, prune_steps=3, prune_epochs=1, share_epochs=1,
    ),
}


class CosineLR(pl.Callback):
    """Cosine decay of every optimizer's learning rate to zero over one ``fine_tune`` call."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        total = max(trainer.max_epochs * trainer.num_training_batches, 1)
        factor = 0.5 * (1.0 + math.cos(math.pi * min(trainer.global_step / total, 1.0)))
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group.setdefault("base_lr", group["lr"])
                group["lr"] = group["base_lr"] * factor


def train(student, teacher, splits, setup: Setup, epochs: int, lr: float, limit=None):
    config = TrainingConfig(epochs=epochs, lr=lr, optimizer="adam", distillation=None,
                            limit_train_batches=limit)
    return fine_tune(student, teacher, splits, config, batch_size=setup.batch_size,
                     distillation=DISTILL if teacher is not None else None,
                     callbacks=[CosineLR()], seed=SEED)


def baseline(setup: Setup, splits, epochs: int, limit) -> nn.Module:
    torch.manual_seed(SEED)
    model = build_model(setup.model)
    path = CACHE / f"{setup.model}_e{epochs}_l{limit}_s{SEED}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval()
    train(model, None, splits, setup, epochs, setup.lr, limit)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


def density(layer: nn.Module) -> float:
    mask = getattr(layer, "mask", None)
    return 1.0 if mask is None else float(mask.float().mean())


def prune(model, teacher, splits, setup: Setup, target: dict[str, float], steps: int, epochs,
          limit) -> nn.Module:
    """Zhu & Gupta's cubic schedule from each layer's current density to ``target``."""
    start = {n: density(model.get_submodule(n)) for n in target}
    for k in range(1, steps + 1):
        left = (1.0 - k / steps) ** 3
        sparsity = {n: 1.0 - (target[n] + (start[n] - target[n]) * left) for n in target}
        plan = CompressionPlan.from_dict(
            {"layers": {n: {"sparsify": {"sparsity": s}} for n, s in sparsity.items()}})
        model = apply_plan(model, plan, EXAMPLE)
        train(model, teacher, splits, setup, epochs, setup.retrain_lr, limit)
    return model


def share(model, teacher, splits, setup: Setup, bits: dict[str, int], epochs, limit):
    plan = CompressionPlan.from_dict({"layers": {n: {"share": {"bits": b}} for n, b in
                                                 bits.items()}})
    model = apply_plan(model, plan, EXAMPLE)
    return train(model, teacher, splits, setup, epochs, setup.retrain_lr, limit)


def state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(buffer.getvalue())


def artifact(model: nn.Module, splits, folder: str) -> tuple[int, float]:
    """Artifact bytes and the top-1 error (%) of the model reloaded from it."""
    path = Path(folder) / "model.safetensors"
    size = save_compressed(model, path)
    return size, 100.0 * (1.0 - evaluate(load_compressed(path), splits.val))


def plan_text(model: nn.Module, recipe: Recipe) -> str:
    return ", ".join(f"{n} {100 * density(model.get_submodule(n)):.1f}%/{recipe.bits[n]}b"
                     for n in recipe.bits)


def run(setup: Setup, splits, quick: bool) -> list[dict]:
    limit = 40 if quick else None
    scale = (lambda e: 1) if quick else (lambda e: e)
    started = time.time()
    teacher = baseline(setup, splits, scale(setup.baseline_epochs), limit)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        float_bytes, base_err = artifact(teacher, splits, tmp)
        reference = state_dict_bytes(teacher)
        print(f"{setup.model}: baseline error {base_err:.2f}% ({time.time() - started:.0f} s)",
              flush=True)
        pruned = teacher
        for recipe in setup.recipes:
            t0 = time.time()
            pruned = prune(pruned, teacher, splits, setup, recipe.density,
                           setup.prune_steps, scale(setup.prune_epochs), limit)
            pruned_err = 100.0 * (1.0 - evaluate(pruned, splits.val))
            shared = share(pruned, teacher, splits, setup, recipe.bits,
                           scale(setup.share_epochs), limit)
            size, err = artifact(shared, splits, tmp)
            rows.append({"setup": setup, "recipe": recipe, "base_err": base_err,
                         "pruned_err": pruned_err, "err": err, "bytes": size,
                         "reference": reference, "float_bytes": float_bytes,
                         "plan": plan_text(shared, recipe)})
            print(f"  {recipe.label}: pruned {pruned_err:.2f}%, compressed {err:.2f}%, "
                  f"{size / 1000:.1f} KB, {reference / size:.1f}x ({time.time() - t0:.0f} s)",
                  flush=True)
    return rows


def report(rows: list[dict], command: str, wall: float) -> None:
    print("| model | row | paper baseline err | paper compressed err | paper size & ratio | "
          "our baseline err | our pruned err (float) | our compressed err (artifact) | "
          "our float state_dict KB | our float artifact KB | our artifact KB | our ratio | "
          "plan (kept %/share bits) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["setup"].paper
        print(f"| {r['setup'].model} | {r['recipe'].label} | {p.base_err:.2f}% | "
              f"{p.comp_err:.2f}% | {p.kb_from} KB -> {p.kb_to} KB, {p.ratio}x | "
              f"{r['base_err']:.2f}% | {r['pruned_err']:.2f}% | {r['err']:.2f}% | "
              f"{r['reference'] / 1000:.1f} | {r['float_bytes'] / 1000:.1f} | "
              f"{r['bytes'] / 1000:.1f} | {r['reference'] / r['bytes']:.1f}x | {r['plan']} |")
    print(f"\n- command: `{command}`; wall time {wall / 60:.1f} min")
    print(f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads; python {platform.python_version()}, "
          f"torch {torch.__version__}, numpy {np.__version__}, pytorch-lightning {pl.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=[*SETUPS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="smoke test: a few batches each")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    splits = load_dataset("mnist")
    names = list(SETUPS) if args.model == "all" else [args.model]
    rows = [row for name in names for row in run(SETUPS[name], splits, args.quick)]
    command = "python benchmarks/deep_compression.py " + " ".join(
        f"--{k} {v}" if not isinstance(v, bool) else f"--{k}" for k, v in vars(args).items()
        if v not in (False, None))
    print()
    report(rows, command, time.time() - started)


if __name__ == "__main__":
    main()
