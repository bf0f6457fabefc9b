"""What a client is told to do about a replica it cannot reach: start it when it is down, resume it when
it runs but does not answer (paused), pass the certificates when the name server asks for TLS."""
from __future__ import annotations

import signal

from Pyro5 import errors as pyro_errors

from rmi_kv.cli.health import verdict
from rmi_kv.wire.client import unreachable_advice
from support import launchers
from support.cli import run_client


def down(name: str, cause: str) -> dict:
    return {"name": name, "uri": f"PYRO:rmi_kv.replica.{name}@127.0.0.1:4000", "reachable": False,
            "registered": True, "cause": cause, "error": f"replica {name} is unreachable ({cause})"}


def test_a_replica_that_took_the_connection_but_never_answered_is_not_told_to_start():
    timeout = unreachable_advice("r3", pyro_errors.TimeoutError("receiving: timeout"))
    assert "paused" in timeout and "kill -CONT" in timeout and "run_server.py" not in timeout
    refused = unreachable_advice("r3", pyro_errors.CommunicationError("connection refused"))
    assert refused == "is it running? start it with 'python run_server.py --name r3'"
    [problem] = verdict([down("r3", "receiving: timeout")])["problems"]
    assert "paused" in problem["hint"] and "start it" not in problem["hint"]
    [problem] = verdict([down("r3", "connection refused")])["problems"]
    assert problem["hint"] == "is it running? start it with 'python run_server.py --name r3'"


def test_a_paused_replica_is_said_to_run_but_not_answer(cluster):
    cluster.replicas["replica3"].signal(signal.SIGSTOP)
    try:
        result = run_client(cluster, "--timeout", "1", "--replica", "replica3", "get", "k")
    finally:
        cluster.replicas["replica3"].signal(signal.SIGCONT)
    assert result.returncode == 4, result.stderr
    assert "paused" in result.stderr and "start it with" not in result.stderr


def test_a_client_without_certificates_is_told_the_name_server_asks_for_tls(tmp_path):
    with launchers.tls_cluster(tmp_path, replicas=1) as cluster:
        plain = run_client(cluster, "get", "k")
    assert plain.returncode == 4
    assert "asks for TLS" in plain.stderr and "--tls-dir" in plain.stderr
    assert "start one" not in plain.stderr and "not enough data" not in plain.stderr
