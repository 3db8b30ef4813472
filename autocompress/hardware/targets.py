"""A recipe's hardware targets as profilers: build them, keep one per process, measure on all.

The default target takes the hardware section's own options (threads, int8, resource); a named
target (``hardware.targets``) takes its own mapping, whose ``target`` is the registered target
it measures on. Options that wrap it: ``resource`` times it on the Ray node carrying that
resource (the ``remote`` target), ``table`` predicts it with a latency lookup table kept in that
file (the ``lut`` target).

:func:`profile` is the one-call shortcut: one model on this CPU, no config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError, invalid
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.budget import TARGETED, metric_key
from autocompress.hardware.config import HardwareConfig
from autocompress.hardware.measurement import Measurement
from autocompress.hardware.registry import get_profiler
from autocompress.hardware.timing import shortcut_protocol

_WRAPPERS = {"resource": "remote", "table": "lut"}  # option -> the target wrapping the others
_CACHE: dict[str, BaseProfiler] = {}


def build_profiler(hardware: HardwareConfig, name: str | None = None,
                   **overrides: Any) -> BaseProfiler:
    """A new profiler of the default target, or of the named one, with the config's protocol.

    Args:
        hardware: The recipe's hardware section.
        name: A key of ``hardware.targets`` or a registered target (None: the default target).
            The default target's options (threads, int8, resource) apply to it only; a named
            target takes its own from ``hardware.targets``, and the config's threads otherwise.
        **overrides: Options replacing the configured ones (e.g. ``threads`` from a CLI flag).
    """
    if name is None or name == hardware.target:
        kind, where = hardware.target, "hardware"
        options: dict[str, Any] = {"threads": hardware.threads}
        if hardware.int8:
            options["int8"] = hardware.int8
        if hardware.resource:
            options["resource"] = hardware.resource
    elif hardware.knows(name):
        options = dict(hardware.targets.get(name, {}))
        kind, where = options.pop("target", name), f"hardware.targets.{name}"
        options.setdefault("threads", hardware.threads)
    else:
        raise invalid("budget target", name, hardware.known_targets())
    try:
        return _build(kind, protocol=hardware.protocol, **{**options, **overrides})
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _build(kind: str, **options: Any) -> BaseProfiler:
    """``kind``'s profiler; a wrapping option (``resource``, ``table``) wraps it."""
    for option, wrapper in _WRAPPERS.items():
        if options.get(option) is not None and kind != wrapper:
            return get_profiler(wrapper, target=kind, **options)
    options = {k: v for k, v in options.items() if k not in _WRAPPERS or v is not None}
    return get_profiler(kind, **options)


def profiler_for(hardware: HardwareConfig, name: str | None = None) -> BaseProfiler:
    """One profiler per process, target and settings, so its cache serves reused actors too."""
    key = repr((hardware, name))
    if key not in _CACHE:
        _CACHE[key] = build_profiler(hardware, name)
    return _CACHE[key]


def clear_profiler_caches() -> None:
    """Forget this process's cached measurements (the next measure of a model times it again)."""
    for profiler in _CACHE.values():
        profiler.clear_cache()


def measure_on_targets(model: nn.Module, example: Any, hardware: HardwareConfig,
                       names: Sequence[str] = (), *, extra: dict | None = None,
                       reference: nn.Module | None = None,
                       baseline: dict[str, float] | None = None,
                       calibration: Callable[[], Any] | None = None,
                       ) -> tuple[dict[str, float], dict[str, str]]:
    """Measure ``model`` on the default target and on each of ``names``.

    Args:
        model: The model, measured as deployed.
        example: The timed batch.
        hardware: The recipe's hardware section.
        names: Further targets (e.g. ``hardware.target_names(budgets)``); their device-dependent
            metrics are keyed ``latency_ms/NAME`` etc.
        extra: Metadata stored in the artifact (counted in its bytes).
        reference: Time the model paired with this one (the baseline model).
        baseline: The reference's recorded metrics: each target's latency is anchored to them
            (:meth:`Measurement.anchored`).
        calibration: Returns int8 calibration inputs, called only when an int8 target has none
            (the search passes training inputs, never the example timed).

    Returns:
        The metrics, and the Ray node each target was measured on as ``{"node/NAME": id}``
        (empty ids outside Ray).
    """
    baseline = baseline or {}

    def on(name: str | None) -> tuple[dict[str, float], str]:
        profiler = profiler_for(hardware, name)
        if calibration is not None and getattr(profiler, "int8", False) and getattr(
                profiler, "calibration", 1) is None:
            profiler.calibration = calibration()
        measured = profiler.measure(model, example, extra=extra, reference=reference)
        return measured.anchored(baseline.get(metric_key("latency_ms", name)),
                                 baseline.get(metric_key("latency_p90_ms", name))), measured.node

    metrics, node = on(None)
    nodes = {f"node/{hardware.target}": node}
    for name in names:
        measured, nodes[f"node/{name}"] = on(name)
        metrics.update({metric_key(k, name): v for k, v in measured.items() if k in TARGETED})
    return metrics, nodes


def measure(model: nn.Module, example: Any, hardware: HardwareConfig,
            names: Sequence[str] = (), **options: Any) -> dict[str, float]:
    """The metrics of :func:`measure_on_targets` only."""
    return measure_on_targets(model, example, hardware, names, **options)[0]


def profile(
    model: nn.Module,
    example: torch.Tensor,
    *,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    max_seconds: float = 2.0,
    measure: bool = True,
    base: dict | None = None,
    extra: dict | None = None,
) -> Measurement:
    """Measure ``model`` with eager PyTorch on the CPU (``cpu-torch``), or count only.

    Args:
        model: The (compressed) model.
        example: A batch of inputs; its batch size is the timed batch size.
        threads: Intra-op threads during timing.
        warmup: Untimed runs first.
        repeats: Timed runs (fewer if ``max_seconds`` passes first, at least 5).
        max_seconds: Time cap of the timed runs.
        measure: Skip latency (analytic costs and artifact bytes only) when False.
        base: Factory reference of the model, when it was not built by the zoo.
        extra: Metadata stored in the artifact (counted in its bytes, as when saved).
    """
    protocol = shortcut_protocol(warmup, repeats, max_seconds)
    target = "cpu-torch" if measure else "analytic"
    return get_profiler(target, threads=threads, protocol=protocol).measure(
        model, example, base, extra)


__all__ = ["build_profiler", "clear_profiler_caches", "measure", "measure_on_targets", "profile",
           "profiler_for"]
