"""``autocompress profile``: per-layer table or JSON of a recipe's model or an artifact."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from autocompress.cli import main
from autocompress.export import save_compressed
from autocompress.hardware.profilers import PROFILERS
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.testing import example_input
from autocompress.zoo import build_model
from autocompress.zoo.models import digits_cnn
from tests.helpers import QUICKSTART

PLAN = {"layers": {"features.3": {"prune": {"ratio": 0.5}, "quantize": {"bits": 4}},
                   "classifier.1": {"quantize": {"bits": 8}}}}


def shapeless_cnn(width: int = 8):
    """digits_cnn without an ``input_shape`` attribute (like a user's own factory)."""
    model = digits_cnn(width=width)
    del model.input_shape
    return model


def compressed(model, path, extra=None) -> int:
    student = apply_plan(model, CompressionPlan.from_dict(PLAN), example_input(digits_cnn(), 1))
    return save_compressed(student, path, extra=extra or {"plan": PLAN, "recipe": "quickstart"})


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A pruned and quantized digits_cnn (width 8) saved as an artifact, with its size."""
    path = tmp_path_factory.mktemp("profile") / "model.acz"
    return path, compressed(build_model("digits_cnn", width=8), path)


def run(capsys, *args):
    code = main(["profile", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def run_json(capsys, *args) -> dict:
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_recipe_table(capsys):
    code, out, err = run(capsys, QUICKSTART, "--target", "cpu-torch")
    assert code == 0, err
    for text in ("quickstart (digits_cnn, uncompressed) on cpu-torch", "features.3", "Conv2d",
                 "(other)", "(header)", "total", "whole model: latency", "baseline:"):
        assert text in out


def test_recipe_json_has_layers_totals_and_ratios(capsys):
    out = run_json(capsys, QUICKSTART, "--target", "cpu-onnxruntime", "--batch-size", "2")
    assert out["target"] == "cpu-onnxruntime" and out["totals"]["batch_size"] == 2
    names = [row["name"] for row in out["layers"]]
    assert {"features.0", "features.3", "classifier.3", "(other)", "(runtime)"} <= set(names)
    assert math.isclose(sum(r["share"] for r in out["layers"] if r["share"] is not None), 1.0,
                        abs_tol=1e-6)
    assert out["totals"]["latency_ms"] > 0
    assert sum(r["bytes"] for r in out["layers"]) == out["totals"]["size_bytes"]
    assert out["ratios"] == {"latency_speedup": 1.0, "size_ratio": 1.0, "macs_ratio": 1.0,
                             "params_ratio": 1.0}  # a recipe's model is its own baseline


def test_artifact_json_compares_with_the_uncompressed_baseline(capsys, artifact):
    path, size = artifact
    out = run_json(capsys, path, "--target", "cpu-onnxruntime", "--int8")
    assert out["runtime"].endswith("int8")
    assert out["totals"]["size_bytes"] == size  # the file's own bytes
    dynamic = run_json(capsys, path, "--target", "cpu-onnxruntime", "--int8-form", "dynamic")
    assert dynamic["runtime"].endswith("dynamic") and dynamic["totals"]["latency_ms"] > 0
    auto = run_json(capsys, path, "--target", "cpu-onnxruntime", "--int8-form", "auto")
    assert auto["runtime"].endswith("float|int8|dynamic") and auto["layers"]
    assert out["baseline"]["source"] == "digits_cnn (uncompressed)"
    ratios = out["ratios"]
    assert ratios["size_ratio"] > 2 and ratios["macs_ratio"] > 1 and ratios["params_ratio"] > 1
    assert ratios["latency_speedup"] == pytest.approx(
        out["baseline"]["latency_ms"] / out["totals"]["latency_ms"])
    bits = {row["name"]: row["bits"] for row in out["layers"]}
    assert bits["features.3"] == 4 and bits["classifier.1"] == 8 and bits["features.0"] == 32


def test_artifact_table_in_a_real_process(artifact):
    path, _ = artifact
    result = subprocess.run(
        [sys.executable, "-m", "autocompress.cli", "profile", str(path), "--target", "cpu-torch"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "vs. baseline: digits_cnn (uncompressed)" in result.stdout
    assert "smaller" in result.stdout and "features.3" in result.stdout


def test_stored_model_and_input_shape_keys(capsys, tmp_path):
    path = tmp_path / "m.acz"
    extra = {"model": {"name": "digits_cnn", "kwargs": {"width": 8}}, "input_shape": [1, 8, 8]}
    compressed(build_model(f"{__name__}:shapeless_cnn", width=8), path, extra)
    code, _, err = run(capsys, path, "--target", "analytic")
    assert code == 2 and "import path 'test_profile_cli:shapeless_cnn'" in err  # no trust
    out = run_json(capsys, path, "--target", "analytic", "--batch-size", "3", "--trust-code")
    assert out["totals"]["batch_size"] == 3 and out["totals"]["latency_ms"] is None
    assert out["baseline"]["source"] == "digits_cnn (uncompressed)"
    assert out["ratios"]["latency_speedup"] is None and out["ratios"]["size_ratio"] > 2


def test_baseline_recipe_gives_input_and_protocol(capsys, tmp_path):
    path = tmp_path / "m.acz"
    compressed(build_model(f"{__name__}:shapeless_cnn", width=16), path)
    code, _, err = run(capsys, path, "--target", "analytic", "--trust-code")
    assert code == 2 and "cannot tell the model's input shape; pass --baseline RECIPE" in err
    out = run_json(capsys, path, "--target", "analytic", "--baseline", QUICKSTART,
                   "--trust-code")
    assert out["baseline"]["source"] == "digits_cnn (uncompressed)"  # the recipe's model
    assert out["ratios"]["macs_ratio"] > 1


@pytest.mark.parametrize(("args", "message"), [
    (("--target", "cpu"), "--target: invalid value 'cpu'; allowed: one of "
                          + ", ".join(repr(name) for name in sorted(PROFILERS))),
    (("--target", "cpu-torch", "--int8"), "--int8: only the cpu-onnxruntime target runs int8"),
    (("--target", "cpu-torch", "--int8-form", "auto"), "--int8-form: only the cpu-onnxruntime"),
    (("--batch-size", "0"), "--batch-size: invalid value 0"),
    (("--baseline", "x.yaml"), "--baseline: only for an artifact"),
])
def test_bad_options_exit_2_on_one_line(capsys, args, message):
    code, out, err = run(capsys, QUICKSTART, *args)
    assert code == 2 and message in err and len(err.splitlines()) == 1 and not out


def test_missing_file_and_not_an_artifact(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path / "nope.acz")
    assert code == 2 and "nope.acz: file not found" in err
    (tmp_path / "notes.acz").write_text("hello")
    code, _, err = run(capsys, tmp_path / "notes.acz")
    assert code == 2 and "not a valid autocompress artifact" in err
    assert len(err.splitlines()) == 1


def test_named_target_of_the_recipe(capsys, tmp_path):
    text = QUICKSTART.read_text().replace(
        "space: ../search_spaces", f"space: {QUICKSTART.parents[1]}/search_spaces").replace(
        "hardware:\n", "hardware:\n  targets:\n    edge-int8: {target: cpu-onnxruntime, "
                       "int8: true}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    out = run_json(capsys, recipe, "--target", "edge-int8")
    assert out["target"] == "cpu-onnxruntime" and out["runtime"].endswith("int8")
    code, _, err = run(capsys, recipe, "--target", "edge")
    assert code == 2 and "'edge-int8'" in err and "'cpu-torch'" in err
