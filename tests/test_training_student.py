"""A student of another architecture (model.student), compressed and distilled from the teacher."""

import pytest
import torch
import yaml

from autocompress.errors import ConfigError
from autocompress.export import load_compressed, read_spec
from autocompress.methods import DistillConfig
from autocompress.methods.feature_distillation import AttentionTransferConfig, HintConfig
from autocompress.recipe import StudentConfig, TrainingConfig
from autocompress.search import trial as trial_mod
from autocompress.search.runner import prepare
from autocompress.search.student import build_student, initial_student
from autocompress.testing import ReportCollector
from autocompress.training import evaluate, fine_tune
from autocompress.zoo import build_model
from tests.helpers import small_recipe

STUDENT = StudentConfig(name="autocompress.testing.models:tiny_residual", kwargs={"width": 8})
TEACHER_WIDTH = 32
# Student layers (TinyResidual): stem.0, block.0, block.3 (convs), head.2 (output linear).
PLAN = {
    "layers": {
        "block.0": {"prune": {"ratio": 0.5}, "quantize": {"bits": 8}},
        "block.3": {"quantize": {"bits": 4}},
        "head.2": {"quantize": {"bits": 8}},
    },
    "distillation": {"temperature": 2.0, "alpha": 0.5},
    "attention_transfer": {"pairs": "block.3:features.7", "beta": 5.0},  # across models
}


def student_recipe(tmp, student=STUDENT, **training):
    recipe = small_recipe(tmp, epochs=1)
    return recipe.replace(model={"kwargs": {"width": TEACHER_WIDTH}, "student": student},
                          training={"epochs": 3, "lr": 0.03, "schedule": "cosine",
                                    "warmup_steps": 5, **training})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("student")
    return tmp, prepare(student_recipe(tmp))


def test_the_space_binds_to_the_students_layers_and_the_baseline_stays_the_teacher(prepared):
    _, (ctx, baseline, _) = prepared
    assert [layer.name for layer in ctx.space.layers] == ["stem.0", "block.0", "block.3",
                                                          "head.2"]
    assert ctx.output_layers == {"head.2"}
    teacher = trial_mod.build_teacher(ctx.recipe, ctx.teacher_state)
    assert teacher.features[0].out_channels == TEACHER_WIDTH
    assert baseline["params"] == sum(p.numel() for p in teacher.parameters())
    student = build_student(ctx.recipe, ctx.student_state)
    assert type(student).__name__ == "TinyResidual" and not student.training
    # every trial starts from the same student: fresh weights drawn from the search seed
    again = initial_student(ctx.recipe)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ctx.student_state.items())


def test_a_trial_compresses_the_student_distils_it_and_saves_the_students_artifact(
        prepared, tmp_path, monkeypatch):
    _, (ctx, baseline, _) = prepared
    seen = {}
    original = trial_mod._fine_tune

    def spy(student, teacher, *args, **kwargs):
        seen.update(student=type(student).__name__, teacher=type(teacher).__name__,
                    teacher_width=teacher.features[0].out_channels,
                    untrained=evaluate(student, trial_mod.load_splits(ctx.recipe).val))
        return original(student, teacher, *args, **kwargs)

    monkeypatch.setattr(trial_mod, "_fine_tune", spy)
    report = ReportCollector(tmp_path)
    trial_mod.run_trial(PLAN, ctx, report)
    final, artifact = report.last
    assert final["status"] == "completed", final.get("reason")
    assert seen["student"] == "TinyResidual" and seen["teacher"] == "ZooNet"
    assert seen["teacher_width"] == TEACHER_WIDTH
    assert read_spec(artifact)["base"]["model"] == STUDENT.name  # not the teacher's factory
    model = load_compressed(artifact, trust_code=True)  # an import path: rebuilt on trust only
    assert type(model).__name__ == "TinyResidual"
    assert model.block[0].out_channels == 4  # pruned by the plan, half of width 8
    assert evaluate(model, trial_mod.load_splits(ctx.recipe).val) == final["accuracy"]
    assert final["params"] < baseline["params"] / 20
    assert final["accuracy"] > max(0.3, seen["untrained"] + 0.15)  # 0.49 here, from 0.11


def test_soft_targets_alone_teach_another_architecture_the_teachers_answers(prepared):
    _, (ctx, _, _) = prepared
    splits = trial_mod.load_splits(ctx.recipe)
    teacher = trial_mod.build_teacher(ctx.recipe, ctx.teacher_state)
    student = build_student(ctx.recipe, ctx.student_state)
    x = splits.val.tensors[0]

    def agreement() -> float:
        with torch.no_grad():
            return (student.eval()(x).argmax(1) == teacher(x).argmax(1)).float().mean().item()

    before = agreement()
    training = TrainingConfig(epochs=3, lr=0.03, schedule="cosine", warmup_steps=5,
                              distillation=None)
    # alpha 0: no hard-label term, the teacher's softened logits are the only signal
    fine_tune(student, teacher, splits, training, distillation=DistillConfig(2.0, alpha=0.0),
              batch_size=64, quiet=False)
    assert before < 0.3 and agreement() > 0.5


