"""Remote profiler: time a model on the Ray node that has the hardware, wherever training runs.

The profiler of another target (``cpu-onnxruntime``, ``cuda``, ...) runs inside a Ray actor on
a node carrying that target's custom resource (``target:<name>`` unless told otherwise, e.g.
``ray start --resources '{"target:cpu-onnxruntime": 1}'``). The model travels as artifact bytes
(the compressed-artifact format, nothing unpickled) and the example as a tensor; the measurement
comes back with ``node`` set to the Ray node id it ran on.

One named, detached actor per resource (namespace ``autocompress``) serves every search and
trial of the cluster, one measurement at a time (``max_concurrency=1``): timings on a profiling
node must not overlap, and every candidate of a search is timed on the same device, so their
latencies compare. It reserves ``num_cpus`` CPUs (default: the timing threads) for as long as it
lives, so Ray places no other work on the cores it times on. :func:`release` ends it.

The actor is created with ``outside_trial``: from inside a Tune trial it would otherwise be
captured by the trial's placement group and could never reach the profiling node.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
import socket
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from autocompress.errors import ConfigError, invalid
from autocompress.hardware.base import BaseProfiler
from autocompress.hardware.config import Protocol
from autocompress.hardware.measurement import Measurement
from autocompress.hardware.registry import PROFILERS, get_profiler

NAMESPACE = "autocompress"
_BUILTIN_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
_PLACEMENT_GROUP_RESOURCE = re.compile(r"_group_(\d+_)?[0-9a-f]{20,}$")  # CPU_group_0_<pg id>


class RemoteProfiler(BaseProfiler):
    """Another target's profiler, run on the Ray node that carries its custom resource.

    Args:
        target: The wrapped target, e.g. ``cpu-onnxruntime``.
        threads: Timing threads of the wrapped profiler.
        protocol: Measurement protocol of the wrapped profiler.
        resource: The custom resource marking the profiling node (default ``target:<target>``).
        address: Ray address to connect to when this process is not connected yet (None: it
            must be, e.g. inside a trial or after ``ray.init``).
        timeout_s: Longest wait for one measurement, queueing and actor start included.
        num_cpus: CPUs the profiling actor reserves on its node (default: ``threads``).
        **options: Further options of the wrapped profiler (e.g. ``int8``).

    Like every profiler (its cache), an instance is not meant to be shared between threads.
    """

    name = "remote"

    def __init__(self, target: str = "", threads: int = 1, protocol: Protocol | None = None, *,
                 resource: str | None = None, address: str | None = None,
                 timeout_s: float = 300.0, num_cpus: float | None = None, **options: Any):
        super().__init__(threads, protocol)
        self.target, self.options = _check_target(target, options), options
        self.resource = resource or f"target:{target}"
        self.address, self.timeout_s = address, timeout_s
        self.num_cpus = threads if num_cpus is None else num_cpus

    @property
    def runtime(self) -> str:
        return f"{self.target} on the Ray node with {self.resource!r}"

    @property
    def timed(self) -> bool:  # noqa: D102  (the wrapped target times)
        return True

    def _key(self, artifact: bytes, example: torch.Tensor) -> str:
        settings = repr((self.target, self.resource, _fingerprint(self.options))).encode()
        return super()._key(artifact + settings, example)

    def _measure(self, model: nn.Module, example: torch.Tensor, size: int, artifact: bytes,
                 reference: nn.Module | None = None,
                 reference_artifact: bytes | None = None) -> Measurement:
        measurement, node = self._run(artifact, example.detach().cpu().contiguous(),
                                      reference_artifact)
        return replace(measurement, size_bytes=size, node=node)  # size: the artifact measured

    def _run(self, artifact: bytes, example: torch.Tensor,
             reference: bytes | None) -> tuple[Measurement, str]:
        ray = _connected(self.address)
        self._check_resource(ray)
        options = {"threads": self.threads, "protocol": self.protocol, **self.options}
        try:
            return self._call(ray, options, artifact, example, reference)
        except ray.exceptions.RayActorError:  # its node went away: a new actor, once
            return self._call(ray, options, artifact, example, reference)

    def _call(self, ray: Any, options: dict[str, Any], artifact: bytes,
              example: torch.Tensor, reference: bytes | None) -> tuple[Measurement, str]:
        paired = {"reference": reference} if reference else {}  # actors of older versions
        ref = self._actor().measure.remote(self.target, options, artifact, example, **paired)
        try:
            return ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            with contextlib.suppress(Exception):
                ray.cancel(ref)  # don't leave it queued on the profiling node
            raise TimeoutError(
                f"remote profiler: no measurement from the node with {self.resource!r} within "
                f"{self.timeout_s:g} s (node busy or gone, or fewer than {self.num_cpus:g} free "
                "CPUs there?)") from None

    def _check_resource(self, ray: Any) -> None:
        """Fail fast, instead of queueing forever, when no alive node has the resource."""
        total = ray.cluster_resources()
        if total.get(self.resource, 0) > 0:
            return
        custom = sorted(k for k in total if k not in _BUILTIN_RESOURCES
                        and not k.startswith(("node:", "accelerator_type:"))
                        and not _PLACEMENT_GROUP_RESOURCE.search(k)) or "none"
        raise ConfigError(
            f"hardware target 'remote': no alive Ray node carries resource {self.resource!r} "
            f"(start the profiling node with --resources '{{\"{self.resource}\": 1}}'); "
            f"custom resources in this cluster: {custom}")

    def _actor(self) -> Any:
        """The profiling node's actor, created on first use, outside any placement group."""
        from autocompress.placement import outside_trial

        return outside_trial(
            _actor_class(), name=actor_name(self.resource), namespace=NAMESPACE,
            get_if_exists=True, lifetime="detached", max_concurrency=1,
            num_cpus=self.num_cpus, resources={self.resource: 0.001},
        ).remote()


