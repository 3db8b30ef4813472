"""Models autocompress never wrote: parameters and artifact bytes before and after a plan.

For each architecture of ``autocompress.testing.foreign`` (Hugging Face ResNet, MobileNetV2,
EfficientNet-B0 and BERT built from configs with random weights, a model with a forward-
overriding conv subclass and a buffered custom module) and the zoo's MiniLM (real weights):
apply the architecture's mixed plan (pruning, low-rank, quantization), save the artifact, load
it back with ``base=`` (no trust) and compare its outputs with the compressed model's.

Usage: python benchmarks/any_model.py [--output FILE.md]
Prints a Markdown table (bytes are real file sizes; float32 = the model's state_dict bytes).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from autocompress.export import load_compressed, save_compressed  # noqa: E402
from autocompress.methods import CompressionPlan, apply_plan, compressible_layers  # noqa: E402
from autocompress.testing.foreign import FOREIGN  # noqa: E402


def minilm():
    from autocompress.zoo import build_model

    model = build_model("minilm_classifier", seq_len=64).eval()
    x = model.example_input(batch=2)
    names = [i.name for i in compressible_layers(model, x)]
    layers = {n: {"quantize": {"bits": 8}} for n in names if "embeddings" not in n}
    layers["encoder.embeddings.word_embeddings"] = {"quantize": {"bits": 4}}
    layers["encoder.embeddings.position_embeddings"] = {"share": {"bits": 4}}
    return (lambda: build_model("minilm_classifier", seq_len=64)), (lambda: x), layers


def eight_bit(factory, example) -> dict:
    """8-bit weights on every compressible layer a replacement may take."""
    torch.manual_seed(0)
    infos = compressible_layers(factory().eval(), example())
    return {i.name: {"quantize": {"bits": 8}} for i in infos if not i.custom_forward}


def output(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def row(name, factory, example, layers, folder: Path) -> str:
    torch.manual_seed(0)
    model, x = factory().eval(), example()
    plan = CompressionPlan.from_dict({"layers": layers})
    student = apply_plan(model, plan, x).eval()
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    before = save_compressed(model, folder / f"{name}-base.acz")
    started = time.perf_counter()
    after = save_compressed(student, folder / f"{name}.acz")
    saved = time.perf_counter() - started
    started = time.perf_counter()
    loaded = load_compressed(folder / f"{name}.acz", base=factory)
    load_s = time.perf_counter() - started
    error = float((output(loaded, x) - output(student, x)).abs().max())
    methods = sorted({m for v in layers.values() for m in v})
    return (f"| {name} | {params(model):,} | {params(student):,} | {state:,} | {before:,} | "
            f"{after:,} | {state / after:.2f}x | {error:.1e} | {saved:.1f} / {load_s:.1f} | "
            f"{len(layers)}: {', '.join(methods)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {**FOREIGN, "minilm (real weights)": minilm()}
    lines = [
        "# Any model: parameters and artifact bytes before and after a mixed plan", "",
        f"python {sys.version.split()[0]}, torch {torch.__version__}, {platform.machine()}, "
        "1 thread; plans in autocompress/testing/foreign.py (MiniLM: 4-bit word embeddings, "
        "4-bit shared position embeddings, 8-bit Linears)", "",
        "| model | params | params after | float32 state bytes | artifact, uncompressed | "
        "artifact, compressed | ratio | max abs output diff (loaded vs compressed) | "
        "save / load s | planned layers: methods |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (factory, example, layers) in cases.items():
            lines.append(row(name, factory, example, layers, Path(tmp)))
            print(lines[-1], flush=True)
        for name, (factory, example, _) in FOREIGN.items():  # every layer that takes it
            lines.append(row(f"{name}, all 8-bit", factory, example,
                             eight_bit(factory, example), Path(tmp)))
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.output:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
