r"""A multi-node Ray cluster on one machine, for development and tests.

Each node is a separate ``ray start`` with its own temp dir (two nodes sharing one broke
``import torch`` in job drivers), its own free ports, capped logical memory and object store,
and its own custom resources (``target:cpu-onnxruntime``, ``trainer``, ...), so scheduling by
resource behaves as on a real cluster. Everything lives under one base dir, which also holds
``cluster.json`` (address, nodes, process groups) for ``stop`` and ``status``.

``stop`` never runs a global ``ray stop`` (that would kill every Ray instance on the machine,
other people's included): it signals only this cluster's processes, found by the process groups
recorded at start and by a marker in their environment.

Token authentication (Ray's default for new clusters) stays on: the nodes use the token of
``~/.ray/auth_token`` (generated if missing) unless ``RAY_AUTH_MODE`` says otherwise, and
:meth:`LocalCluster.connect` enables the same mode in the driver.

Usage::

    python cluster/local_cluster.py start --workers 1 --head-resources '{"trainer": 1}' \
        --worker-resources '{"target:cpu-onnxruntime": 1}'
    python cluster/local_cluster.py status
    python cluster/local_cluster.py stop

    with LocalCluster(workers=[NodeSpec(resources={"target:cpu-onnxruntime": 1})]) as cluster:
        cluster.connect()
        ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

MARKER = "AUTOCOMPRESS_LOCAL_CLUSTER"  # environment variable naming the cluster's base dir
STATE = "cluster.json"
DEFAULT_DIR = Path(tempfile.gettempdir()) / f"ac-cluster-{os.getuid()}"
MAX_BASE_DIR = 60  # Ray's unix socket paths (base/node/session_.../sockets/...) must fit 107 bytes


@dataclass(frozen=True)
class NodeSpec:
    """One node of the local cluster.

    Attributes:
        name: Node name (Ray's ``NodeName``), unique within the cluster (workers default to
            ``worker-<i>``).
        num_cpus: Logical CPUs the node offers.
        memory_mb: Logical memory the node offers to tasks (a scheduling cap; not enforced).
        object_store_mb: Shared-memory object store size (Ray requires at least 75 MiB).
        resources: Custom resources, e.g. ``{"target:cpu-onnxruntime": 1}``.
    """

    name: str = ""
    num_cpus: float = 1
    memory_mb: int = 2048
    object_store_mb: int = 256
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class NodeState:
    """A started node: its spec, Ray node id and process group."""

    spec: NodeSpec
    pgid: int
    node_id: str = ""


class LocalCluster:
    """A head plus workers started with ``ray start`` on this machine; a context manager.

    Args:
        workers: Worker node specs (dicts are turned into :class:`NodeSpec`; names default to
            ``worker-1``, ``worker-2``, ...).
        head_cpus: Logical CPUs of the head node.
        head_resources: Custom resources of the head node.
        memory_mb: Logical memory of the head node.
        object_store_mb: Object store of the head node.
        base_dir: Where temp dirs, logs and ``cluster.json`` go (a fresh dir under /tmp if None).
            Kept short: Ray's socket paths under it must fit in 107 bytes.
        env: Extra environment variables of every node (and so of every task and actor).
        dashboard: Start the dashboard UI (the Job Submission server needs it).
        timeout_s: How long to wait for the nodes to come up.
    """

    def __init__(self, workers: Sequence[NodeSpec | dict] = (), *, head_cpus: float = 1,
                 head_resources: dict[str, float] | None = None, memory_mb: int = 2048,
                 object_store_mb: int = 256, base_dir: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, dashboard: bool = False,
                 timeout_s: float = 120.0):
        self.head = NodeSpec("head", head_cpus, memory_mb, object_store_mb,
                             dict(head_resources or {}))
        self.workers = [_spec(w, f"worker-{i}") for i, w in enumerate(workers, 1)]
        names = [n.name for n in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        self.base_dir = Path(base_dir) if base_dir else None
        self.env, self.dashboard, self.timeout_s = dict(env or {}), dashboard, timeout_s
        self.auth_mode = os.environ.get("RAY_AUTH_MODE", "token")
        self.address = ""
        self.nodes: list[NodeState] = []
        self._owns_dir = base_dir is None
        self.start_s = 0.0
        self.dashboard_port = 0

    @property
    def specs(self) -> list[NodeSpec]:
        """Head first, then the workers."""
        return [self.head, *self.workers]

    @property
    def node_ids(self) -> dict[str, str]:
        """Ray node id of each node, by node name."""
        return {n.spec.name: n.node_id for n in self.nodes}

    def start(self) -> LocalCluster:
        """Start every node and wait until all are alive; stops what started on failure."""
        started = time.perf_counter()
        self.base_dir = _make_base_dir(self.base_dir)
        if self.auth_mode == "token":
            _ensure_token()
        try:
            self._launch()
            self._save()  # so that `stop` finds it even if this process dies while waiting
            self._wait_alive()
            if self.dashboard:
                self._wait_dashboard()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.perf_counter() - started
        self._save()
        return self

    def _launch(self) -> None:
        ip, ports = _node_ip(), _free_ports(3 + 6 * len(self.specs))
        self.address = f"{ip}:{ports.pop()}"
        env = {**os.environ, **self.env, MARKER: str(self.base_dir),
               "RAY_AUTH_MODE": self.auth_mode}
        self._run([self.head], ports, env)
        self._run(self.workers, ports, env)  # together: they only need the head's GCS

    def _run(self, specs: list[NodeSpec], ports: list[int], env: dict[str, str]) -> None:
        procs = [(spec, _popen(self._args(spec, ports), self._dir(spec), env)) for spec in specs]
        self.nodes += [NodeState(spec, proc.pid) for spec, proc in procs]
        for spec, proc in procs:
            if proc.wait(timeout=self.timeout_s) != 0:
                raise RuntimeError(f"ray start of node {spec.name!r} failed:\n"
                                   f"{_tail(self._dir(spec) / 'start.log')}")

    def _args(self, spec: NodeSpec, ports: list[int]) -> list[str]:
        args = [str(_ray_bin()), "start", "--temp-dir", str(self._dir(spec)),
                "--node-name", spec.name, "--num-cpus", str(spec.num_cpus),
                "--memory", str(spec.memory_mb * 2**20),
                "--object-store-memory", str(spec.object_store_mb * 2**20),
                "--resources", json.dumps(spec.resources), "--disable-usage-stats",
                "--min-worker-port", "0", "--max-worker-port", "0",  # random, no clashes
                "--log-style", "record"]
        for flag in ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                     "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port"):
            args += [f"--{flag}", str(ports.pop())]
        if spec is not self.head:
            return [*args, "--address", self.address]
        self.dashboard_port = ports.pop()
        return [*args, "--head", "--port", self.address.rsplit(":", 1)[1],
                "--include-dashboard", str(self.dashboard).lower(),
                "--dashboard-port", str(self.dashboard_port),
                "--ray-client-server-port", str(ports.pop())]

    def _dir(self, spec: NodeSpec) -> Path:
        return self.base_dir / spec.name

    def _wait_alive(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            alive = alive_nodes(self.address, self.auth_mode)
            if all(n.spec.name in alive for n in self.nodes):
                for n in self.nodes:
                    n.node_id = alive[n.spec.name]
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not alive after {self.timeout_s} s: only "
                                   f"{sorted(alive)} of {[n.spec.name for n in self.nodes]}")
            time.sleep(0.2)

    def _wait_dashboard(self) -> None:
        """The job API answers a little after the head is alive: wait for it."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answers (401 without the token: token auth is on)
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no dashboard at {self.dashboard_url} after "
                                       f"{self.timeout_s} s") from None
                time.sleep(0.3)

    def _save(self) -> None:
        state = {"address": self.address, "auth_mode": self.auth_mode,
                 "start_s": round(self.start_s, 2),
                 "nodes": [{**asdict(n.spec), "node_id": n.node_id, "pgid": n.pgid}
                           for n in self.nodes]}
        (self.base_dir / STATE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, base_dir: str | os.PathLike) -> LocalCluster:
        """The cluster started earlier (perhaps by another process) under ``base_dir``."""
        state = json.loads((Path(base_dir) / STATE).read_text())
        specs = [NodeSpec(**{k: v for k, v in n.items() if k not in ("node_id", "pgid")})
                 for n in state["nodes"]]
        cluster = cls(specs[1:], base_dir=base_dir)
        cluster.head = specs[0]
        cluster.address, cluster.auth_mode = state["address"], state["auth_mode"]
        cluster.start_s = state.get("start_s", 0.0)
        cluster.nodes = [NodeState(s, n["pgid"], n["node_id"])
                         for s, n in zip(specs, state["nodes"], strict=True)]
        return cluster

    def connect(self, **init_kwargs: Any) -> Any:
        """``ray.init`` this process as a driver of the cluster (with the cluster's auth mode)."""
        import ray

        use_auth_mode(self.auth_mode)
        init_kwargs.setdefault("log_to_driver", False)
        return ray.init(address=self.address, **init_kwargs)

    @property
    def dashboard_url(self) -> str:
        """The head's dashboard / Job Submission API (``autocompress submit --address``).

        Ray binds the dashboard to loopback unless told otherwise: reach it from this host.
        """
        return f"http://127.0.0.1:{self.dashboard_port}"

    def kill_node(self, name: str) -> int:
        """SIGKILL every process of one node (a node failure); returns how many."""
        node = next((n for n in self.nodes if n.spec.name == name), None)
        if node is None:
            raise ValueError(f"no node {name!r}; nodes: {[n.spec.name for n in self.nodes]}")
        pids = cluster_pids(str(self._dir(node.spec)), {node.pgid}, marker=False)
        _signal(pids, signal.SIGKILL)
        return len(pids)

    def pids(self) -> list[int]:
        """Live processes of this cluster (zombies excluded)."""
        if self.base_dir is None:
            return []
        return cluster_pids(str(self.base_dir), {n.pgid for n in self.nodes})

    def stop(self, grace_s: float = 2.0) -> int:
        """Terminate this cluster's processes (SIGKILL after ``grace_s``); returns how many."""
        pids = self.pids()
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        _signal(self.pids(), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pids():
            raise RuntimeError(f"processes of {self.base_dir} survived SIGKILL: {self.pids()}")
        return len(pids)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.stop()
        if self._owns_dir and exc_type is None:  # keep the logs of a failure
            shutil.rmtree(self.base_dir, ignore_errors=True)


def _spec(worker: NodeSpec | dict, name: str) -> NodeSpec:
    spec = worker if isinstance(worker, NodeSpec) else NodeSpec(**worker)
    return spec if spec.name else replace(spec, name=name)


def _make_base_dir(base_dir: Path | None) -> Path:
    if base_dir is None:
        return Path(tempfile.mkdtemp(prefix="ac-ray-"))
    if len(str(base_dir.resolve())) > MAX_BASE_DIR:
        raise ValueError(f"base dir {base_dir} is longer than {MAX_BASE_DIR} characters: Ray's "
                         "socket paths under it would not fit")
    base_dir.mkdir(parents=True, exist_ok=True)
    return base_dir.resolve()


def _ray_bin() -> Path:
    """The ``ray`` CLI of this interpreter's environment (not whichever is first on PATH)."""
    return Path(sys.executable).parent / "ray"


def _node_ip() -> str:
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (held open together so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _popen(args: list[str], node_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Run ``ray start`` in a new session: its daemons keep this process group id."""
    node_dir.mkdir(parents=True, exist_ok=True)
    with open(node_dir / "start.log", "w") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _ensure_token() -> None:
    """Create Ray's default auth token (``~/.ray/auth_token``) unless a token is configured."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if not (Path.home() / ".ray" / "auth_token").exists():
        subprocess.run([str(_ray_bin()), "get-auth-token", "--generate"], check=True,
                       capture_output=True)


def use_auth_mode(mode: str) -> None:
    """Make this process use Ray's ``mode`` auth (Ray reads it once; refresh as ray.init does)."""
    if os.environ.get("RAY_AUTH_MODE") == mode:
        return
    os.environ["RAY_AUTH_MODE"] = mode
    from ray._raylet import Config

    Config.initialize("")


def alive_nodes(address: str, auth_mode: str = "token") -> dict[str, str]:
    """Node id of each alive node of the cluster at ``address``, by node name."""
    from ray._raylet import GcsClient

    if not _listening(address):
        return {}  # a GcsClient would retry for 40 s
    use_auth_mode(auth_mode)
    try:
        info = GcsClient(address=address).get_all_node_info(timeout=5)
    except Exception:  # GCS not up yet (or gone): no alive node
        return {}
    return {n.node_name: node_id.hex() for node_id, n in info.items() if n.state == 0}


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def cluster_pids(base_dir: str, pgids: Iterable[int] = (), marker: bool = True) -> list[int]:
    """Live processes in ``pgids`` or carrying ``base_dir`` on their command line.

    With ``marker``, also those whose environment carries the cluster's marker for it.
    """
    pgids, found = set(pgids), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            if _belongs(entry, base_dir, pgids, marker):
                found.append(int(entry.name))
    return found


def _belongs(proc: Path, base_dir: str, pgids: set[int], marker: bool = True) -> bool:
    try:
        stat = (proc / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] == "Z":
            return False  # a zombie holds nothing; its parent may never reap it
        if int(fields[2]) in pgids:
            return True
        if base_dir.encode() in (proc / "cmdline").read_bytes():
            return True
        return marker and f"{MARKER}={base_dir}".encode() in (proc / "environ").read_bytes()
    except (OSError, ValueError, IndexError):
        return False  # gone, or another user's


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="the cluster's base dir")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--head-cpus", type=float, default=1)
    parser.add_argument("--worker-cpus", type=float, default=1)
    parser.add_argument("--head-resources", type=json.loads, default={})
    parser.add_argument("--worker-resources", type=json.loads, default={},
                        help="JSON custom resources of every worker")
    parser.add_argument("--memory-mb", type=int, default=2048, help="per node")
    parser.add_argument("--object-store-mb", type=int, default=256, help="per node")
    parser.add_argument("--dashboard", action="store_true")
    return parser.parse_args(argv)


def _start(args: argparse.Namespace) -> LocalCluster:
    if (Path(args.dir) / STATE).exists():
        if LocalCluster.load(args.dir).pids():
            raise SystemExit(f"a cluster is already running under {args.dir}; stop it first")
        shutil.rmtree(args.dir)  # a stale one: its processes are gone
    worker = {"num_cpus": args.worker_cpus, "memory_mb": args.memory_mb,
              "object_store_mb": args.object_store_mb, "resources": args.worker_resources}
    return LocalCluster([worker] * args.workers, head_cpus=args.head_cpus,
                        head_resources=args.head_resources, memory_mb=args.memory_mb,
                        object_store_mb=args.object_store_mb, base_dir=args.dir,
                        dashboard=args.dashboard).start()


def _print_status(cluster: LocalCluster) -> None:
    alive = alive_nodes(cluster.address, cluster.auth_mode)
    print(f"address {cluster.address}  (export RAY_ADDRESS={cluster.address} "
          f"RAY_AUTH_MODE={cluster.auth_mode})  base dir {cluster.base_dir}")
    for n in cluster.nodes:
        state = "alive" if alive.get(n.spec.name) == n.node_id else "DOWN"
        print(f"  {n.spec.name:10} {state:5} {n.node_id}  cpus={n.spec.num_cpus:g} "
              f"resources={json.dumps(n.spec.resources)}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``start`` / ``stop`` / ``status`` of the cluster under ``--dir``."""
    args = _parse(argv)
    if args.command == "start":
        cluster = _start(args)
        print(f"started {len(cluster.nodes)} nodes in {cluster.start_s:.1f} s")
        _print_status(cluster)
        return 0
    if args.command == "status":
        if not (Path(args.dir) / STATE).exists():
            print(f"no cluster under {args.dir}")
            return 1
        _print_status(LocalCluster.load(args.dir))
        return 0
    if (Path(args.dir) / STATE).exists():
        cluster = LocalCluster.load(args.dir)
    else:  # a start that died early: its processes still carry the marker
        cluster = LocalCluster(base_dir=args.dir)
        cluster.base_dir = Path(args.dir).resolve()
    print(f"stopped {cluster.stop()} processes of {args.dir}")
    shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
