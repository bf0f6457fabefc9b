"""Hostile input on the wire: compressed bombs, connection floods, odd addresses."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from Pyro5 import config as pyro_config
from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.wire.naming import nameserver_uri

ROOT = Path(__file__).resolve().parents[2]


def resident_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def digests(cluster) -> set:
    with cluster.client() as kv:
        return {status["digest"] for status in kv.status()}


@pytest.fixture
def compression_on():
    pyro_config.COMPRESSION = True
    try:
        yield
    finally:
        pyro_config.COMPRESSION = False


@pytest.mark.parametrize("target", ["replica", "nameserver"])
def test_compressed_bomb_is_refused(shared_cluster, compression_on, target):
    if target == "replica":
        uri = shared_cluster.client().replicas()["replica1"]
        pid = shared_cluster.replicas["replica1"].pid
    else:
        uri = nameserver_uri(shared_cluster.ns_host, shared_cluster.ns_port)
        pid = shared_cluster.nameserver.pid
    before = digests(shared_cluster)
    bomb = "a" * 50_000_000  # about 50 KB once compressed
    with Proxy(uri) as proxy:
        proxy._pyroTimeout = 20
        proxy._pyroBind()
        with pytest.raises(pyro_errors.CommunicationError):
            if target == "replica":
                proxy.get(bomb)
            else:
                proxy.lookup(bomb)
    assert resident_megabytes(pid) < 150, "the message was inflated"
    pyro_config.COMPRESSION = False
    with shared_cluster.client("replica1") as kv:
        assert kv.ping() == "replica1"
    assert digests(shared_cluster) == before


def test_flood_of_silent_and_idle_connections_does_not_lock_others_out(make_cluster):
    cluster = make_cluster(5, replica_args=["--max-connections", "60"])
    uri = cluster.client().replicas()["replica2"]
    host, port = uri.split("@")[1].rsplit(":", 1)
    silent: list[socket.socket] = []
    idle: list[Proxy] = []
    stop = threading.Event()
    flood_calls = [0]

    def flood() -> None:
        with Proxy(uri) as proxy:
            proxy._pyroTimeout = 10
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    proxy.ping()
                    flood_calls[0] += 1
                except pyro_errors.CommunicationError:
                    proxy._pyroRelease()

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    try:
        for thread in flooders:
            thread.start()
        for _ in range(100):  # TCP connections that never say a word
            sock = socket.create_connection((host, int(port)), timeout=5)
            silent.append(sock)
        for _ in range(40):  # connections that shook hands and went quiet
            proxy = Proxy(uri)
            proxy._pyroTimeout = 5
            try:
                proxy._pyroBind()
            except pyro_errors.CommunicationError:
                pass
            idle.append(proxy)
        # others are still served, reads and writes alike
        for number in range(5):
            with cluster.client("replica2", timeout=10) as kv:
                kv.put(f"during-flood:{number}", "ok")
                assert kv.get(f"during-flood:{number}") == "ok"
        with cluster.client("replica2") as kv:
            status = next(s for s in kv.status() if s["name"] == "replica2")
        assert status["connections"]["open"] <= 60
        assert status["connections"]["evicted"] > 0
        assert flood_calls[0] > 0
    finally:
        stop.set()
        for thread in flooders:
            thread.join(timeout=30)
        for sock in silent:
            sock.close()
        for proxy in idle:
            proxy._pyroRelease()
    with cluster.client() as kv:
        assert len({s["digest"] for s in kv.status()}) == 1


@pytest.mark.parametrize("script", ["run_server.py", "run_nameserver.py"])
def test_binding_beyond_loopback_needs_tls_or_insecure(script):
    arguments = ["--name", "replica1"] if script == "run_server.py" else ["--port", "0"]
    result = subprocess.run([sys.executable, str(ROOT / script), *arguments, "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "without TLS" in result.stderr and "--insecure" in result.stderr


@pytest.mark.parametrize("serializer", ["marshal", "json"])
def test_only_serpent_is_accepted(shared_cluster, serializer):
    uri = shared_cluster.client().replicas()["replica3"]
    with Proxy(uri) as proxy:
        proxy._pyroSerializer = serializer
        proxy._pyroTimeout = 10
        with pytest.raises(pyro_errors.CommunicationError):
            proxy.ping()
    with shared_cluster.client("replica3") as kv:
        assert kv.ping() == "replica3"
