"""The compressed artifact: write, read back, size."""

from autocompress.export.artifact import (
    load_compressed,
    model_ref,
    read_spec,
    save_compressed,
    size_breakdown,
    to_bytes,
)

__all__ = ["load_compressed", "model_ref", "read_spec", "save_compressed", "size_breakdown",
           "to_bytes"]
