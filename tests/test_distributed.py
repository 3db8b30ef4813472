"""Distributed fine-tuning of one candidate (Ray Train + Lightning DDP) and DeepSpeed checks."""

import time
from pathlib import Path

import pytest
import torch

from autocompress.errors import ConfigError
from autocompress.training.deepspeed import check_accelerators, refuse_without_cuda
from autocompress.training.distributed import (
    DistributedConfig,
    epoch_result,
    max_concurrent_trials,
)

# Prunes (structurally), quantizes with learned steps, masks (sparsify) and shares (k-means).
PLAN = {
    "layers": {
        "features.0": {"quantize": {"bits": 8}},
        "features.3": {"prune": {"ratio": 0.5}, "quantize": {"bits": 4}},
        "features.7": {"prune": {"ratio": 0.5}, "share": {"bits": 4}},
        "classifier.1": {"sparsify": {"sparsity": 0.5}, "quantize": {"bits": 4}},
        "classifier.3": {"quantize": {"bits": 8}},
    },
    "distillation": {"temperature": 4.0, "alpha": 0.5},
}
ZERO2 = {"zero_optimization": {"stage": 2, "overlap_comm": True}}


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "message"), [
    ({"workers": 0}, "distributed.workers: invalid value 0; allowed: an integer >= 1"),
    ({"strategy": "fsdp"}, "distributed.strategy: invalid value 'fsdp'; allowed: one of 'ddp'"),
    ({"cpus_per_worker": 0}, "distributed.cpus_per_worker: invalid value 0"),
    ({"deepspeed": ZERO2}, "distributed.deepspeed: given, but strategy is 'ddp'"),
    ({"strategy": "deepspeed"}, "'deepspeed' runs on CUDA GPUs only"),
    ({"worker_resource": ""}, "distributed.worker_resource: invalid value ''"),
    ({"bogus": 1}, "distributed.bogus: unknown key; allowed keys: workers, strategy"),
])
def test_config_errors_name_the_field_the_value_and_what_is_allowed(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DistributedConfig.from_dict(raw)


def test_config_round_trips_and_builds_worker_bundles():
    dist = DistributedConfig(workers=2, cpus_per_worker=0.5, worker_resource="trainer")
    assert DistributedConfig.from_dict(dist.to_dict()) == dist
    assert dist.worker_bundle({"CPU": 4, "trainer": 1}) == {"CPU": 0.5, "trainer": 0.001}
    assert dist.worker_bundle({"CPU": 4}) == {"CPU": 0.5}  # no node has it: placed anywhere
    assert dist.per_worker_batch(64) == 32 and dist.enabled
    assert not DistributedConfig().enabled


def test_concurrency_leaves_room_for_every_trials_workers():
    dist = DistributedConfig(workers=2)
    assert max_concurrent_trials(dist, 1.0, 4, {"CPU": 7}) == 2  # (1 + 2) CPUs per trial
    assert max_concurrent_trials(dist, 0.5, 4, {"CPU": 16}) == 4
    with pytest.raises(ConfigError, match="a trial needs 3 CPUs"):
        max_concurrent_trials(dist, 1.0, 2, {"CPU": 2})


def test_epoch_result_is_the_single_worker_metric_path():
    assert epoch_result({"size_kb": 3.0}, 0.5, 2) == {
        "size_kb": 3.0, "accuracy": 0.5, "epochs_trained": 2, "final": 0.0, "status": "training"}


# --- DeepSpeed --------------------------------------------------------------------------------

def test_validate_deepspeed_accepts_zero2_and_completes_it_as_lightning_does():
    pytest.importorskip("deepspeed")
    from autocompress.training.deepspeed import validate_deepspeed

    check = validate_deepspeed(ZERO2, micro_batch_size=32, world_size=2)
    assert check.zero_stage == 2 and check.version
    assert check.config["train_micro_batch_size_per_gpu"] == 32
    assert check.config["gradient_accumulation_steps"] == 1


@pytest.mark.parametrize(("config", "deepspeed_says"), [
    ({"zero_optimization": {"stage": 7}}, "Input should be 0, 1, 2, 3"),
    ({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "gpu"}}},
     "Input should be 'none', 'cpu' or 'nvme'"),
    ({"zero_optimization": {"stage": 2, "bogus": 1}}, "Extra inputs are not permitted"),
    ({"train_batch_size": 5}, "train_batch_size is not equal to micro_batch_per_gpu"),
])
def test_validate_deepspeed_rejects_with_deepspeeds_own_words(config, deepspeed_says):
    pytest.importorskip("deepspeed")
    from autocompress.training.deepspeed import validate_deepspeed

    with pytest.raises(ConfigError, match="rejected by DeepSpeed") as error:
        validate_deepspeed(config, micro_batch_size=4, world_size=2)
    assert deepspeed_says in str(error.value)
    assert str(error.value).startswith("training.distributed.deepspeed")


