"""Data of any form for the search: DataSplits, batch handling and loading.

Importing this package imports torch only (never Lightning, Ray or MLflow).
"""

from autocompress.data.batches import (
    LABEL_KEYS,
    as_args,
    call_model,
    outputs_of,
    split_batch,
    take,
)
from autocompress.data.load import as_splits, load_data, resolve_data
from autocompress.data.splits import SPLITS, DataSplits

__all__ = [
    "LABEL_KEYS",
    "SPLITS",
    "DataSplits",
    "as_args",
    "as_splits",
    "call_model",
    "load_data",
    "outputs_of",
    "resolve_data",
    "split_batch",
    "take",
]
