"""Unstructured sparsity, affine / binary quantization, k-means sharing and their artifact."""

import numpy as np
import pytest
import torch

from autocompress.errors import ConfigError, PlanError
from autocompress.export import load_compressed, save_compressed
from autocompress.export.streams import (
    decode_positions,
    decode_stream,
    encode_positions,
    encode_stream,
)
from autocompress.methods import (
    CompressedConv2d,
    CompressedLinear,
    CompressionPlan,
    ShareConfig,
    SparsifyConfig,
    apply_plan,
)
from autocompress.testing import build_tiny, example_input
from autocompress.zoo import build_model


def digits(width=8):
    model = build_model("digits_cnn", width=width).eval()
    return model, torch.randn(4, 1, 8, 8)


def plan(layers):
    return CompressionPlan.from_dict({"layers": layers})


def reloads(model, x, path):
    model.eval()
    size = save_compressed(model, path)
    loaded = load_compressed(path, trust_code=True)  # test models are import paths
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-4)
    assert size == path.stat().st_size
    return loaded


@pytest.mark.parametrize("sparsity", [0.3, 0.7, 0.95])
def test_layer_sparsity_zeroes_the_smallest_weights(sparsity):
    model, x = digits()
    student = apply_plan(model, plan({"classifier.1": {"sparsify": {"sparsity": sparsity}}}), x)
    layer = student.classifier[1]
    assert isinstance(layer, CompressedLinear) and layer.sparse
    w = layer.effective_weight()
    assert (w == 0).float().mean().item() == pytest.approx(sparsity, abs=0.01)
    kept = model.classifier[1].weight.abs()[layer.mask]
    dropped = model.classifier[1].weight.abs()[~layer.mask]
    assert kept.min() >= dropped.max()


def test_global_sparsity_ranks_layers_together_and_needs_one_value():
    model, x = digits()
    glob = {"sparsify": {"sparsity": 0.8, "scope": "global"}}
    student = apply_plan(model, plan({"features.3": glob, "classifier.1": glob}), x)
    masks = [student.features[3].mask, student.classifier[1].mask]
    total = sum(m.numel() for m in masks)
    assert sum((~m).sum().item() for m in masks) / total == pytest.approx(0.8, abs=0.01)
    assert masks[0].float().mean() != pytest.approx(masks[1].float().mean().item(), abs=0.01)
    other = {"sparsify": {"sparsity": 0.5, "scope": "global"}}
    with pytest.raises(PlanError, match="need the same sparsity"):
        apply_plan(model, plan({"features.3": glob, "classifier.1": other}), x)


def test_masked_weights_stay_zero_through_training():
    model, x = digits()
    student = apply_plan(model, plan({"classifier.1": {"sparsify": {"sparsity": 0.5},
                                                       "quantize": {"bits": 4}}}), x).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    for _ in range(3):
        opt.zero_grad()
        student(torch.randn(8, 1, 8, 8)).pow(2).sum().backward()
        opt.step()
    layer = student.classifier[1]
    assert (layer.effective_weight()[~layer.mask] == 0).all()
    assert (layer.weight.grad[~layer.mask] == 0).all()


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_affine_quantization_has_at_most_2_pow_bits_values_and_exact_zero(bits):
    layer = CompressedLinear(64, 6, bits=bits, symmetric=False)
    with torch.no_grad():
        layer.weight.uniform_(-0.2, 1.0)
        layer.calibrate()
        w = layer.effective_weight()
    for row in w:
        assert row.unique().numel() <= 2**bits
    err = (w - layer.weight).abs().max()
    assert err <= (layer.weight_scale.max() / 2) + 1e-6


def test_learned_step_size_receives_gradient():
    layer = CompressedLinear(16, 4, bits=3).train()
    layer(torch.randn(5, 16)).pow(2).sum().backward()
    assert layer.weight_scale.grad is not None and layer.weight_scale.grad.abs().sum() > 0


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_sharing_uses_at_most_2_pow_bits_values_and_trains_the_codebook(bits):
    model, x = digits()
    student = apply_plan(model, plan({"features.3": {"share": {"bits": bits}}}), x).train()
    layer = student.features[3]
    assert isinstance(layer, CompressedConv2d) and layer.share_bits == bits
    assert layer.effective_weight().unique().numel() <= 2**bits
    student(x).pow(2).sum().backward()
    assert layer.codebook.grad.abs().sum() > 0  # centroid fine-tuning
    assert layer.weight.grad is None  # the float weights are not trained any more


def test_kmeans_beats_uniform_quantization_error_at_equal_bits():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 32)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(32, 256) * torch.rand(32, 256) ** 3)  # heavy tailed
    shared = CompressedLinear(256, 32, share_bits=3, calibrate=False)
    uniform = CompressedLinear(256, 32, bits=3, per_channel=False, calibrate=False)
    for layer in (shared, uniform):
        layer.load_state_dict(linear.state_dict(), strict=False)
        layer.calibrate()
    with torch.no_grad():
        err = [(m.effective_weight() - linear.weight).pow(2).mean() for m in (shared, uniform)]
    assert err[0] < err[1]


def test_sparse_shared_layer_has_zeros_where_pruned_and_shares_the_rest():
    model, x = digits()
    student = apply_plan(model, plan({"classifier.1": {"sparsify": {"sparsity": 0.9},
                                                       "share": {"bits": 2}}}), x)
    w = student.classifier[1].effective_weight()
    assert (w == 0).float().mean() >= 0.9 - 1e-3
    assert w[student.classifier[1].mask].unique().numel() <= 4