def test_lightning_owned_keys_and_offload_without_opt_in_are_refused_early():
    pytest.importorskip("deepspeed")
    from autocompress.training.deepspeed import validate_deepspeed

    with pytest.raises(ConfigError, match="gradient_accumulation_steps: set by Lightning"):
        validate_deepspeed({"gradient_accumulation_steps": 2})
    offload = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}
    with pytest.raises(ConfigError, match="zero_force_ds_cpu_optimizer: false"):
        validate_deepspeed(offload)
    assert validate_deepspeed({**offload, "zero_force_ds_cpu_optimizer": False}).zero_stage == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_deepspeed_is_refused_without_cuda_saying_the_config_was_validated():
    dist = DistributedConfig(workers=2, strategy="deepspeed", use_gpu=True, deepspeed=ZERO2)
    with pytest.raises(ConfigError) as error:
        check_accelerators(dist, batch_size=64)
    message = str(error.value)
    assert message.startswith("training.distributed.strategy: 'deepspeed' needs CUDA GPUs")
    assert "2 worker(s) need 2 GPU(s), 0 found" in message
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        assert "DeepSpeed is not installed" in message and "not validated" in message
    else:
        assert "was validated by DeepSpeed" in message and "ZeRO stage 2" in message
        assert "use strategy 'ddp' to train on CPUs" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_invalid_deepspeed_config_on_cpu_says_both_things():
    pytest.importorskip("deepspeed")
    with pytest.raises(ConfigError, match="needs CUDA GPUs.*and the DeepSpeed config is invalid"):
        refuse_without_cuda({"zero_optimization": {"stage": 9}}, micro_batch_size=8,
                            world_size=1)


# --- Ray Train inside a Tune trial ------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    here = Path(__file__).resolve().parent  # workers unpickle the trainable defined here
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{here}:{here.parent}"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from autocompress.search.runner import prepare
    from tests.helpers import small_recipe

    tmp = tmp_path_factory.mktemp("distributed")
    return tmp, prepare(small_recipe(tmp, epochs=2))[0]


