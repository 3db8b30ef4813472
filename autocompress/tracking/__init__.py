"""MLflow: the only code that talks to it. Importing this package does not import MLflow."""

from autocompress.tracking.query import (
    OBJECTIVES,
    SearchRecord,
    TrialRecord,
    front_of,
    load_search,
    metric_of,
    normalized_hypervolume,
    objectives,
    pick,
)
from autocompress.tracking.store import init_store, normalize_uri
from autocompress.tracking.tracker import SearchTracker

__all__ = [
    "OBJECTIVES",
    "SearchRecord",
    "SearchTracker",
    "TrialRecord",
    "front_of",
    "init_store",
    "load_search",
    "metric_of",
    "normalize_uri",
    "normalized_hypervolume",
    "objectives",
    "pick",
]