MIXED = {
    "features.0": {"quantize": {"bits": 1}},
    "features.3": {"prune": {"ratio": 0.25}, "sparsify": {"sparsity": 0.6},
                   "quantize": {"bits": 4, "symmetric": False}},
    "features.7": {"sparsify": {"sparsity": 0.8}, "share": {"bits": 3}},
    "classifier.1": {"svd": {"rank_ratio": 0.5}, "sparsify": {"sparsity": 0.5},
                     "quantize": {"bits": 16}},
    "classifier.3": {"share": {"bits": 5}},
}


def test_every_combination_round_trips_through_the_artifact(tmp_path):
    model, x = digits(width=16)
    student = apply_plan(model, plan(MIXED), x)
    loaded = reloads(student, x, tmp_path / "mixed.acz")
    assert loaded.features[7].sparse and loaded.features[7].share_bits == 3
    torch.testing.assert_close(loaded.features[7].mask, student.features[7].mask)
    torch.testing.assert_close(loaded.features[3].weight_zero_point,
                               student.features[3].weight_zero_point)


def test_sparsity_and_sharing_shrink_the_artifact(tmp_path):
    model, x = digits(width=16)
    sizes = {}
    for name, layers in {
        "float": {},
        "sparse": {n: {"sparsify": {"sparsity": 0.9}} for n in ("features.3", "features.7",
                                                                 "classifier.1")},
        "sparse+shared": {n: {"sparsify": {"sparsity": 0.9}, "share": {"bits": 4}}
                          for n in ("features.3", "features.7", "classifier.1")},
    }.items():
        sizes[name] = save_compressed(apply_plan(model, plan(layers), x), tmp_path / f"{name}.acz")
    assert sizes["sparse"] < sizes["float"] / 4
    assert sizes["sparse+shared"] < sizes["sparse"] / 2  # positions and float layers remain


def test_residual_model_with_every_weight_method_round_trips(tmp_path):
    model = build_tiny("tiny_residual", width=8).eval()
    x = example_input(model, batch=2)
    layers = {"stem.0": {"prune": {"ratio": 0.5}, "sparsify": {"sparsity": 0.5},
                         "share": {"bits": 2}},
              "block.0": {"quantize": {"bits": 3}}, "head.2": {"quantize": {"bits": 8}}}
    reloads(apply_plan(model, plan(layers), x), x, tmp_path / "res.acz")


@pytest.mark.parametrize("seed", range(4))
def test_streams_round_trip_and_pick_the_smaller_coding(seed):
    rng = np.random.default_rng(seed)
    skewed = np.minimum(rng.geometric(0.5, 5000) - 1, 15)
    payload, header = encode_stream(skewed, 4)
    assert header["coding"] == "huffman" and payload.size < 5000 * 4 / 8
    np.testing.assert_array_equal(decode_stream(payload, header), skewed)
    flat = rng.integers(0, 16, 5000)
    payload, header = encode_stream(flat, 4)
    assert payload.size <= 5000 * 4 / 8
    np.testing.assert_array_equal(decode_stream(payload, header), flat)


@pytest.mark.parametrize("density", [0.02, 0.5, 0.98])
def test_positions_round_trip(density):
    rng = np.random.default_rng(1)
    mask = rng.random(3000) < density
    payload, header = encode_positions(mask)
    np.testing.assert_array_equal(decode_positions(payload, header), mask)
    assert payload.size <= 3000 / 8 + 1
    if density < 0.1:
        assert header["coding"] != "bitmap"  # coded gaps beat a bitmap when very sparse


def test_configs_validate_and_round_trip():
    assert ShareConfig.from_dict({"bits": "3"}) == ShareConfig(bits=3)
    assert SparsifyConfig.from_dict({"sparsity": "0.5", "scope": "global"}).scope == "global"
    with pytest.raises(ConfigError, match="share.bits"):
        ShareConfig(bits=9)
    with pytest.raises(ConfigError, match="sparsify.scope"):
        SparsifyConfig(sparsity=0.5, scope="network")
    with pytest.raises(ConfigError, match="sparsify.sparsity"):
        SparsifyConfig(sparsity=1.0)
    with pytest.raises(PlanError, match="at most one quantize or share method"):
        plan({"fc": {"quantize": {"bits": 4}, "share": {"bits": 4}}})


def test_size_breakdown_adds_up_to_the_file_and_names_every_layer(tmp_path, capsys):
    from autocompress.cli import main
    from autocompress.export import size_breakdown

    model, x = digits(width=16)
    path = tmp_path / "m.acz"
    size = save_compressed(apply_plan(model, plan(MIXED), x), path)
    sizes = size_breakdown(path)
    assert sum(sizes.values()) == size == path.stat().st_size
    assert {"features.0", "features.3", "features.7", "classifier.1.u", "classifier.1.v",
            "classifier.3", "(header)"} <= set(sizes)
    assert main(["inspect", str(path), "--format", "json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    # inspect lists the layers (model order); the header's bytes are the rest of the file
    assert out["bytes"] == size and {r["layer"] for r in out["layers"]} == set(sizes) - {"(header)"}


def test_reapplying_a_plan_to_a_shared_layer_keeps_its_fine_tuned_centroids():
    model, x = digits()
    shared = apply_plan(model, plan({"classifier.1": {"share": {"bits": 2}}}), x)
    with torch.no_grad():
        shared.classifier[1].codebook.add_(1.0)  # stands in for centroid fine-tuning
        before = shared.classifier[1].effective_weight().clone()
    pruned = apply_plan(shared, plan({"classifier.1": {"sparsify": {"sparsity": 0.5}}}), x)
    layer = pruned.classifier[1]
    with torch.no_grad():
        after = layer.effective_weight()
    torch.testing.assert_close(after[layer.mask], before[layer.mask], atol=1e-3, rtol=1e-3)
    kept = before.abs()[layer.mask]
    assert kept.min() >= before.abs()[~layer.mask].max()  # ranked by the shared values
