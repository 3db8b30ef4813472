"""Model zoo: small pruning-friendly classifiers and offline data sets to search on."""

from autocompress.zoo.data import DATASETS, DatasetSplits, load_dataset
from autocompress.zoo.models import MODELS, ZooError, build_model

__all__ = ["DATASETS", "MODELS", "DatasetSplits", "ZooError", "build_model", "load_dataset"]
