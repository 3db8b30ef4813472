"""The benchmark runner (benchmarks/compare): its pure figures, and its quick mode end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autocompress.methods.apply import LayerInfo
from benchmarks.compare.scores import Row, goals, hypervolumes, within
from benchmarks.compare.suites import SUITES, Uniform

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("baseline", "uniform", "random", "tpe", "nsga2", "torch-pruning", "ort-int8",
           "ort-dynamic-int8")


def row(method: str, error: float, ort: float, size: int, label: str = "m") -> Row:
    return Row(method, label, error, ort, "float", ort, error, size, None, "")


def test_uniform_point_is_one_value_for_every_layer_and_never_prunes_the_output():
    layers = [LayerInfo("a", "Conv2d", (8, 1, 3, 3), False),
              LayerInfo("b", "Linear", (10, 8), True),
              LayerInfo("c", "Linear", (8, 8), False, prunable=False)]
    plan = Uniform(0.5, 4).plan(layers, "*")["layers"]
    assert plan["a"] == {"prune": {"ratio": 0.5}, "quantize": {"bits": 4}}
    assert plan["b"] == {"quantize": {"bits": 4}}  # output layer: bits only
    assert plan["c"] == {"quantize": {"bits": 4}}  # not the carrier of its coupled group
    assert Uniform(0.5, 32).plan(layers, "x*") == {"layers": {}}  # glob matches nothing


def test_hypervolume_reference_is_the_baseline_and_the_tolerance_adds_volume():
    base = row("baseline", 0.01, 1.0, 1000)
    rows = [base, row("tpe", 0.005, 0.5, 500), row("uniform", 0.02, 0.1, 100)]
    hv = hypervolumes(rows, base, tolerance=0.02, n_test=1000)
    assert hv["tpe"]["hv"] == pytest.approx(0.5 * 0.5 * 0.5)
    assert hv["uniform"]["hv"] == 0.0  # worse error than the baseline: outside its box
    # reference error 0.03 / 0.01 = 3 baseline units: (3 - 2) * 0.9 * 0.9
    assert hv["uniform"]["hv_tol"] == pytest.approx(1.0 * 0.9 * 0.9)
    assert [r.method for r in within(rows, base, 0.0)] == ["tpe"]


def test_goals_say_missed_when_no_member_is_within_tolerance():
    base = row("baseline", 0.01, 1.0, 1000)
    rows = [base, row("tpe", 0.05, 0.1, 10), row("torch-pruning", 0.011, 0.4, 500)]
    hv = hypervolumes(rows, base, 0.001, 1000)
    found = goals(rows, base, SUITES["lenet5"], hv)
    assert not any(g["met"] for g in found)
    assert "no member within tolerance" in found[0]["measured"]


@pytest.mark.slow
def test_quick_mode_writes_a_full_report(tmp_path):
    out = tmp_path / "report.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare", "--suite", "lenet5", "--mode", "quick",
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    data = json.loads(out.with_suffix(".json").read_text())
    methods = {r["method"] for r in data["rows"]}
    assert set(METHODS) <= methods, (methods, data["notes"])
    for method in METHODS:
        assert f"| {method} |" in text
    for method, h in data["hypervolume"].items():
        assert math.isfinite(h["hv"]) and h["hv"] >= 0, method
        assert math.isfinite(h["hv_tol"]) and h["hv_tol"] >= h["hv"], method
    for r in data["rows"]:
        assert Path(r["path"]).stat().st_size == r["size"] > 0
        assert 0.0 <= r["error"] <= 1.0
    forms = {r["label"].rsplit("[", 1)[-1] for r in data["rows"] if r["method"] == "tpe"}
    assert {"float]", "int8]", "dynamic]"} <= forms, forms  # each ORT form is its own point
    assert len(data["plots"]) == 2
    for png in data["plots"]:
        blob = Path(png).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    assert "## Goals (issue 10)" in text and ("missed" in text or "met" in text)