class ProfilingActor:
    """Runs on the profiling node: rebuilds the model from its artifact and measures it."""

    def __init__(self) -> None:
        self._profilers: dict[str, BaseProfiler] = {}

    def measure(self, target: str, options: dict[str, Any], artifact: bytes,
                example: torch.Tensor, reference: bytes | None = None
                ) -> tuple[Measurement, str]:
        """The wrapped target's measurement (paired with ``reference``) and this node's id."""
        import ray

        from autocompress.export.artifact import from_bytes

        # the search's own trial wrote these bytes: its base is the recipe's (trusted) model
        model = from_bytes(artifact, "remote profiler artifact", trust_code=True)
        paired = (from_bytes(reference, "remote profiler reference", trust_code=True)
                  if reference else None)
        measurement = self._profiler(target, options).measure(model, example, reference=paired)
        return measurement, ray.get_runtime_context().get_node_id()

    def _profiler(self, target: str, options: dict[str, Any]) -> BaseProfiler:
        """One profiler per target and settings, so its cache serves repeats from any driver."""
        key = repr((target, _fingerprint(options)))
        if key not in self._profilers:
            if len(self._profilers) >= 8:
                self._profilers.pop(next(iter(self._profilers)))
            self._profilers[key] = get_profiler(target, **options)
        return self._profilers[key]


def actor_name(resource: str) -> str:
    """Name of the profiling actor of ``resource`` (in namespace ``autocompress``)."""
    return f"autocompress-profiler:{resource}"


def release(resource: str) -> bool:
    """End the profiling actor of ``resource`` (frees its CPUs); False if there was none."""
    import ray

    try:
        ray.kill(ray.get_actor(actor_name(resource), namespace=NAMESPACE))
    except ValueError:
        return False
    return True


def _actor_class() -> Any:
    import ray

    return ray.remote(ProfilingActor)


def _connected(address: str | None) -> Any:
    """The ``ray`` module, connected (to ``address`` if not yet), or a ConfigError."""
    try:
        import ray
    except ImportError:
        raise ConfigError("hardware target 'remote' needs Ray: pip install 'ray[tune]'") from None
    if ray.is_initialized():
        return ray
    if address is None:
        raise ConfigError("hardware target 'remote': Ray is not initialised; call "
                          "ray.init(address=...) first or give the profiler an address")
    if not _listening(address):  # ray.init would retry for minutes
        raise ConfigError(f"hardware target 'remote': no Ray cluster answers at {address!r}")
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"hardware target 'remote': cannot connect to Ray at {address!r}: "
                          f"{str(exc).splitlines()[0]}") from exc
    return ray


def _listening(address: str) -> bool:
    """Whether something accepts connections at ``[ray://]host:port`` (True for ``auto``)."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not port.isdigit():
        return True  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError:
        return False
    return True


def _check_target(target: str, options: dict[str, Any]) -> str:
    """``target`` if it is a registered, non-remote target whose options these are."""
    valid = sorted(n for n in PROFILERS if n != RemoteProfiler.name)
    if target not in valid:
        raise invalid("remote.target", target, valid)
    accepted = set(inspect.signature(PROFILERS[target].__init__).parameters) - {"self"}
    for key in options:
        if key not in accepted:
            raise invalid(f"remote.{key}", options[key],
                          f"an option of {target!r}: {', '.join(sorted(accepted))}")
    return target


def _fingerprint(options: dict[str, Any]) -> tuple:
    """A hashable, exact summary of options (tensors by a digest of their bytes)."""
    def one(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().contiguous().numpy().tobytes()
            return (tuple(value.shape), hashlib.sha256(data).hexdigest())
        return value

    return tuple(sorted((k, one(v)) for k, v in options.items()))
