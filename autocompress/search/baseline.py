"""The baseline: the trained uncompressed model, evaluated and profiled like every candidate."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import torch
from torch import nn

from autocompress.hardware.targets import clear_profiler_caches
from autocompress.recipe import Recipe
from autocompress.search.trial import deployed_quality, load_splits, measure, quality
from autocompress.zoo import build_model

# Bumped when the zoo's splits change: a baseline cached before digits and MNIST gained their
# test splits was trained on today's test images.
SPLITS_VERSION = 2


def load_or_train(recipe: Recipe, storage: Path, callbacks: tuple = ()) -> nn.Module:
    """The recipe's trained model: its checkpoint, or a baseline trained once and cached.

    ``callbacks`` (Lightning callbacks, e.g. progress lines) watch the baseline's training.
    """
    model = build_model(recipe.model.name, **recipe.model.kwargs)
    if recipe.model.checkpoint:
        from autocompress.search.checkpoint import load_checkpoint

        path = recipe.resolve(recipe.model.checkpoint)
        return load_checkpoint(model, path, "model.checkpoint", recipe.model.name).eval()
    cache = storage / f"baseline-{_key(recipe)}.pt"
    if cache.is_file():
        model.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True))
        return model.eval()
    from autocompress.training import fine_tune

    pretrain = recipe.model.pretrain
    training = recipe.training.__class__(epochs=pretrain.epochs, lr=pretrain.lr,
                                         distillation=None, loss=recipe.training.loss,
                                         **pretrain.schedule_fields())
    fine_tune(model, None, load_splits(recipe), training, distillation=None,
              batch_size=recipe.data.batch_size, seed=recipe.search.seed, metric=recipe.metric,
              callbacks=callbacks)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model.eval()


def baseline_metrics(model: nn.Module, recipe: Recipe) -> dict[str, float]:
    """The quality metric (on val) and measured costs of the uncompressed model.

    Its latencies are the median over ``hardware.baseline_rounds`` timing rounds: every
    candidate's anchored ``latency_ms`` scales with them, so one noisy reading must not set
    them. Relative metrics are 1 by definition (the baseline against itself).
    """
    splits = load_splits(recipe)
    rounds = []
    for _ in range(recipe.hardware.baseline_rounds):
        clear_profiler_caches()  # each round times again
        rounds.append(measure(model, splits, recipe))
    metrics = robust_latency(rounds)
    for key in [k for k in metrics if k.split("/")[0] == "latency_ms"]:
        suffix = key[len("latency_ms"):]
        metrics.update({f"latency_ratio{suffix}": 1.0, f"speedup{suffix}": 1.0})
    return {**metrics, "baseline_rounds": float(len(rounds)),
            recipe.metric.key: deployed_quality(model, splits, recipe, metrics)}


def robust_latency(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The last round's metrics, each latency the median over ``rounds``.

    Latencies are ``latency_ms`` and ``latency_p90_ms`` on any target; the rounds' relative
    range of ``latency_ms`` is added as ``baseline_latency_range``.
    """
    out = dict(rounds[-1])
    for key in out:
        if key.split("/")[0] in _ROBUST:
            out[key] = statistics.median(r[key] for r in rounds if key in r)
    times = [r["latency_ms"] for r in rounds if "latency_ms" in r]
    if times and out.get("latency_ms"):
        out["baseline_latency_range"] = (max(times) - min(times)) / out["latency_ms"]
    return out


_ROBUST = ("latency_ms", "latency_p90_ms")


def holdout_metrics(model: nn.Module, recipe: Recipe) -> dict[str, float]:
    """``{"test_<metric>": value}`` on the test split; empty when the data have no test split.

    Reported only: the test split is evaluated once per model, after the search has chosen.
    """
    splits = load_splits(recipe)
    if splits.test is None:
        return {}
    return {f"test_{recipe.metric.key}": quality(model, splits, recipe, split="test")}


def _key(recipe: Recipe) -> str:
    what = {"model": recipe.model.name, "kwargs": recipe.model.kwargs,
            "pretrain": vars(recipe.model.pretrain), "data": recipe.data.name,
            "data_kwargs": recipe.data.kwargs, "seed": recipe.search.seed,
            "splits": SPLITS_VERSION}
    if recipe.training.loss != "cross_entropy":  # defaults stay out: existing caches still hit
        what["loss"] = recipe.training.loss
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
