"""A crafted artifact cannot run code: import paths in a file need the caller's trust.

The attacker edits the spec and recomputes the checksum (the checksum detects damage, not
intent); the spec is then cross-checked against the tensors.
"""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from autocompress.cli import main
from autocompress.errors import ArtifactError
from autocompress.export import load_compressed, save_compressed
from autocompress.export.artifact import _checksum, _pack_spec, _unpack_spec
from autocompress.methods import CompressionPlan, apply_plan
from autocompress.zoo import build_model


def craft(source, target, edit):
    """Rewrite the artifact's spec with ``edit(spec)`` and a recomputed checksum."""
    data = source.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    import json

    spec = _unpack_spec(json.loads(data[8:8 + header_len])["__metadata__"]["autocompress"])
    tensors = st_load(data)
    edit(spec)
    spec["checksum"] = _checksum(tensors, spec)
    target.write_bytes(st_save(tensors, metadata={"autocompress": _pack_spec(spec)}))
    return target


@pytest.fixture
def artifact(tmp_path):
    model = build_model("digits_cnn", width=8).eval()
    x = torch.randn(2, 1, 8, 8)
    plan = CompressionPlan.from_dict({"layers": {"classifier.1": {"quantize": {"bits": 4}}}})
    student = apply_plan(model, plan, x).eval()
    save_compressed(student, tmp_path / "good.acz")
    return tmp_path / "good.acz", student, x


EVIL_MODULE = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")


def factory(**kwargs):
    from autocompress.zoo import build_model
    return build_model("digits_cnn", width=8)
'''


@pytest.mark.parametrize("kind", ["os:system", "subprocess:getoutput", "side_effects"])
def test_a_crafted_base_runs_nothing_without_trust(artifact, tmp_path, monkeypatch, kind,
                                                   capsys):
    source, student, x = artifact
    marker = tmp_path / "MARKER"
    if kind == "side_effects":
        (tmp_path / "evil_module.py").write_text(EVIL_MODULE.format(marker=str(marker)))
        monkeypatch.syspath_prepend(str(tmp_path))
        base = {"model": "evil_module:factory", "kwargs": {}}
    else:
        base = {"model": kind, "kwargs": {("command" if kind == "os:system" else "cmd"):
                                          f"touch {marker}"}}
    crafted = craft(source, tmp_path / "crafted.acz", lambda spec: spec.update(base=base))
    with pytest.raises(ArtifactError, match=f"import path '{base['model']}'.*trust_code"):
        load_compressed(crafted)
    assert main(["inspect", str(crafted)]) == 0  # reads the spec only
    assert main(["profile", str(crafted)]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert not marker.exists()
    assert "evil_module" not in sys.modules
    if kind == "side_effects":  # with the opt-in it loads (and runs the module, as documented)
        loaded = load_compressed(crafted, trust_code=True)
        torch.testing.assert_close(loaded(x), student(x))
        assert marker.exists()
        sys.modules.pop("evil_module", None)


def test_an_edited_bit_width_is_refused(artifact, tmp_path):
    source, _, _ = artifact

    def four_to_eight(spec):
        for entry in spec["modules"]:
            if entry["name"] == "classifier.1":
                entry["args"]["bits"] = 8

    crafted = craft(source, tmp_path / "bits.acz", four_to_eight)
    with pytest.raises(ArtifactError, match=r"classifier\.1: inconsistent encoding .* 4 bits"):
        load_compressed(crafted)


def test_an_edited_shape_is_refused(artifact, tmp_path):
    source, _, _ = artifact

    def widen(spec):
        for entry in spec["modules"]:
            if entry["name"] == "classifier.1":
                entry["args"]["out_features"] += 1

    with pytest.raises(ArtifactError, match=r"classifier\.1: inconsistent encoding"):
        load_compressed(craft(source, tmp_path / "shape.acz", widen))
