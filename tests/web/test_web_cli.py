"""``run_client.py --web`` refuses what it cannot do, clearly, before it starts anything:
a port in use, an address beyond this machine without TLS, an unreachable name server."""
from __future__ import annotations

import socket
import subprocess
import sys


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
