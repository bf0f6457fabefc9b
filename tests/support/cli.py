"""Running ``run_client.py`` as a subprocess, as people do, and reading its JSON."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_client(cluster_or_port, *args: str, input: str | None = None, env: dict | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``run_client.py --ns-port PORT ARGS...``, without colours unless ``env`` asks for them."""
    port = cluster_or_port if isinstance(cluster_or_port, int) else cluster_or_port.ns_port
    command = [sys.executable, str(ROOT / "run_client.py"), "--ns-port", str(port), *args]
    environment = {key: value for key, value in os.environ.items() if key not in ("NO_COLOR", "FORCE_COLOR")}
    environment.update(env or {})
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_json(text: str) -> dict:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one JSON document, got {text!r}"
    return json.loads(lines[0])
