"""The fakes shipped in autocompress.testing: the small recipe and the report collector."""

from autocompress.methods import compressible_layers
from autocompress.space import SearchSpace, bind
from autocompress.testing import ReportCollector, example_input, small_recipe
from autocompress.tracking.config import ARTIFACT_NAME
from autocompress.zoo import build_model


def test_the_built_in_small_recipe_is_shrunk_and_its_space_binds(tmp_path):
    recipe = small_recipe(tmp_path, trials=2, epochs=1, budgets=["size_kb<=30"])
    assert (recipe.search.trials, recipe.training.epochs) == (2, 1)
    assert recipe.budgets == ("size_kb<=30",)
    assert recipe.search.storage == str(tmp_path / "runs")
    assert recipe.tracking.uri == f"sqlite:///{tmp_path / 'mlruns.db'}"
    model = build_model(recipe.model.name, **recipe.model.kwargs)
    space = SearchSpace.from_yaml(recipe.resolve(recipe.space))
    layers = compressible_layers(model, example_input(model))
    bound = bind(space, layers)
    assert {knob.layer for knob in bound.knobs} == {layer.name for layer in layers}
    assert {knob.method for knob in bound.knobs} >= {"prune", "quantize"}


def test_the_collector_keeps_each_report_and_a_copy_of_its_artifact(tmp_path):
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    (trial_dir / ARTIFACT_NAME).write_bytes(b"artifact")
    collect = ReportCollector(tmp_path)
    collect({"status": "running"}, None)
    collect({"status": "completed"}, str(trial_dir))
    (trial_dir / ARTIFACT_NAME).unlink()  # the trial's folder goes away; the copy stays
    assert collect.metrics == [{"status": "running"}, {"status": "completed"}]
    final, artifact = collect.last
    assert final["status"] == "completed" and artifact.read_bytes() == b"artifact"
    assert collect.reports[0][1] is None
