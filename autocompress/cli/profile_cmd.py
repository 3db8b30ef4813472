"""``autocompress profile``: per-layer latency, bytes and MACs of a model on a target."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

from autocompress.cli.output import emit
from autocompress.errors import ArtifactError, ConfigError, invalid


def profile(args: argparse.Namespace) -> int:
    """Per-layer latency, bytes and MACs of a recipe's model or an artifact, on a target."""
    from autocompress.hardware.breakdown import layer_breakdown
    from autocompress.report_profile import print_profile, profile_json

    subject = _profile_subject(args)
    breakdown = layer_breakdown(subject.model, subject.example, subject.profiler,
                                subject.base, subject.extra)
    baseline = breakdown.totals if subject.baseline is None else subject.profiler.measure(
        subject.baseline, subject.example)
    document = profile_json(breakdown, baseline, subject.source, subject.baseline_source)
    emit(args.format, document["layers"], document,
         lambda: print_profile(breakdown, baseline, subject.source, subject.baseline_source))
    return 0


class _Subject(NamedTuple):
    """What ``profile`` measures, on which target, and what it is compared with."""

    source: str
    model: Any
    example: Any
    profiler: Any
    base: dict | None = None
    extra: dict | None = None
    baseline: Any = None  # None: the model is its own (uncompressed) baseline
    baseline_source: str = "the profiled model itself (a recipe's model is uncompressed)"


def _profile_subject(args: argparse.Namespace) -> _Subject:
    from autocompress.recipe import HardwareConfig, Recipe

    path = Path(args.path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (expected a recipe .yaml or an .acz artifact)")
    recipe = Recipe.from_yaml(path) if path.suffix in (".yaml", ".yml") else None
    if recipe is not None and args.baseline:
        raise ConfigError("--baseline: only for an artifact; a recipe's model is the baseline")
    reference = recipe or (Recipe.from_yaml(args.baseline) if args.baseline else None)
    hardware = reference.hardware if reference else HardwareConfig()
    profiler = _profile_target(args, hardware)
    batch = hardware.batch_size if args.batch_size is None else args.batch_size
    if batch < 1:
        raise invalid("--batch-size", batch, "an integer >= 1")
    if recipe is not None:
        return _recipe_subject(recipe, profiler, batch)
    return _artifact_subject(path, reference, profiler, batch, args.trust_code)


def _profile_target(args: argparse.Namespace, hardware):
    """The profiler ``--target`` names: a registered target or a recipe's named variant."""
    from autocompress.hardware.targets import build_profiler

    name = args.target or hardware.target
    if not hardware.knows(name):
        raise invalid("--target", name, hardware.known_targets())
    overrides: dict[str, Any] = {}
    if args.int8 or args.int8_form:
        if hardware.kind(name) != "cpu-onnxruntime":
            flag = "--int8-form" if args.int8_form else "--int8"
            raise ConfigError(f"{flag}: only the cpu-onnxruntime target runs int8, not "
                              f"{hardware.kind(name)!r}")
        overrides["int8"] = args.int8_form or "static"
    if args.threads is not None:
        overrides["threads"] = args.threads
    return build_profiler(hardware, name, **overrides)


def _recipe_subject(recipe, profiler, batch: int) -> _Subject:
    from autocompress.zoo import build_model

    model = build_model(recipe.model.name, **recipe.model.kwargs).eval()
    example = _example(model, None, recipe, batch, recipe.name)
    return _Subject(f"{recipe.name} ({recipe.model.name}, uncompressed)", model, example,
                    profiler)


def _artifact_subject(path: Path, reference, profiler, batch: int,
                      trust_code: bool = False) -> _Subject:
    from autocompress.evaluation import vouched
    from autocompress.export import load_compressed, read_spec
    from autocompress.zoo import MODELS, build_model

    try:
        spec = read_spec(path)
    except ArtifactError as exc:
        raise ArtifactError(f"{exc} (expected a recipe .yaml or an .acz artifact)") from None
    model = load_compressed(path, trust_code=trust_code or vouched(spec, reference))
    extra = spec.get("extra") or {}
    if reference is not None:
        name, kwargs = reference.model.name, reference.model.kwargs
    else:  # the trial may store extra["model"]; the base factory is the same architecture
        stored = extra.get("model") or {"name": spec["base"]["model"],
                                        "kwargs": spec["base"].get("kwargs", {})}
        name, kwargs = stored["name"], stored.get("kwargs", {})
        if name not in MODELS and not trust_code:  # the file names it: importing runs code
            raise ArtifactError(f"{path}: its baseline model is the import path {name!r}; "
                                "pass --baseline RECIPE, or --trust-code if you trust this file")
    baseline = build_model(name, **kwargs).eval()
    example = _example(model, extra.get("input_shape"), reference, batch, str(path))
    return _Subject(f"{path.name} ({spec['base']['model']}, compressed)", model, example,
                    profiler, spec["base"], extra, baseline, f"{name} (uncompressed)")


def _example(model, shape, recipe, batch: int, where: str):
    """A batch for timing: random inputs of the known shape, else the recipe's data."""
    import torch

    shape = shape or getattr(model, "input_shape", None)
    if shape is not None:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(batch, *shape, generator=generator)
    if recipe is None:
        raise ConfigError(f"{where}: cannot tell the model's input shape; pass --baseline RECIPE")
    from autocompress.search.trial import example_inputs, load_splits

    return example_inputs(model, load_splits(recipe), batch)  # val inputs, never test