def test_a_student_checkpoint_is_loaded_and_one_that_does_not_fit_is_refused(tmp_path):
    state = build_model(STUDENT.name, **STUDENT.kwargs).state_dict()
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
             for k, v in state.items()}
    torch.save(state, tmp_path / "student.pt")
    recipe = student_recipe(tmp_path, StudentConfig(STUDENT.name, STUDENT.kwargs,
                                                    checkpoint="student.pt"))
    recipe = recipe.replace(base_dir=str(tmp_path))
    loaded = initial_student(recipe)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    wider = recipe.replace(model={"student": StudentConfig(STUDENT.name, {"width": 16},
                                                           checkpoint="student.pt")})
    with pytest.raises(ConfigError, match=r"^model\.student\.checkpoint: .* does not fit"):
        initial_student(wider)
    missing = recipe.replace(model={"student": StudentConfig(STUDENT.name,
                                                             checkpoint="nope.pt")})
    with pytest.raises(ConfigError, match=r"^model\.student\.checkpoint: file not found"):
        initial_student(missing)


def test_a_student_with_other_outputs_is_refused_before_any_trial(prepared):
    tmp, _ = prepared
    five = StudentConfig(STUDENT.name, {**STUDENT.kwargs, "num_classes": 5})
    with pytest.raises(ConfigError, match=r"^model\.student: its outputs have shape \(2, 5\), "
                                          r"the teacher's \(2, 10\)"):
        prepare(student_recipe(tmp, five))


@pytest.mark.parametrize("key, pairs, message", [
    ("hint", "block.3:features.99", r"'features\.99' is not a layer of the teacher"),
    ("attention_transfer", "features.3", r"'features\.3' is not a layer of the student"),
])
def test_feature_pairs_must_name_layers_of_both_models(prepared, key, pairs, message):
    tmp, _ = prepared
    config = (HintConfig if key == "hint" else AttentionTransferConfig)(pairs=pairs)
    recipe = student_recipe(tmp, **{key: config})
    with pytest.raises(ConfigError, match=rf"^training\.{key}\.pairs: {message}"):
        prepare(recipe)


@pytest.mark.slow
def test_a_two_trial_search_distils_into_a_narrower_student(tmp_path):
    from autocompress.search.runner import run_search
    from autocompress.tracking import load_search
    from autocompress.tracking.query import download_artifact

    space = tmp_path / "space.yaml"  # mild plans: the point is the student, not the plan
    space.write_text(yaml.safe_dump({"layers": [
        {"select": {"type": "Conv2d"}, "methods": {"prune": {"ratio": {"choices": [0.0, 0.25]}},
                                                   "quantize": {"bits": {"choices": [8, 32]}}}},
        {"select": {"type": "Linear"}, "methods": {"quantize": {"bits": 8}}},  # size_kb<=60
    ]}))
    recipe = student_recipe(tmp_path, StudentConfig("digits_cnn", {"width": 8})).replace(
        space=str(space), search={"trials": 2, "concurrency": 2, "scheduler": "none"},
        training={"epochs": 3, "lr": 0.01, "schedule": "cosine", "warmup_steps": 5,
                  "gradient_clip_val": 5.0, "limit_train_batches": None})
    summary = run_search(recipe, verbose=0)
    assert summary.trials == 2 and summary.statuses == {"completed": 2}, summary.statuses
    record = load_search(recipe.tracking.uri, recipe.experiment, summary.parent_run_id)
    teacher_params = summary.baseline["params"]
    for trial in record.trials:  # width 8 instead of 32, before any plan: ~1/5 of the params
        assert trial.metrics["params"] < teacher_params / 4
        assert trial.metrics["accuracy"] > 0.6
    artifact = download_artifact(recipe.tracking.uri, record.trials[0].run_id,
                                 tmp_path / "best.acz")
    model = load_compressed(artifact)  # a zoo name: no trust needed
    assert model._autocompress_base == {"model": "digits_cnn", "kwargs": {"width": 8}}


def test_the_shipped_student_recipe_parses():
    from autocompress.recipe import Recipe
    from tests.helpers import ROOT

    recipe = Recipe.from_yaml(ROOT / "recipes" / "digits_student.yaml")
    assert recipe.model.student == StudentConfig("digits_cnn", {"width": 8})
    assert recipe.training.schedule == recipe.model.pretrain.schedule == "cosine"
    assert recipe.resolve(recipe.space).is_file()