def _candidate_trial(config, ctx, storage):
    """A trial as ``search.trial`` runs it, with the distributed branch for workers > 1."""
    import tempfile

    from autocompress.export import load_compressed, save_compressed
    from autocompress.methods import apply_plan
    from autocompress.search import trial as trial_mod
    from autocompress.search.tuner import tune_report
    from autocompress.training import evaluate, fine_tune_distributed

    recipe, t = ctx.recipe, ctx.recipe.training
    plan = ctx.space.plan(PLAN)
    splits = trial_mod.load_splits(recipe)
    teacher = trial_mod.build_teacher(recipe, ctx.teacher_state)
    student = apply_plan(teacher, plan, splits.val.tensors[0][:1], ctx.output_layers,
                         trial_mod._calibration(teacher, splits, t.calibration_samples))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    from autocompress.search.results import TrialResult, TrialStatus

    start = TrialResult(TrialStatus.RUNNING, violations={"violation/size_kb": -1.0}, final=False)
    base = start.to_report()
    started = time.perf_counter()
    if config["workers"] == 1:
        trial_mod._fine_tune(student, teacher, splits, plan, ctx, start, tune_report)
    else:
        fine_tune_distributed(
            student, teacher, splits, t, DistributedConfig(workers=config["workers"]),
            tune_report, base=base, distillation=plan.distillation or t.distillation,
            attention=plan.attention_transfer or t.attention_transfer,
            hint=plan.hint or t.hint, sparsity=plan.sparsity or t.sparsity,
            output_layers=ctx.output_layers, batch_size=recipe.data.batch_size,
            seed=recipe.search.seed, storage_path=storage)
    train_s = time.perf_counter() - started
    after = student.state_dict()
    fc, conv = student.classifier[1], student.features[7]
    checks = {
        "moved": float(not torch.equal(before["classifier.1.weight"],
                                       after["classifier.1.weight"])),
        "scale_moved": float(not torch.equal(before["features.3.weight_scale"],
                                             after["features.3.weight_scale"])),
        "codebook_moved": float(not torch.equal(before["features.7.codebook"],
                                                after["features.7.codebook"])),
        "mask_kept": float(torch.equal(before["classifier.1.mask"], fc.mask)
                           and not fc.effective_weight()[~fc.mask].any()),
        "indices_kept": float(torch.equal(before["features.7.indices"], conv.indices)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.acz"
        save_compressed(student, path, extra={"plan": plan.to_dict()})
        accuracy = evaluate(load_compressed(path), splits.val)
        tune_report({**base, **checks, "accuracy": accuracy, "epochs_trained": t.epochs,
                     "final": 1.0, "status": "completed", "train_s": train_s}, tmp)


@pytest.mark.slow
def test_two_ddp_workers_in_a_tune_trial_report_the_single_worker_metric_path(
        local_ray, prepared, tmp_path):
    from ray import tune

    from autocompress.export import load_compressed
    from autocompress.search.trial import load_splits
    from autocompress.training import evaluate

    _, ctx = prepared
    driver_cpus = 1.0
    dist = DistributedConfig(workers=2)
    concurrency = max_concurrent_trials(dist, driver_cpus, 2)  # from the live nodes
    assert concurrency == 1  # 3 CPUs: one driver + two workers
    trainable = tune.with_parameters(_candidate_trial, ctx=ctx, storage=str(tmp_path / "train"))
    results = tune.Tuner(
        tune.with_resources(trainable, {"cpu": driver_cpus}),
        param_space={"workers": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
    ).fit()
    by_workers = {r.config["workers"]: r for r in results}
    assert all(r.error is None for r in results), [r.error for r in results]
    frames = {w: r.metrics_dataframe for w, r in by_workers.items()}
    assert sorted(frames[1].columns) == sorted(frames[2].columns)  # the same metric path
    for frame in frames.values():
        assert list(frame["status"]) == ["training", "training", "completed"]
        assert list(frame["epochs_trained"]) == [1, 2, 2]
        assert list(frame["final"]) == [0.0, 0.0, 1.0]
    final = by_workers[2].metrics
    assert final["accuracy"] > 0.5
    assert final["moved"] == final["scale_moved"] == final["codebook_moved"] == 1.0
    assert final["mask_kept"] == final["indices_kept"] == 1.0
    model = load_compressed(Path(by_workers[2].checkpoint.path) / "model.acz")
    assert evaluate(model, load_splits(ctx.recipe).val) == final["accuracy"]
    for workers, frame in frames.items():  # second epoch: training only, no start-up
        print(f"\nworkers={workers}: epoch 2 took {frame['time_this_iter_s'].iloc[1]:.2f} s, "
              f"training {by_workers[workers].metrics['train_s']:.1f} s, "
              f"accuracy {by_workers[workers].metrics['accuracy']:.3f}")


def _empty_loop(config):
    pass


def _train_in_trial(config):
    import os

    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = "5"  # propagated to the controller
    try:
        TorchTrainer(_empty_loop, scaling_config=ScalingConfig(num_workers=2),
                     torch_config=TorchConfig(backend="gloo"),
                     run_config=RunConfig(storage_path=config["storage"],
                                          failure_config=FailureConfig(
                                              controller_failure_limit=0))).fit()
        tune.report({"placed": 1.0})
    except Exception as exc:  # noqa: BLE001
        tune.report({"placed": 0.0, "error": str(exc)})


@pytest.mark.slow
def test_train_v2_does_not_use_worker_bundles_reserved_in_the_trial(local_ray, tmp_path):
    """The trap: a trial reserving its workers' bundles (the Train V1 recipe) starves them."""
    from ray import tune

    reserved = tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}, {"CPU": 1}])  # all 3 CPUs
    (result,) = tune.Tuner(
        tune.with_resources(_train_in_trial, reserved),
        param_space={"storage": str(tmp_path / "train")},
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0),
    ).fit()
    assert result.metrics["placed"] == 0.0  # Train asked for 2 more CPUs, none were free
    assert "Training failed due to controller error" in result.metrics["error"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_deepspeed_zero2_epoch_on_gpu(local_ray, tmp_path):
    pytest.importorskip("deepspeed")
    from autocompress.methods import DistillConfig
    from autocompress.recipe import TrainingConfig
    from autocompress.training import fine_tune_distributed
    from autocompress.zoo import build_model, load_dataset

    assert local_ray.cluster_resources().get("GPU", 0) >= 1  # Ray found the GPU itself
    splits = load_dataset("digits")
    teacher = build_model("digits_cnn", width=16).eval()
    student = build_model("digits_cnn", width=16)
    student.load_state_dict(teacher.state_dict())
    before = {k: v.clone() for k, v in student.state_dict().items()}
    reports = []
    fine_tune_distributed(
        student, teacher, splits, TrainingConfig(epochs=1, lr=3e-3),
        DistributedConfig(workers=1, strategy="deepspeed", use_gpu=True, deepspeed=ZERO2),
        lambda metrics, _: reports.append(metrics), distillation=DistillConfig(alpha=1.0),
        batch_size=64, storage_path=str(tmp_path))
    assert [r["epochs_trained"] for r in reports] == [1]
    assert reports[0]["accuracy"] > 0.3
    assert next(student.parameters()).device.type == "cpu"
    assert not torch.equal(before["classifier.3.weight"], student.state_dict()[
        "classifier.3.weight"])


@pytest.mark.slow
def test_lightning_strategies_carry_the_passthrough_and_ddp_options():
    pytest.importorskip("deepspeed")
    from ray.train.lightning import RayDDPStrategy, RayDeepSpeedStrategy

    from autocompress.training.deepspeed import lightning_strategy

    ds = lightning_strategy(DistributedConfig(strategy="deepspeed", use_gpu=True,
                                              deepspeed=ZERO2))
    assert isinstance(ds, RayDeepSpeedStrategy)
    assert ds.config == {**ZERO2, "zero_allow_untested_optimizer": True}
    assert ZERO2 == {"zero_optimization": {"stage": 2, "overlap_comm": True}}  # not mutated
    ddp = lightning_strategy(DistributedConfig(workers=2, find_unused_parameters=True))
    assert isinstance(ddp, RayDDPStrategy) and ddp._ddp_kwargs["find_unused_parameters"]
