"""Test kit for autocompress and its plugins: tiny models that build in milliseconds.

Build them through the zoo so that compressed artifacts can rebuild them::

    from autocompress.zoo import build_model
    model = build_model("autocompress.testing.models:tiny_residual", width=8)
    model = build_tiny("tiny_residual", width=8)  # the same, shorter
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

__all__ = [
    "TINY_MODELS",
    "TinyConcat",
    "TinyResidual",
    "build_tiny",
    "example_input",
    "tiny_concat",
    "tiny_mlp",
    "tiny_residual",
]
