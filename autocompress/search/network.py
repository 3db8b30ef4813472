"""Services stay private: a local Ray on loopback only, and warnings for public addresses.

Ray 2.60 replaces ``_node_ip_address="127.0.0.1"`` by the machine's routable address and its
servers (GCS, raylet, workers, agents) listen on every interface. When Ray believes clusters
are disabled (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, its switch for laptops) it takes the
loopback address as the node's, and every server then listens on 127.0.0.1 only (checked with
psutil in tests/test_network.py). A local search needs nothing more.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlparse

__all__ = ["host_of", "is_loopback", "loopback_only", "warn_public"]

CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_AUTH_ENV = {  # what turns authentication on, per service (Ray: RAY_AUTH_MODE=token)
    "Ray": ("RAY_AUTH_MODE",),
    "MLflow": ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME"),
}


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Start the local Ray inside this block to make it listen on 127.0.0.1 only.

    Wrap ``ray.init()`` without an address. The switch is set for the processes Ray starts
    within the block (its servers, which keep it) and restored afterwards, so processes
    started later (another ``ray start``, a subprocess of the user's) do not inherit it. Ray's
    module constant, read at import, stays off while this driver is connected: it must agree
    with the node address the servers registered.
    """
    before = os.environ.get(CLUSTER_SWITCH)
    os.environ[CLUSTER_SWITCH] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CLUSTER_SWITCH, None)
        else:
            os.environ[CLUSTER_SWITCH] = before


def host_of(uri: str) -> str | None:
    """The host named by a URI or ``host:port`` address; None for local files and ``auto``."""
    if not uri or uri in ("auto", "local") or uri.startswith(("sqlite:", "file:", "/", ".")):
        return None
    if "://" not in uri and ":" not in uri:
        return None  # a plain path (an MLflow file store)
    parsed = urlparse(uri if "://" in uri else f"//{uri}")
    return parsed.hostname


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs (names that resolve only to loopback, too)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unknown: treat as reachable from elsewhere
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def warn_public(uri: str | None, service: str = "MLflow") -> str | None:
    """Warn when ``uri`` points at a non-loopback address with no authentication configured.

    Authentication counts as configured when the URI carries credentials or ``https`` with
    a token, or when the service's environment variables are set (Ray: ``RAY_AUTH_MODE``,
    i.e. token authentication; MLflow: ``MLFLOW_TRACKING_TOKEN`` /
    ``MLFLOW_TRACKING_USERNAME``). The warning goes to stderr as one line; see
    docs/security.md.

    Returns:
        The warning's text, or None when there is nothing to warn about.
    """
    host = host_of(uri or "")
    if host is None or is_loopback(host):
        return None
    parsed = urlparse(uri if "://" in uri else f"//{uri}")
    if parsed.username or any(os.environ.get(k) for k in _AUTH_ENV.get(service, ())):
        return None
    how = " or ".join(_AUTH_ENV.get(service, ()))
    text = (f"{service} address {uri!r} is reachable from other machines and no "
            f"authentication is configured ({how} unset): anyone on that network can read "
            f"and change it; see docs/security.md")
    print(f"autocompress: warning: {text}", file=sys.stderr)
    return text
