"""A small MLflow store holding one finished search, written without running one."""

from autocompress.methods import CompressionPlan
from autocompress.tracking.tracker import SearchTracker

ARTIFACTS = ("a", "b")  # c has none: it is never picked
BASELINE = {"accuracy": 0.97, "latency_ms": 2.0, "size_kb": 300.0}
PLANS = {
    "a": {"features.0": {"prune": {"ratio": 0.5}, "quantize": {"bits": 8}}},
    "b": {"classifier.3": {"quantize": {"bits": 4}}},
    "c": {"features.3": {"svd": {"rank_ratio": 0.25}}},
}
METRICS = {  # a and b are the front; c is dominated by a
    "a": {"accuracy": 0.95, "latency_ms": 0.5, "size_kb": 20.0},
    "b": {"accuracy": 0.90, "latency_ms": 0.4, "size_kb": 10.0},
    "c": {"accuracy": 0.80, "latency_ms": 0.9, "size_kb": 40.0},
}


def fake_store(root, experiment="exp"):
    """Write the search; returns its tracking URI. Trials' artifacts hold their own name."""
    uri = f"sqlite:///{root / 'mlruns.db'}"
    tracker = SearchTracker(uri, experiment)
    tracker._log_model = lambda run_id, artifact: None  # the bytes are no model: no pyfunc
    tracker.start_search(experiment, {"budgets": "['size_kb<=60', 'latency_ms<=1']"}, {},
                         BASELINE)
    for name, layers in PLANS.items():
        (root / name).mkdir()
        artifact = root / name / "model.acz"
        artifact.write_bytes(name.encode())
        tracker.start_trial(name, CompressionPlan.from_dict({"layers": layers}).to_params())
        tracker.log_result(name, {**METRICS[name], "feasible": 1.0}, step=1)
        tracker.finish_trial(name, "completed",
                             artifact=str(artifact) if name in ARTIFACTS else None)
    runs = tracker._runs
    tracker.finish_search([runs["a"], runs["b"]], [runs["c"]], {"hypervolume": 0.5})
    return uri
