"""Completed trials as MLflow Models (pyfunc) and the Model Registry, without Ray."""

import mlflow
import numpy as np
import pytest

from autocompress.errors import ConfigError
from autocompress.export import load_compressed, save_compressed
from autocompress.search.results import TrialResult, TrialStatus
from autocompress.testing import example_input
from autocompress.tracking import SearchTracker, load_search
from autocompress.tracking.registry import register
from autocompress.tracking.store import client
from autocompress.zoo import build_model

PLAN = {"layers/conv1/prune/ratio": "0.5", "layers/fc/quantize/bits": "8"}


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("models")
    model = build_model("digits_cnn", width=8).eval()
    x = example_input(model, batch=3)
    save_compressed(model, tmp / "model.acz")
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    tracker = SearchTracker(uri, "models")
    tracker.start_search("models", {"budgets": "('size_kb<=60',)"}, {}, {"accuracy": 1.0})
    tracker.model_example = x[:1].numpy()
    tracker.start_trial("a", PLAN)
    tracker.log_result("a", {"accuracy": 0.75, "latency_ms": 0.5, "size_kb": 3.0}, 1)
    tracker.finish_trial("a", TrialResult(TrialStatus.COMPLETED, {"accuracy": 0.75},
                                          artifact=str(tmp / "model.acz")))
    tracker.start_trial("b", PLAN)
    tracker.finish_trial("b", TrialResult(TrialStatus.FAILED, reason="ValueError: boom",
                                          traceback="Traceback...\nValueError: boom"))
    trials = {t.trial_id: t for t in load_search(uri, "models").trials}
    return uri, tmp, x, trials


def test_pyfunc_predictions_equal_load_compressed(logged):
    uri, tmp, x, trials = logged
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pyfunc.load_model(f"runs:/{trials['a'].run_id}/model")
    expected = load_compressed(tmp / "model.acz")(x).detach().numpy()
    np.testing.assert_array_equal(loaded.predict(x.numpy()), expected)
    signature = loaded.metadata.signature
    assert signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)
    assert loaded.metadata.saved_input_example_info is not None


def test_runs_are_named_after_their_plan_and_failures_keep_their_log(logged):
    uri, _, _, trials = logged
    c = client(uri)
    assert c.get_run(trials["a"].run_id).info.run_name == "t001 prune 50% · quantize 8-bit"
    failed = c.get_run(trials["b"].run_id)
    assert failed.info.status == "FAILED" and trials["b"].reason == "ValueError: boom"
    log = c.download_artifacts(trials["b"].run_id, "failure.txt")
    assert "Traceback" in open(log).read()


def test_register_with_alias_and_tags(logged):
    uri, tmp, x, trials = logged
    first = register(trials["a"].run_id, "digits-edge", alias="champion", uri=uri,
                     tags={"owner": "tests"})
    c = client(uri)
    version = c.get_model_version_by_alias("digits-edge", "champion")
    assert str(version.version) == first.version == "1"
    assert version.tags["autocompress.trial_id"] == "a"
    assert version.tags["autocompress.budgets"] == "('size_kb<=60',)"
    assert float(version.tags["measured.size_kb"]) == 3.0
    assert "layers/conv1/prune/ratio" in version.tags["autocompress.plan"]
    assert version.tags["owner"] == "tests"
    assert version.tags["autocompress.measured_form"] == "the served model"
    mlflow.set_tracking_uri(uri)
    served = mlflow.pyfunc.load_model(first.uri)
    np.testing.assert_array_equal(served.predict(x.numpy()),
                                  load_compressed(tmp / "model.acz")(x).detach().numpy())
    second = register(trials["a"].run_id, "digits-edge", alias="champion", uri=uri)
    now = c.get_model_version_by_alias("digits-edge", "champion")
    assert str(now.version) == second.version == "2"


def test_register_refuses_a_failed_trial(logged):
    uri, _, _, trials = logged
    with pytest.raises(ConfigError, match="not a completed trial"):
        register(trials["b"].run_id, "digits-edge", uri=uri)


def test_a_version_timed_in_int8_says_its_numbers_are_the_graphs_not_the_served_models():
    from autocompress.tracking.registry import forms

    said = forms("accuracy", {"accuracy": 0.81, "accuracy_pytorch": 0.84, "latency_ms": 1.0})
    assert said["autocompress.measured_form"].startswith("int8 ONNX graph")
    assert "measured.accuracy_pytorch" in said["autocompress.measured_form"]
    assert said["autocompress.served_form"].startswith("pytorch")
    assert "static QDQ" in said["autocompress.measured_form"]
    dynamic = forms("accuracy", {"accuracy": 0.81, "accuracy_pytorch": 0.84,
                                 "int8_chosen": 1.0, "int8_dynamic_chosen": 1.0})
    assert dynamic["autocompress.measured_form"].startswith("int8 ONNX graph (dynamic,")
