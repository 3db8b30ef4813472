"""Test kit for autocompress and its plugins: tiny models, contracts and fakes.

Tiny models build in milliseconds; build them through the zoo so that compressed artifacts can
rebuild them::

    from autocompress.zoo import build_model
    model = build_model("autocompress.testing.models:tiny_residual", width=8)
    model = build_tiny("tiny_residual", width=8)  # the same, shorter

The contracts every built-in meets, for a plugin's profiler or method to meet too:
:func:`check_profiler` / :class:`ProfilerContract` (:mod:`autocompress.testing.profilers`) and
:func:`check_method` / :class:`MethodContract` (:mod:`autocompress.testing.methods`). Fakes for
tests of a search: :class:`FakeProfiler`, :func:`small_recipe`, :class:`ReportCollector`
(:mod:`autocompress.testing.fakes`). These are loaded on first use.
"""

from autocompress.testing.models import (
    TINY_MODELS,
    TinyConcat,
    TinyResidual,
    build_tiny,
    example_input,
    tiny_concat,
    tiny_mlp,
    tiny_residual,
)

_LAZY = {
    "FAST_PROTOCOL": "profilers", "FakeProfiler": "profilers", "ProfilerContract": "profilers",
    "check_paired_timing": "profilers", "check_profiler": "profilers",
    "contract_model": "profilers",
    "EXAMPLES": "methods", "IDENTITIES": "methods", "MethodContract": "methods",
    "check_method": "methods", "example_config": "methods",
    "ReportCollector": "fakes", "SMALL_RECIPE": "fakes", "small_recipe": "fakes",
}

__all__ = [
    *_LAZY,
    "TINY_MODELS",
    "TinyConcat",
    "TinyResidual",
    "build_tiny",
    "example_input",
    "tiny_concat",
    "tiny_mlp",
    "tiny_residual",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"autocompress.testing.{_LAZY[name]}"), name)
    raise AttributeError(name)
