"""Bring your own model: compress an nn.Module object from Python, save it, load it back.

Runs offline in a few seconds (``python docs/examples/byo.py``); tests/test_docs.py runs it.
The model is the tiny BERT of ``byo/tinybert.py`` (built from its config, random weights).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "byo"))  # tinybert.py, for this demo

from tinybert import make_data, make_model  # noqa: E402

from autocompress import CompressionPlan, apply_plan, load_compressed, save_compressed  # noqa: E402
from autocompress.errors import ArtifactError  # noqa: E402

PLAN = {"layers": {
    "bert.embeddings.word_embeddings": {"quantize": {"bits": 4}},
    "bert.encoder.layer.0.intermediate.dense": {"prune": {"ratio": 0.5}},
    "bert.encoder.layer.1.attention.self.query": {"svd": {"rank_ratio": 0.25}},
    "bert.encoder.layer.1.output.dense": {"quantize": {"bits": 8}},
}}


def main(folder: Path) -> dict[str, float]:
    """Compress, save, reload three ways; return the sizes and the largest output difference."""
    torch.manual_seed(0)
    model = make_model().eval()                          # any nn.Module: here an HF model
    batch = make_data(train=8, val=8, test=8)["val"][:4]   # a dict batch of 4 sequences
    example = batch["input_ids"]
    plan = CompressionPlan.from_dict(PLAN)
    student = apply_plan(model, plan, example_inputs=example).eval()   # model is not modified

    float_bytes = save_compressed(model, folder / "float.acz")
    path = folder / "tinybert.acz"
    size = save_compressed(student, path, base={"model": "tinybert:make_model", "kwargs": {}})

    loaded = load_compressed(path, base=make_model)       # a factory you pass: no code trust
    try:                                                  # the file's own import path ...
        load_compressed(path)
        raise AssertionError("an import path must need trust_code=True")
    except ArtifactError as refused:                      # ... is refused without trust
        print("refused:", str(refused).splitlines()[0])
    trusted = load_compressed(path, trust_code=True)      # imports tinybert: RUNS CODE

    with torch.no_grad():
        expected = student(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits
        gaps = [float((m(input_ids=example, attention_mask=batch["attention_mask"]).logits
                       - expected).abs().max()) for m in (loaded, trusted)]
    print(f"artifact {size:,} bytes (float model {float_bytes:,}); max output difference "
          f"after loading {max(gaps):.2e}")
    return {"size": size, "float_size": float_bytes, "max_gap": max(gaps)}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp))
