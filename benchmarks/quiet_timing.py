"""How much a training process next door distorts latency, with and without a quiet node.

Usage: python benchmarks/quiet_timing.py [--rounds N] [--model digits|lenet5] [--batch B]
       [--trainers K]

Times a model (the quickstart's digits CNN, or LeNet-5 on MNIST; eager PyTorch, 1 thread, the
default protocol) in rounds under three conditions and prints the median of the rounds' medians:

* ``alone``: nothing else runs (before and after the trainer's life, interleaved halves);
* ``trainer, quiet``: ``K`` other processes train a model in batches (1 thread each), each
  batch holding the node shared (as fine-tuning in a search does); timings hold it
  exclusively (the default);
* ``trainer, not quiet``: the same trainer, timings that do not wait (``quiet: false``).

The two trainer conditions alternate round by round, so slow drifts of a shared machine hit both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

import torch

from autocompress.hardware.profilers import Protocol, get_profiler
from autocompress.zoo import build_model

TRAINER = textwrap.dedent("""
    import sys, time, torch
    from autocompress.hardware.quiet import quiet_node
    torch.set_num_threads(1)
    from autocompress.zoo import build_model
    model = build_model("lenet5_caffe")  # LeNet-5 on MNIST-sized batches, as a search trains
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    print("training", flush=True)
    batches, end = 0, time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        with quiet_node().work():
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        batches += 1
    print(batches, flush=True)
""")


MODELS = {"digits": ("digits_cnn", {"width": 16}, (1, 8, 8)),
          "lenet5": ("lenet5_caffe", {}, (1, 28, 28))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--model", choices=sorted(MODELS), default="digits")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--trainers", type=int, default=2)
    args = parser.parse_args()
    name, kwargs, shape = MODELS[args.model]
    model, x = build_model(name, **kwargs).eval(), torch.randn(args.batch, *shape)
    quiet = get_profiler("cpu-torch", protocol=Protocol(max_seconds=1.0))
    loud = get_profiler("cpu-torch", protocol=Protocol(max_seconds=1.0, quiet_timeout_s=0))

    def timed(profiler) -> tuple[float, bool]:
        profiler.clear_cache()
        m = profiler.measure(model, x)
        return m.latency_ms, m.quiet

    half = max(args.rounds // 2, 1)
    alone = [timed(quiet)[0] for _ in range(half)]
    budget = 4.0 * args.rounds + 10
    trainers = [subprocess.Popen([sys.executable, "-c", TRAINER, str(budget)],
                                 stdout=subprocess.PIPE, text=True) for _ in range(args.trainers)]
    for trainer in trainers:
        assert trainer.stdout.readline().strip() == "training"
    time.sleep(1.0)
    with_quiet, without, flags = [], [], []
    for _ in range(args.rounds):
        latency, was_quiet = timed(quiet)
        with_quiet.append(latency)
        flags.append(was_quiet)
        without.append(timed(loud)[0])
    for trainer in trainers:
        trainer.kill()
        trainer.wait()
    alone += [timed(quiet)[0] for _ in range(half)]
    report(args, alone, with_quiet, without, flags)


def report(args, alone, with_quiet, without, flags) -> None:
    base = statistics.median(alone)
    print(f"## Latency next to {args.trainers} LeNet-5 training processes ({args.rounds} "
          f"rounds, {MODELS[args.model][0]}, cpu-torch, 1 thread, batch {args.batch})\n")
    print(f"- machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}")
    print(f"- timings that found the node quiet: {sum(flags)}/{len(flags)}\n")
    print("| condition | median of round medians (ms) | min - max (ms) | vs alone |")
    print("|---|---|---|---|")
    for name, values in (("alone", alone), ("trainer, quiet (default)", with_quiet),
                         ("trainer, not quiet", without)):
        m = statistics.median(values)
        print(f"| {name} | {m:.4f} | {min(values):.4f} - {max(values):.4f} | {m / base:.2f}x |")


if __name__ == "__main__":
    main()
