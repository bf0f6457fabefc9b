"""Mutual TLS on real processes. This test process never turns TLS on itself
(Pyro5's settings are per process): every client here is a subprocess."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support import launchers

ROOT = Path(__file__).resolve().parents[2]

CALL_AS = textwrap.dedent("""
    import json, sys
    from Pyro5 import config
    from Pyro5.api import Proxy
    from rmi_kv.wire.pyro import configure_pyro
    from rmi_kv.wire.naming import connect_nameserver
    from rmi_kv.wire.tls import configure_tls
    tls_dir, role, ns_port, target, method, args = sys.argv[1:7]
    configure_pyro()
    if role != "none":
        configure_tls(tls_dir, role)
    else:
        config.SSL = True
        config.SSL_CACERTS = tls_dir + "/ca.pem"
    try:
        ns = connect_nameserver("127.0.0.1", int(ns_port))
        proxy = ns if target == "nameserver" else Proxy(ns.lookup(target))
        proxy._pyroTimeout = 10
        result = getattr(proxy, method)(*json.loads(args))
        print(json.dumps({"ok": repr(result)}))
    except Exception as error:
        print(json.dumps({"error": type(error).__name__, "message": str(error)}))
""")


def call_as(cluster, role: str, target: str, method: str, *args) -> dict:
    result = subprocess.run([sys.executable, "-c", CALL_AS, cluster.tls_dir, role, str(cluster.ns_port), target,
                             method, json.dumps(args)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def client(cluster, *args: str, tls: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "run_client.py"), "--ns-port", str(cluster.ns_port)]
    if tls:
        command += ["--tls-dir", cluster.tls_dir]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    with launchers.tls_cluster(tmp_path_factory.mktemp("tls"), replicas=5) as cluster:
        yield cluster


def test_clients_with_a_certificate_read_and_write(tls_cluster):
    put = client(tls_cluster, "--replica", "replica2", "put", "secret", "value")
    assert put.returncode == 0, put.stderr
    get = client(tls_cluster, "--replica", "replica4", "get", "secret")
    assert (get.returncode, get.stdout) == (0, "value\n")
    status = client(tls_cluster, "status")
    assert "all reachable replicas hold the same data" in status.stdout


def test_a_connection_without_a_valid_certificate_is_refused(tls_cluster):
    plain = client(tls_cluster, "get", "secret", tls=False)
    assert plain.returncode == 4
    no_certificate = call_as(tls_cluster, "none", "nameserver", "list")
    assert "error" in no_certificate


def test_a_forged_vote_with_a_client_certificate_is_refused(tls_cluster):
    now = time.time_ns() // 1000
    forged = call_as(tls_cluster, "client", "rmi_kv.replica.replica3", "canCommit",
                     f"replica1:deadbeef:1:{now}", {"secret": "forged"}, "replica1", tls_cluster.names)
    assert forged["error"] == "PermissionDenied" and "only cluster members" in forged["message"]
    for method, args in (("doCommit", (f"replica1:deadbeef:1:{now}",)), ("getDecision", (f"replica1:deadbeef:1:{now}",)),
                         ("announce", ("replica1",)),
                         ("batch", (json.dumps([["canCommit", f"replica1:deadbeef:1:{now}", {"secret": "forged"},
                                                 "replica1", tls_cluster.names]]),))):
        assert call_as(tls_cluster, "client", "rmi_kv.replica.replica3", method, *args)["error"] == "PermissionDenied"
    # clients may use the key-value API and status
    assert "ok" in call_as(tls_cluster, "client", "rmi_kv.replica.replica3", "status")
    # and members may vote (a harmless vote on a fresh key of epoch 0, aborted right after)
    voted = call_as(tls_cluster, "member", "rmi_kv.replica.replica3", "canCommit",
                    f"replica1:deadbeef:2:{now}", {"vote-test": "x"}, "replica1", tls_cluster.names, 0)
    assert voted == {"ok": "True"}
    assert call_as(tls_cluster, "member", "rmi_kv.replica.replica3", "doAbort", f"replica1:deadbeef:2:{now}") == \
        {"ok": "True"}


def test_only_members_change_the_name_server(tls_cluster):
    refused = call_as(tls_cluster, "client", "nameserver", "register", "rmi_kv.replica.evil", "PYRO:x@127.0.0.1:1")
    assert refused["error"] == "PermissionDenied"
    listed = call_as(tls_cluster, "client", "nameserver", "list", "rmi_kv.replica.")
    assert "evil" not in listed["ok"] and "replica1" in listed["ok"]


def test_a_silent_connection_does_not_stall_other_handshakes(tls_cluster):
    uri = call_as(tls_cluster, "client", "nameserver", "lookup", "rmi_kv.replica.replica1")["ok"]
    host, port = uri.split("@")[1].rstrip("'>").rsplit(":", 1)
    silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
    try:
        started = time.monotonic()
        result = client(tls_cluster, "--replica", "replica1", "get", "secret")
        assert result.returncode in (0, 1), result.stderr
        assert time.monotonic() - started < 5.0, "a silent connection held up the handshake of another"
    finally:
        for sock in silent:
            sock.close()
