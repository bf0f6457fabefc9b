"""Clusters for the multi-host tests.

- ``LabCluster``: the name server and each replica on its own host (network
  namespace), the test's client on another, all bound to their namespace
  address with ``--insecure`` (no TLS in these tests).
- ``ProxiedCluster``: a loopback ``LocalCluster`` where one replica sits
  behind a ``FaultProxy`` and advertises the proxy's address, so every peer
  and client reaches it through the proxy.

Both reuse ``rmi_kv.cluster.ChildProcess`` (it waits for the 'ready at' line).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional

from rmi_kv.server.cluster import ChildProcess, LocalCluster

from .faultproxy import FaultProxy
from .kvagent import Agent
from .netns import Lab

NS_PORT = 9090
#: every test cluster runs with --vote-timeout 1: partitions show within a second
VOTE_TIMEOUT = 1.0
REPLICA_ARGS = ["--vote-timeout", str(VOTE_TIMEOUT)]
#: in the proxied cluster, every write replica4 coordinates pauses this long between its COMMIT
#: decision and doCommit, so a test can cut a participant off after the vote (tests that only
#: want a write to commit use another coordinator)
SLOW_DECIDER, DECISION_PAUSE_MS = "replica4", 1500


class LabCluster:
    """Name server on host ``ns``, replica N on host ``hN``, the client agent on host ``client``."""

    def __init__(self, lab: Lab, data_dir: Path, replicas: int = 5, replica_args: Iterable[str] = (),
                 log_level: str = "INFO") -> None:
        self.lab = lab
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.names = [f"replica{index}" for index in range(1, replicas + 1)]
        self.replica_args = list(replica_args)
        self.log_level = log_level
        self.env = dict(os.environ)
        self.nameserver: Optional[ChildProcess] = None
        self.replicas: dict[str, ChildProcess] = {}
        self.agent: Optional[Agent] = None

    @staticmethod
    def host_of(name: str) -> str:
        return "h" + name[len("replica"):]

    @property
    def ns_host(self) -> str:
        return self.lab.hosts["ns"].address

    def address_of(self, name: str) -> str:
        return self.lab.hosts[self.host_of(name)].address

    def start(self) -> "LabCluster":
        self.lab.add_host("ns", 2)
        for index, name in enumerate(self.names, start=1):
            self.lab.add_host(self.host_of(name), 10 + index)
        self.lab.add_host("client", 100)
        try:
            command = self.lab.exec_prefix("ns") + [
                sys.executable, "-m", "rmi_kv.server.nameserver", "--host", self.ns_host, "--port", str(NS_PORT),
                "--insecure", "--storage", str(self.data_dir / "nameserver.sqlite3"), "--log-level", self.log_level]
            self.nameserver = ChildProcess("nameserver", command, self.data_dir / "nameserver.log", self.env)
            self.nameserver.wait_ready()
            starting = [self.spawn_replica(name) for name in self.names]
            for child in starting:
                child.wait_ready()
            self.agent = Agent(self.lab.exec_prefix("client"), self.ns_host, NS_PORT, self.data_dir / "agent.log")
        except BaseException:
            self.stop()
            raise
        return self

    def restart_replica(self, name: str, extra_args: Iterable[str] = ()) -> ChildProcess:
        """Stop ``name`` cleanly and start it again on its host, with its data, plus ``extra_args``."""
        old = self.replicas.get(name)
        if old is not None and old.alive():
            old.stop()
        child = self.spawn_replica(name, extra_args)
        child.wait_ready()
        return child

    def replica_command(self, name: str) -> list[str]:
        address = self.address_of(name)
        if name == self.names[-1]:
            # the container way: listen on every address, tell the others which one to dial
            where = ["--host", "0.0.0.0", "--advertise", address]
        else:
            where = ["--host", address]
        return self.lab.exec_prefix(self.host_of(name)) + [
            sys.executable, "-m", "rmi_kv.server.main", "--name", name, "--ns-host", self.ns_host,
            "--ns-port", str(NS_PORT), *where, "--port", "0", "--insecure",
            "--data-dir", str(self.data_dir / name), "--log-level", self.log_level, *self.replica_args]

    def spawn_replica(self, name: str, extra_args: Iterable[str] = ()) -> ChildProcess:
        command = self.replica_command(name) + list(extra_args)
        child = ChildProcess(name, command, self.data_dir / f"{name}.log", self.env)
        self.replicas[name] = child
        return child

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        for child in self.replicas.values():
            child.signal(signal.SIGCONT)
            child.signal(signal.SIGTERM)
        for child in self.replicas.values():
            if child.wait_exit(10) is None:
                child.kill()
            else:
                child._close()
        self.replicas = {}
        if self.nameserver is not None:
            self.nameserver.stop()
            self.nameserver = None

    def logs(self) -> str:
        parts = []
        for child in ([self.nameserver] if self.nameserver else []) + list(self.replicas.values()):
            parts.append(f"----- {child.name} ({child.log_path}) -----\n{child.log_tail(40)}")
        agent_log = self.data_dir / "agent.log"
        if agent_log.exists():
            tail = agent_log.read_text("utf-8", "replace").splitlines()[-20:]
            parts.append(f"----- client agent ({agent_log}) -----\n" + "\n".join(tail))
        return "\n".join(parts)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for a replica that must listen on a known port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ProxiedCluster(LocalCluster):
    """A loopback cluster whose replica ``proxied`` is reached only through ``self.proxy``."""

    def __init__(self, replicas: int = 5, proxied: str = "replica5",
                 extra_args: Optional[dict[str, list[str]]] = None, **options) -> None:
        super().__init__(replicas, **options)
        self.proxied = proxied
        self.target_port = free_port()
        self.proxy = FaultProxy("127.0.0.1", self.target_port)
        self._extra = {name: list(args) for name, args in (extra_args or {}).items()}
        self._extra.setdefault(proxied, []).extend(
            ["--port", str(self.target_port), "--advertise", self.proxy.address])

    def spawn_replica(self, name, failpoints=(), extra_env=None, data_dir=None) -> ChildProcess:
        base = self.replica_args
        self.replica_args = base + self._extra.get(name, [])
        try:
            return super().spawn_replica(name, failpoints, extra_env, data_dir)
        finally:
            self.replica_args = base

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.proxy.close()


@contextlib.contextmanager
def tls_cluster(base: Path, replicas: int = 3) -> Iterator[LocalCluster]:
    """A running cluster with mutual TLS, its certificates made as an operator makes them
    (``run_nameserver.py --make-certs base/certs``); stopped on the way out."""
    root = Path(__file__).resolve().parents[2]
    made = subprocess.run([sys.executable, str(root / "run_nameserver.py"), "--make-certs", str(base / "certs")],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    cluster = LocalCluster(replicas, data_dir=base / "data", tls_dir=base / "certs")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
