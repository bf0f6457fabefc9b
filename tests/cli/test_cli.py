"""The one-shot client's output and exit codes, through real processes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import ROOT, free_port, run_client


def test_success_and_not_found(shared_cluster, tmp_path):
    log_file = tmp_path / "client.log"
    put = run_client(shared_cluster, "--replica", "replica3", "--log-file", str(log_file), "put", "color", "blue sky")
    assert (put.returncode, put.stdout.strip()) == (0, "OK"), put.stderr
    logged = log_file.read_text()
    assert "-> replica3 put('color', 'blue sky')" in logged
    assert "<- replica3 put = None" in logged
    assert logged.splitlines()[0][19] == "."  # millisecond timestamps: 2026-01-01 12:00:00.123
    get = run_client(shared_cluster, "--replica", "replica5", "get", "color")
    assert (get.returncode, get.stdout) == (0, "blue sky\n")
    missing = run_client(shared_cluster, "get", "no-such-key")
    assert missing.returncode == 1 and "not found" in missing.stderr
    deleted = run_client(shared_cluster, "delete", "color")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "deleted")
    again = run_client(shared_cluster, "delete", "color")
    assert again.returncode == 1 and "not found" in again.stderr
    status = run_client(shared_cluster, "status")
    assert status.returncode == 0
    for name in shared_cluster.names:
        assert name in status.stdout
    assert "all reachable replicas hold the same data" in status.stdout


def test_usage_errors_exit_2(shared_cluster):
    assert run_client(shared_cluster).returncode == 2
    unknown = run_client(shared_cluster, "frobnicate", "x")
    assert unknown.returncode == 2 and "unknown command 'frobnicate'" in unknown.stderr
    too_long = run_client(shared_cluster, "put", "k" * 1100, "v")
    assert too_long.returncode == 2 and "limit is 1024 bytes" in too_long.stderr
    assert "Traceback" not in too_long.stderr


def test_cluster_unavailable_exits_4():
    result = run_client(free_port(), "get", "k")
    assert result.returncode == 4
    assert "no name server" in result.stderr and "run_nameserver.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_replica_exits_4(shared_cluster):
    result = run_client(shared_cluster, "--replica", "replica9", "get", "k")
    assert result.returncode == 4 and "replica9" in result.stderr


def test_aborted_exits_3(strict_cluster):
    cluster = strict_cluster
    cluster.stop_replica("replica2")
    result = run_client(cluster, "--replica", "replica1", "put", "k", "v")
    assert result.returncode == 3
    assert "replica2" in result.stderr and "nothing was written" in result.stderr


def test_outcome_unknown_exits_5_and_the_write_still_lands(cluster):
    # the coordinator decides COMMIT, then stalls longer than the client waits
    cluster.restart_replica("replica5", failpoints=["coordinator.after_decision=once:delay:3000"])
    result = run_client(cluster, "--replica", "replica5", "--timeout", "1", "put", "slow", "value")
    assert result.returncode == 5, result.stderr
    assert "may or may not have committed" in result.stderr
    cluster.wait_for(lambda: run_client(cluster, "--replica", "replica1", "get", "slow").stdout == "value\n",
                     what="the decided write to land")


@pytest.mark.parametrize("script, args, message", [
    ("run_client.py", ["--timeout", "-1", "get", "k"],
     "argument --timeout: must be a number of seconds above 0 and at most 3600, not -1"),
    ("run_client.py", ["--ns-port", "70000", "get", "k"],
     "argument --ns-port: must be a port number from 1 to 65535, not 70000"),
    ("run_client.py", ["keys", "--limit", "0"], "argument --limit: must be a whole number from 1 to 10000, not 0"),
    ("run_server.py", ["--name", "replica1", "--port", "70000"],
     "argument --port: must be a port number from 0 to 65535, not 70000"),
    ("run_server.py", ["--name", "replica1", "--ns-port", "0"],
     "--ns-port 0 (let the OS choose) goes with --with-nameserver: a replica needs the name server's port"),
    ("run_server.py", ["--name", "replica1", "--ns-port", "70000"],
     "argument --ns-port: must be a port number from 0 to 65535, not 70000"),
    ("run_server.py", ["--name", "replica1", "--vote-timeout", "nan"],
     "argument --vote-timeout: must be a number of seconds above 0 and at most 3600, not nan"),
    ("run_server.py", ["--name", "replica1", "--ns-wait", "-1"],
     "argument --ns-wait: must be a number of seconds from 0 to 3600, not -1"),
    ("run_server.py", ["--name", "replica1", "--max-connections", "3"],
     "argument --max-connections: must be a number of connections from 8 to 10000, not 3"),
    ("run_server.py", ["--replicas", "0"], "argument --replicas: must be a whole number from 1 to 100, not 0"),
    ("run_nameserver.py", ["--port", "-5"], "argument --port: must be a port number from 0 to 65535, not -5"),
])
def test_bad_option_values_are_usage_errors(script, args, message):
    result = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines()[-1] == f"{Path(script).name}{' keys' if 'keys' in args else ''}: error: {message}"
