"""The compressed artifact: write, read back, size."""

from autocompress.export.artifact import (
    load_compressed,
    model_ref,
    read_spec,
    save_compressed,
    size_breakdown,
    to_bytes,
)
from autocompress.export.deploy import deployable

__all__ = ["deployable", "load_compressed", "model_ref", "read_spec", "save_compressed",
           "size_breakdown", "to_bytes"]
