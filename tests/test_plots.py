"""Front plots, plans in words, inspect, evaluate, and the CLI's fast paths."""

import json
import subprocess
import sys
import time

import pytest
import torch

from autocompress.cli import main
from autocompress.export import load_compressed, save_compressed
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers
from autocompress.viz import front_figures, layer_choices, plan_text, write_front_plots
from autocompress.zoo import build_model
from tests.helpers import QUICKSTART

ROWS = [
    {"trial": "t1", "status": "completed", "pareto": True, "plan": "p1",
     "accuracy": 0.95, "latency_ms": 1.0, "size_kb": 20.0},
    {"trial": "t2", "status": "completed", "pareto": True, "plan": "p2",
     "accuracy": 0.90, "latency_ms": 0.5, "size_kb": 10.0},
    {"trial": "t3", "status": "completed", "pareto": False, "plan": "p3",
     "accuracy": 0.70, "latency_ms": 2.0, "size_kb": 30.0},
    {"trial": "t4", "status": "failed", "pareto": False, "accuracy": float("nan")},
]
BASELINE = {"accuracy": 0.97, "latency_ms": 3.0, "size_kb": 300.0}


def test_figures_draw_the_front_the_others_faint_the_baseline_and_budgets():
    figure, interactive = front_figures(ROWS, ["size_kb<=25", "latency_ms<=1.5"], BASELINE)
    latency, size = figure.axes
    front = [line for line in latency.get_lines() if line.get_label() == "Pareto front"][0]
    assert list(front.get_xdata()) == [0.5, 1.0] and list(front.get_ydata()) == [0.90, 0.95]
    budgets = {line.get_label() for ax in figure.axes for line in ax.get_lines()}
    assert {"budget latency_ms<=1.5", "budget size_kb<=25"} <= budgets
    others = [c for c in latency.collections if c.get_label() == "dominated / other trials"][0]
    assert others.get_alpha() < 0.5 and others.get_offsets().tolist() == [[2.0, 0.70]]
    traces = {(t.name, t.xaxis): t for t in interactive.data}
    assert list(traces[("Pareto front", "x2")].x) == [10.0, 20.0]  # size panel
    assert list(traces[("baseline", "x")].x) == [3.0]
    assert "t3 (completed)<br>p3" in traces[("other trials", "x")].text


def test_write_front_plots_writes_both_files(tmp_path):
    png, html = write_front_plots(ROWS, [], BASELINE, tmp_path / "sub" / "front.html")
    assert (png.name, html.name) == ("front.png", "front.html")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    text = html.read_text()
    assert "<html>" in text and "t1 (completed)" in text and "t2 (completed)" in text


def test_plans_read_as_words():
    plan = CompressionPlan.from_dict({"layers": {
        "conv1": {"prune": {"ratio": 0.5}, "quantize": {"bits": 8}},
        "fc": {"svd": {"rank_ratio": 0.25}}, "fc2": {"share": {"bits": 4}},
        "fc3": {}}})
    assert layer_choices(plan) == {"conv1": "prune 50% · 8-bit", "fc": "svd 25%",
                                   "fc2": "share 4-bit"}
    assert plan_text(plan, limit=2) == "conv1: prune 50% · 8-bit; fc: svd 25%; +1 more"
    assert plan_text(CompressionPlan.from_dict({"layers": {}})) == "uncompressed"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    model = build_model("digits_cnn", width=16).eval()
    example = torch.randn(1, *model.input_shape)
    names = [layer.name for layer in compressible_layers(model, example)]
    plan = CompressionPlan.from_dict({"layers": {
        names[0]: {"prune": {"ratio": 0.5}, "quantize": {"bits": 8}},
        names[-1]: {"quantize": {"bits": 4}}}})
    student = apply_plan(model, plan, example, frozenset({names[-1]}))
    path = tmp_path_factory.mktemp("artifact") / "m.acz"
    save_compressed(student, path, extra={"plan": plan.to_dict(), "recipe": "quickstart",
                                          "trial": "abc_00001", "input_shape": [1, 8, 8],
                                          "metric": {"key": "accuracy", "mode": "max"}})
    return path, names


def test_inspect_lists_layers_in_model_order_with_shapes_methods_and_bits(artifact, capsys):
    path, names = artifact
    assert main(["inspect", str(path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    layers = out["layers"]
    assert [row["layer"] for row in layers][0] == names[0]
    assert [row["layer"] for row in layers][-1] == names[-1]  # model order, not by size
    first, last = layers[0], layers[-1]
    assert first["got"] == "prune 50% · 8-bit" and first["bits"] == 8
    assert first["shape"][0] == 8 and first["encoding"].startswith("values")  # 16 -> 8 kept
    assert last["got"] == "4-bit" and last["bits"] == 4
    assert sum(row["bytes"] for row in layers) < path.stat().st_size == out["bytes"]
    assert (out["trial"], out["input_shape"], out["base"]["model"]) == (
        "abc_00001", [1, 8, 8], "digits_cnn")


def test_inspect_table_and_csv(artifact, capsys, monkeypatch):
    path, names = artifact
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "prune 50% · 8-bit" in text and "source trial: abc_00001" in text
    assert main(["inspect", str(path), "--format", "csv"]) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    assert header == "layer,type,shape,got,bits,encoding,bytes,share"
    assert first.startswith(f"{names[0]},")


def test_evaluate_scores_the_artifact_on_the_recipes_test_split(artifact, capsys):
    from autocompress.recipe import Recipe
    from autocompress.search.trial import load_splits, quality

    path, _ = artifact
    assert main(["evaluate", str(path), "--recipe", str(QUICKSTART), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    recipe = Recipe.from_yaml(QUICKSTART)
    expected = quality(load_compressed(path), load_splits(recipe), recipe, split="test")
    assert result["split"] == "test" and result["metric"] == "accuracy"
    assert result["value"] == pytest.approx(expected)
    assert main(["evaluate", str(path), "--recipe", str(QUICKSTART), "--split", "val",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "val"


def test_help_and_version_answer_without_importing_torch():
    code = ("import sys, time; t = time.perf_counter(); from autocompress.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("[]") and "evaluate" in out.stdout
    assert time.perf_counter() - started < 5.0  # typically 0.2 s; generous on a loaded machine
    version = subprocess.run([sys.executable, "-m", "autocompress.cli", "--version"],
                             capture_output=True, text=True, timeout=60)
    assert version.stdout.strip().startswith("autocompress ")


def test_search_and_submit_share_one_definition_of_the_search_flags():
    from autocompress.cli.parser import SEARCH_FLAGS, build_parser, forwarded_search_args

    parser = build_parser()
    flags = ["--trials", "3", "--budget", "size_kb<=60", "--budget", "latency_ms<=2",
             "--tracking-uri", "http://mlflow:5000"]
    search = parser.parse_args(["search", "r.yaml", *flags])
    submit = parser.parse_args(["submit", "r.yaml", *flags])
    for flag in SEARCH_FLAGS:
        assert getattr(search, flag.dest) == getattr(submit, flag.dest)
    assert forwarded_search_args(submit) == flags
