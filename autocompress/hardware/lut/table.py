"""Latency lookup table (nn-Meter style): predict a plan's latency without building it.

A :class:`LatencyTable` belongs to one target and its settings (runtime, threads, batch size).
Each entry is the latency of one :class:`~autocompress.hardware.lut.kernels.Kernel` (an operator
call keyed by its shapes, bit width and sparsity) measured *in isolation on the target*, in the
target's runtime with its profiler's settings: ONNX Runtime kernels are timed in ONNX Runtime by
its profiler, eager ones in PyTorch, each in rotation with other kernels (see ``lut.timing``:
timed alone in a hot loop, small eager layers look faster than they run in a model).

What is not a kernel is accounted for explicitly, so a prediction lists every part and its
``latency_ms`` is exactly their sum:

* ``layer`` parts: one per leaf-module call, the entry of its kernel. An entry is the isolated
  median minus the runtime's *empty* median on the same input (a one-layer model minus a model
  that does almost nothing), so per-inference overhead is not counted once per layer.
* ``overhead``: the empty model's median on the model's input, once per inference.
* ``calls``: eager runtimes pay for every ``nn.Module`` call (containers included); the number of
  calls times one call's measured cost. Exported runtimes inline modules, so they have none.
* ``residual``: per model family, what the measured latency differs from the sum of the parts
  above by: functional glue in ``forward`` (attention matmuls, additions, reshapes), a constant,
  and cache or fusion effects between layers, a share of the rest (:class:`Residual`). It is
  calibrated from a few real measurements of the base model (and optionally of skeletons of a
  few plans); :func:`~autocompress.hardware.lut.error.error_report` shows how well it holds.

The table is saved as JSON with a fingerprint of the device and runtime; loading it elsewhere is
refused unless asked to start afresh.
"""

from __future__ import annotations

import copy
import json
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError, invalid
from autocompress.export.deploy import deploy_layer
from autocompress.hardware.config import Protocol
from autocompress.hardware.lut.kernels import (
    CALL,
    EMPTY,
    Kernel,
    LayerKernel,
    Trace,
    plan_kernels,
    plan_skeleton,
    trace,
)
from autocompress.hardware.lut.parts import Entry, Part, Prediction, Residual
from autocompress.hardware.lut.timing import Isolated, Probe, sweep
from autocompress.hardware.onnxruntime import OnnxRuntimeCPUProfiler
from autocompress.hardware.registry import get_profiler
from autocompress.methods import CompressionPlan

FORMAT, VERSION = "autocompress-latency-table", 2  # 2: eager kernels of the deployed model
# Kernels are short: many timed calls (one per sweep), a short cap per kernel.
KERNEL_PROTOCOL = Protocol(warmup=10, min_runs=30, max_runs=300, max_seconds=0.1,
                           target_spread=0.03, noisy_spread=0.25)
TIMED_TARGETS = ("cpu-torch", "cpu-onnxruntime")
CALL_KERNEL = Kernel(CALL, (((1,), "torch.float32"),))  # one nn.Module call (eager runtimes)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def family(model: nn.Module, example: torch.Tensor) -> str:
    """The residual's key: the model's factory reference (or class) and its input."""
    base = getattr(model, "_autocompress_base", None) or {"class": type(model).__qualname__}
    return f"{json.dumps(base, sort_keys=True)}|{tuple(example.shape)}:{example.dtype}"


