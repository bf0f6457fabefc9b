"""``run_client.py --web`` refuses what it cannot do, clearly, before it starts anything (a port
in use, an address beyond this machine without TLS, an unreachable name server), and attached
to a running cluster it shows it without controls."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from rmi_kv.server.cluster import ChildProcess


def web(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rmi_kv.cli.main", "--web", *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_a_port_in_use_is_said_and_nothing_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = web("--port", str(port))
    assert done.returncode == 4
    assert f"error: port {port} on 127.0.0.1 is in use; give another with --port (--port 0: the OS chooses one)" \
        in done.stderr
    assert "starting a name server" not in done.stderr


def test_another_address_needs_tls_or_insecure():
    done = web("--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without TLS" in done.stderr and "--insecure" in done.stderr


def test_an_unreachable_name_server_is_said():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    done = web("--port", "0", "--ns-port", str(port))
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: ") and str(port) in done.stderr
    assert "ready at" not in done.stdout


def test_attached_to_a_running_cluster_it_shows_it_without_controls(make_cluster, tmp_path):
    cluster = make_cluster(3)
    command = [sys.executable, "-m", "rmi_kv.cli.main", "--web", "--port", "0", "--ns-port", str(cluster.ns_port)]
    child = ChildProcess("web", command, tmp_path / "web.log", dict(os.environ))
    try:
        url = child.wait_ready(30.0)
        with urllib.request.urlopen(url + "events", timeout=10) as stream:
            hello = json.loads(stream.readline()[len(b"data:"):])
        assert hello["title"] == f"the cluster at 127.0.0.1:{cluster.ns_port}" and hello["controls"] is None
        assert hello["replicas"] == ["replica1", "replica2", "replica3"]
        request = urllib.request.Request(url + "action/crash", data=b'{"replica": "replica1"}',
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 404 and b"no controls" in refused.value.read()
        assert cluster.replicas["replica1"].alive()
    finally:
        assert child.stop(20.0) == 0, child.log_tail()
