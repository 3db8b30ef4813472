"""Relative latency budgets (speedup, latency_ratio) and the baseline's robust latency."""

from pathlib import Path

import pytest
import yaml

from autocompress.errors import ConfigError
from autocompress.hardware.budget import Budget, is_feasible, violations
from autocompress.hardware.measurement import Measurement
from autocompress.recipe import HardwareConfig, Recipe
from autocompress.search.baseline import robust_latency


def test_relative_budgets_parse_with_and_without_target():
    speed, ratio = Budget.parse("speedup>=3"), Budget.parse("latency_ratio<=0.33")
    assert (speed.metric, speed.op, speed.limit, speed.key) == ("speedup", ">=", 3.0, "speedup")
    assert (ratio.op, ratio.limit) == ("<=", 0.33)
    targeted = Budget.parse("speedup>=2@cpu-onnxruntime")
    assert targeted.key == "speedup/cpu-onnxruntime"
    assert Budget.parse("latency_ratio<=0.5@cpu-torch").key == "latency_ratio/cpu-torch"


@pytest.mark.parametrize("text", ["speedup<=3", "latency_ratio>=0.3", "speedup>=-1"])
def test_relative_budgets_refuse_wrong_direction_or_limit(text):
    with pytest.raises(ConfigError):
        Budget.parse(text)


def test_relative_budgets_hold_on_paired_measurement():
    # candidate 1.5 ms vs baseline 6 ms in the same window: 4x faster, whatever the drift
    measured = Measurement(params=1, macs=1, weight_bytes=1, size_bytes=1, latency_ms=1.5,
                           reference_latency_ms=6.0)
    metrics = measured.anchored(baseline_ms=13.1)  # the baseline read slower when recorded
    assert metrics["speedup"] == pytest.approx(4.0)
    assert metrics["latency_ratio"] == pytest.approx(0.25)
    budgets = [Budget.parse("speedup>=3"), Budget.parse("latency_ratio<=0.33")]
    assert is_feasible(violations(budgets, metrics))
    assert not is_feasible(violations([Budget.parse("speedup>=5")], metrics))


def test_relative_budget_needs_paired_timing():
    raw = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "quickstart.yaml").read_text())
    raw["budgets"] = ["speedup>=3"]
    raw.setdefault("hardware", {})["paired"] = True
    assert Recipe.from_dict(raw).parsed_budgets()[0].metric == "speedup"
    raw["hardware"]["paired"] = False
    with pytest.raises(ConfigError, match="paired"):
        Recipe.from_dict(raw)


def test_baseline_rounds_validated():
    with pytest.raises(ConfigError, match="baseline_rounds"):
        HardwareConfig(baseline_rounds=0)


def test_robust_latency_is_the_median_of_rounds():
    rounds = [{"latency_ms": ms, "latency_p90_ms": ms * 1.1, "latency_ms/cpu-torch": ms / 2,
               "size_kb": 4.0} for ms in (13.1, 5.9, 6.3)]
    out = robust_latency(rounds)
    assert out["latency_ms"] == pytest.approx(6.3)
    assert out["latency_ms/cpu-torch"] == pytest.approx(3.15)
    assert out["latency_p90_ms"] == pytest.approx(6.93)
    assert out["size_kb"] == 4.0
    assert out["baseline_latency_range"] == pytest.approx((13.1 - 5.9) / 6.3)