class LatencyTable:
    """Per-kernel latencies of one target, measured on demand; predicts models and plans.

    Args:
        target: A timed CPU target, ``cpu-torch`` or ``cpu-onnxruntime`` (float or int8).
        threads: Intra-op threads of every measurement.
        batch_size: The batch size predictions are for (kernels are keyed by full shapes).
        int8: ONNX Runtime int8: True / ``"static"`` the QDQ graph, ``"dynamic"`` the
            dynamically quantized one (``cpu-onnxruntime`` only; ``"auto"`` is timed static).
        protocol: Timing protocol of kernel measurements (``KERNEL_PROTOCOL`` by default).
        model_protocol: Timing protocol of whole-model measurements (calibration).
        rounds: Timings per entry; the lowest median is kept (see :meth:`_time_all`).
    """

    def __init__(self, target: str = "cpu-torch", *, threads: int = 1, batch_size: int = 1,
                 int8: bool | str = False, protocol: Protocol | None = None,
                 model_protocol: Protocol | None = None, rounds: int = 3):
        if target not in TIMED_TARGETS:
            raise invalid("latency_table.target", target, TIMED_TARGETS)
        if batch_size < 1:
            raise invalid("latency_table.batch_size", batch_size, "an integer >= 1")
        if rounds < 1:
            raise invalid("latency_table.rounds", rounds, "an integer >= 1")
        if int8 and target != "cpu-onnxruntime":
            raise invalid("latency_table.int8", int8, "False unless target is cpu-onnxruntime")
        self.target, self.threads, self.batch_size, self.int8 = target, threads, batch_size, int8
        self.rounds = rounds
        # the dynamic int8 form, or static int8 (which also stands for int8: auto's forms)
        options = {"int8": "dynamic" if int8 == "dynamic" else True} if int8 else {}
        self.kernel_profiler = get_profiler(target, threads=threads,
                                            protocol=protocol or KERNEL_PROTOCOL, **options)
        self.profiler = get_profiler(target, threads=threads, protocol=model_protocol,
                                     **options)
        self.entries: dict[str, Entry] = {}
        self.residuals: dict[str, Residual] = {}

    @property
    def exported(self) -> bool:
        """True when the runtime runs an exported graph (modules inlined, layers dense)."""
        return isinstance(self.profiler, OnnxRuntimeCPUProfiler)

    def key(self, kernel: Kernel) -> str:
        """The table key of ``kernel`` on this runtime.

        Both runtimes run the deployed model (``autocompress.export.deploy``): compressed and
        hashed layers as the dense layers they decode to (circulant ones too in an exported
        graph; eager PyTorch keeps their FFT form). Dense kernels do not depend on how many
        weights are zero: a sparse-kernel runtime would keep the sparsity.
        """
        return kernel.deployed_as(self.exported).key

    def fingerprint(self) -> dict[str, Any]:
        """The device and runtime the entries are valid for."""
        return {"format_version": VERSION, "target": self.target,
                "runtime": self.profiler.runtime, "torch": torch.__version__,
                "threads": self.threads, "batch_size": self.batch_size, "cpu": cpu_model(),
                "cores": os.cpu_count(), "machine": platform.machine(),
                "system": platform.system()}

    # --- measuring ---------------------------------------------------------------------------

    def _time_all(self, jobs: dict[str, tuple[nn.Module, torch.Tensor]],
                  model: bool = False) -> dict[str, dict[str, float]]:
        """Time every job in ``rounds`` rounds and keep each one's fastest round.

        Other processes on the device only ever add time: the lowest of medians taken apart
        in time estimates the undisturbed latency better than one long timing would. Eager
        kernels are timed in rotation with each other (see ``lut.timing``). Whole models, and
        the kernels of an exported runtime, are timed by the profiler itself: a session runs
        its nodes back to back in native code, so a kernel is as hot alone as in the model.
        """
        best: dict[str, dict[str, float]] = {}
        for _ in range(self.rounds):
            if model or self.exported:
                profiler = self.profiler if model else self.kernel_profiler
                timed = {k: profiler.time_runs(m, x) for k, (m, x) in jobs.items()}
            else:
                timed = sweep(self.kernel_profiler, jobs, self.kernel_profiler.protocol)
            for key, t in timed.items():
                runs = t["runs"] + best.get(key, {}).get("runs", 0.0)
                if key not in best or t["latency_ms"] < best[key]["latency_ms"]:
                    best[key] = t
                best[key] = {**best[key], "runs": runs}
        return best

    def fill(self, layers: Iterable[LayerKernel],
             inputs: Iterable[tuple[tuple[tuple[int, ...], str], ...]] = (), *,
             refresh: bool = False) -> int:
        """Measure every kernel of ``layers`` that has no entry, in isolation on the target.

        Args:
            layers: Traced calls (their modules are copied and timed alone).
            inputs: Input signatures whose *empty* entry is wanted as well.
            refresh: Time the kernels that have an entry too, and keep the lower raw timing:
                rounds taken minutes apart see the device undisturbed more often.

        Returns:
            How many kernels were timed.
        """
        todo: dict[str, LayerKernel] = {}
        for layer in layers:
            key = self.key(layer.kernel)
            if (refresh or key not in self.entries) and key not in todo:
                if len(layer.kernel.inputs) != 1:
                    raise ConfigError(f"{layer.name}: a leaf module with "
                                      f"{len(layer.kernel.inputs)} tensor inputs cannot be "
                                      "timed in isolation (one is supported)")
                todo[key] = layer
        signatures = [*inputs, *(layer.kernel.inputs for layer in todo.values())]
        call = not self.exported and (refresh or CALL_KERNEL.key not in self.entries)
        if call:  # one more nested call than the empty run on the same input
            signatures.append(CALL_KERNEL.inputs)
        empties = {Kernel(EMPTY, s).key: Kernel(EMPTY, s) for s in signatures}
        probe = Probe() if self.exported else nn.Identity()
        jobs = {k: (Isolated(probe), e.example()[0]) for k, e in empties.items()
                if refresh or k not in self.entries}
        with torch.inference_mode(False):  # copies of inference tensors track no versions
            jobs.update({k: (Isolated(self._deployed(layer.module)), layer.kernel.example()[0])
                         for k, layer in todo.items()})
        if call:
            jobs[CALL_KERNEL.key] = (Isolated(Isolated(probe)), CALL_KERNEL.example()[0])
        timed = self._time_all(jobs)
        for key in empties.keys() & timed.keys():
            self.entries[key] = self._lower(key, timed[key], 0.0)
        for key, kernel in [*((k, lk.kernel) for k, lk in todo.items()),
                            *([(CALL_KERNEL.key, CALL_KERNEL)] if call else [])]:
            empty = self.entries[Kernel(EMPTY, kernel.inputs).key]
            self.entries[key] = self._lower(key, timed[key], empty.measured_ms)
        return len(todo)

    def _deployed(self, module: nn.Module) -> nn.Module:
        """A copy of ``module`` as the deployed model runs it (what its key names)."""
        return deploy_layer(module, dense_circulant=self.exported) or copy.deepcopy(module)

    def _lower(self, key: str, t: dict[str, float], empty_ms: float) -> Entry:
        """The entry from timing ``t`` or the existing one's raw timing, whichever is lower."""
        old = self.entries.get(key)
        if old is not None and old.measured_ms <= t["latency_ms"]:
            raw, spread = old.measured_ms, old.spread
        else:
            raw, spread = t["latency_ms"], t["latency_spread"]
        runs = int(t["runs"]) + (old.runs if old is not None else 0)
        return Entry(raw - empty_ms, raw, spread, runs)

    def calibrate(self, model: nn.Module, example: torch.Tensor,
                  plans: Sequence[CompressionPlan] = (),
                  measured_ms: Sequence[float] | None = None) -> Residual:
        """Fit the residual of ``model``'s family to measurements of it and of some plans.

        Calibrate on the base (uncompressed) model, and optionally on a few plans of it, timed
        as unfitted skeletons (:func:`~autocompress.hardware.lut.kernels.plan_skeleton`: their
        shapes, not their weights, set the latency). With the base alone the residual is a
        constant and the base model is predicted as measured; with plans it also gets a scale
        (see :class:`Residual`).

        Args:
            model: The base model.
            example: Its input batch.
            plans: Plans whose skeletons are measured as well (none by default).
            measured_ms: Latencies of the base model then of each plan as measured elsewhere on
                this target (e.g. the lowest of several profiler medians); timed here with
                ``rounds`` rounds when None.
        """
        self._check_batch(example)
        models = [model, *(plan_skeleton(model, plan, example) for plan in plans)]
        if measured_ms is None:
            timed = self._time_all({str(i): (m, example) for i, m in enumerate(models)},
                                   model=True)
            measured_ms = [timed[str(i)]["latency_ms"] for i in range(len(models))]
        if len(measured_ms) != len(models):
            raise invalid("calibrate.measured_ms", list(measured_ms),
                          f"{len(models)} latencies: the base model's, then each plan's")
        rests = [sum(p.latency_ms for p in self._parts(trace(m, example), example,
                                                       measure_missing=True)[0])
                 for m in models]
        residual = Residual.fit(list(zip(rests, measured_ms, strict=True)))
        self.residuals[family(model, example)] = residual
        return residual

    # --- predicting --------------------------------------------------------------------------

    def predict_model(self, model: nn.Module, example: torch.Tensor, *,
                      measure_missing: bool = True) -> Prediction:
        """Predict a built model's latency from its traced kernels.

        The residual of its family must have been calibrated (on the base model); otherwise
        it is listed as missing (calibrating on the model itself would only echo its timing).
        """
        self._check_batch(example)
        return self._predict(trace(model, example), family(model, example), example,
                             measure_missing)

    def predict_plan(self, model: nn.Module, plan: CompressionPlan, example: torch.Tensor, *,
                     measure_missing: bool = True) -> Prediction:
        """Predict ``apply_plan(model, plan)``'s latency without building it.

        ``model`` is the base model; with ``measure_missing`` its family's residual is
        calibrated on it when the table has none, and missing kernels are measured.
        """
        self._check_batch(example)
        if measure_missing and family(model, example) not in self.residuals:
            self.calibrate(model, example)
        return self._predict(plan_kernels(model, plan, example), family(model, example),
                             example, measure_missing)

    def _predict(self, traced: Trace, fam: str, example: torch.Tensor,
                 measure_missing: bool) -> Prediction:
        parts, missing = self._parts(traced, example, measure_missing)
        if fam in self.residuals:
            rest = sum(p.latency_ms for p in parts)
            parts.append(Part("residual", "residual", fam, self.residuals[fam].value(rest)))
        else:
            missing.append(f"residual:{fam}")
        return Prediction(self.target, tuple(parts), tuple(missing))

    def _parts(self, traced: Trace, example: torch.Tensor,
               measure_missing: bool) -> tuple[list[Part], list[str]]:
        inputs = ((tuple(example.shape), str(example.dtype)),)
        if measure_missing:
            self.fill(traced.layers, [inputs])
        parts, missing = [], []
        empty = Kernel(EMPTY, inputs).key
        if empty in self.entries:
            parts.append(Part("overhead", "overhead", empty, self.entries[empty].latency_ms))
        else:
            missing.append(empty)
        if not self.exported and traced.calls:
            call = self.entries.get(CALL_KERNEL.key)
            if call is not None:
                parts.append(Part("module calls", "calls", CALL_KERNEL.key,
                                  traced.calls * call.latency_ms, traced.calls))
            else:
                missing.append(CALL_KERNEL.key)
        for layer in traced.layers:
            key = self.key(layer.kernel)
            if key in self.entries:
                parts.append(Part(layer.name, "layer", key, self.entries[key].latency_ms))
            else:
                missing.append(key)
        return parts, missing

    def _check_batch(self, example: torch.Tensor) -> None:
        if example.shape[0] != self.batch_size:
            raise invalid("example batch size", int(example.shape[0]),
                          f"the table's batch size {self.batch_size}")

    # --- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The table as plain JSON-able data."""
        return {"format": FORMAT, "version": VERSION, "fingerprint": self.fingerprint(),
                "settings": {"target": self.target, "threads": self.threads,
                             "batch_size": self.batch_size, "int8": self.int8,
                             "rounds": self.rounds},
                "protocol": asdict(self.kernel_profiler.protocol),
                "entries": {k: asdict(v) for k, v in sorted(self.entries.items())},
                "residuals": {k: asdict(v) for k, v in sorted(self.residuals.items())}}

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike, *, rebuild: bool = False) -> LatencyTable:
        """Read a table; one measured on another device or runtime is refused.

        Args:
            path: A file written by :meth:`save`.
            rebuild: On a fingerprint mismatch return an empty table with the same settings
                (to be measured again here) instead of raising.

        Raises:
            ConfigError: The file is not a latency table, or its fingerprint differs from this
                machine's (naming each differing field) and ``rebuild`` is False.
        """
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"latency table {path}: cannot read it ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"latency table {path}: not an {FORMAT} file")
        protocol = Protocol(**data.get("protocol", {})) if data.get("protocol") else None
        table = cls(**data["settings"], protocol=protocol)
        here, there = table.fingerprint(), data.get("fingerprint", {})
        diff = [f"{k}: {there.get(k)!r} in the table, {here[k]!r} here"
                for k in here if there.get(k) != here[k]]
        if diff and not rebuild:
            raise ConfigError(f"latency table {path}: measured on another device or runtime "
                              f"({'; '.join(diff)}); measure it again here "
                              "(LatencyTable.load(path, rebuild=True) starts it empty)")
        if not diff:
            table.entries = {k: Entry(**v) for k, v in data["entries"].items()}
            table.residuals = {k: Residual(v["constant_ms"], v["scale"],
                                           tuple(tuple(p) for p in v["points"]))
                               for k, v in data["residuals"].items()}
        return table


__all__ = ["Entry", "LatencyTable", "Part", "Prediction", "Residual", "cpu_model", "family"]
