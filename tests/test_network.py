"""Services stay private: the local Ray listens on loopback only; public addresses are warned."""

import ipaddress
import subprocess
import sys

import pytest

from autocompress.search.network import host_of, is_loopback, warn_public

PROBE = """
import json, time, psutil
from autocompress.search.runner import _init_ray
import ray
_init_ray(None)
time.sleep(2)  # agents start after init returns
me = psutil.Process()
found = []
for p in [me, *me.children(recursive=True)]:
    try:
        found += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                  if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        pass
ray.shutdown()
print(json.dumps(found))
"""


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.mark.slow
def test_every_listening_socket_of_the_local_ray_is_on_loopback():
    import json

    env = {"RAY_USAGE_STATS_ENABLED": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    sockets = json.loads(out.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names  # Ray's own servers were seen
    public = [s for s in sockets if not _loopback(s[1])]
    assert public == [], f"listening beyond loopback: {public}"


@pytest.mark.parametrize("uri", ["sqlite:///mlruns.db", "file:///tmp/mlruns", "mlruns",
                                 "http://127.0.0.1:5000", "http://localhost:5000",
                                 "ray://[::1]:10001", "127.0.0.1:6379", "auto"])
def test_local_addresses_are_not_warned_about(uri, capsys):
    assert warn_public(uri) is None
    assert capsys.readouterr().err == ""


def test_a_public_address_without_authentication_is_warned_about(monkeypatch, capsys):
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    text = warn_public("http://203.0.113.7:5000", "MLflow")
    assert text and "203.0.113.7" in text and "docs/security.md" in text
    assert capsys.readouterr().err.startswith("autocompress: warning: MLflow address")
    assert warn_public("ray://203.0.113.7:10001", "Ray") is not None
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert warn_public("ray://203.0.113.7:10001", "Ray") is None
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    assert warn_public("http://203.0.113.7:5000", "MLflow") is None
    assert warn_public("https://user:pw@203.0.113.7", "Other") is None  # credentials in URI


def test_hosts_of_addresses():
    assert host_of("ray://head:10001") == "head"
    assert host_of("10.0.0.5:6379") == "10.0.0.5"
    assert host_of("sqlite:///x.db") is None
    assert is_loopback("::1") and not is_loopback("203.0.113.7")
