"""Several hosts on one machine: Linux network namespaces joined by a bridge.

    switch namespace (…-sw): bridge br0, one veth port per host
    host namespaces (…-ns, …-h1, …): eth0 with an address in 10.213.7.0/24, lo

Nothing touches the root namespace's network: the bridge lives in its own
"switch" namespace, every veth pair is created there with its far end moved
straight into its host namespace, and the subnet exists only inside these
namespaces. Namespace names are ``rmikv-<pid>-<random>-<role>``; namespaces
whose creating process is gone (a crashed run) are removed at the next start,
together with any process left inside them.

A host's network can be cut and healed: ``link`` sets its eth0 down (inside
its namespace), ``firewall`` drops every packet on eth0 with iptables (or nft).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

PREFIX = "rmikv-"
SUBNET = "10.213.7"
IFACE = "eth0"
NFT_TABLE = "rmikv_partition"


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no iproute2, no kernel support)."""


def ip(*args: str, check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unavailable_reason() -> Optional[str]:
    """Why namespaces cannot be used here, or None when they probably can."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (run the tests as root, as CI does)"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing: apt-get install -y iproute2"
    return None


def firewall_tool() -> Optional[str]:
    """'iptables' or 'nft', whichever is installed, or None."""
    for tool in ("iptables", "nft"):
        if shutil.which(tool):
            return tool
    return None


def list_namespaces() -> list[str]:
    result = ip("netns", "list", check=False)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process living in ``namespace`` (all of them were started by these tests)."""
    result = ip("netns", "pids", namespace, check=False)
    for word in result.stdout.split():
        if word.isdigit():
            try:
                os.kill(int(word), signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove_stale() -> list[str]:
    """Delete the rmikv-* namespaces of runs that are gone (their creator pid is dead)."""
    removed = []
    for name in list_namespaces():
        if not name.startswith(PREFIX):
            continue
        owner = name[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and _pid_alive(int(owner)):
            continue  # a run in progress (maybe another one): leave it alone
        _kill_inside(name)
        ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass
class Host:
    role: str
    namespace: str
    address: str
    port: str  # the veth end on the switch


class Lab:
    """A switch and some hosts; ``close()`` deletes every namespace it made."""

    def __init__(self, subnet: str = SUBNET) -> None:
        self.subnet = subnet
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self.namespaces: list[str] = []
        self._cuts: dict[str, str] = {}

    # ------------------------------------------------------------- building
    def start(self) -> "Lab":
        """Make the switch. Raises NetnsUnavailable when the system cannot."""
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        remove_stale()
        try:
            self._add_namespace(self.switch)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
        except RuntimeError as error:
            self.close()
            raise NetnsUnavailable(f"cannot build a network namespace with a bridge here: {error}") from None
        return self

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, role: str, octet: int) -> Host:
        """A host namespace with eth0 at SUBNET.octet/24, plugged into the switch."""
        if role in self.hosts:
            raise ValueError(f"host {role} exists")
        namespace = f"{self.tag}-{role}"
        port = f"p{len(self.hosts) + 1}"
        address = f"{self.subnet}.{octet}"
        self._add_namespace(namespace)
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", IFACE, "netns", namespace)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", IFACE)
        ip("-n", namespace, "link", "set", IFACE, "up")
        host = self.hosts[role] = Host(role, namespace, address, port)
        return host

    def exec_prefix(self, role: str) -> list[str]:
        """Prefix a command with this to run it on host ``role``."""
        return ["ip", "netns", "exec", self.hosts[role].namespace]

    def run(self, role: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.exec_prefix(role) + list(command), capture_output=True, text=True, timeout=15)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} on {role} failed: {result.stderr.strip()}")
        return result

    # ----------------------------------------------------------- partitions
    def cut(self, role: str, method: str = "link") -> None:
        """Cut host ``role`` off the network, from inside its namespace."""
        host = self.hosts[role]
        if method == "link":
            ip("-n", host.namespace, "link", "set", IFACE, "down")
        elif method == "firewall":
            tool = firewall_tool()
            if tool == "iptables":
                self.run(role, "iptables", "-w", "-I", "INPUT", "1", "-i", IFACE, "-j", "DROP")
                self.run(role, "iptables", "-w", "-I", "OUTPUT", "1", "-o", IFACE, "-j", "DROP")
            elif tool == "nft":
                self.run(role, "nft", "add", "table", "inet", NFT_TABLE)
                for chain, hook, match in (("in", "input", "iifname"), ("out", "output", "oifname")):
                    self.run(role, "nft", "add", "chain", "inet", NFT_TABLE, chain,
                             f"{{ type filter hook {hook} priority -10 ; }}")
                    self.run(role, "nft", "add", "rule", "inet", NFT_TABLE, chain, match, IFACE, "drop")
            else:
                raise RuntimeError("neither iptables nor nft is installed")
        else:
            raise ValueError(f"unknown partition method {method!r}")
        self._cuts[role] = method

    def heal(self, role: str) -> None:
        """Undo ``cut`` (a no-op when the host is not cut)."""
        method = self._cuts.pop(role, None)
        if method is None:
            return
        if method == "link":
            ip("-n", self.hosts[role].namespace, "link", "set", IFACE, "up")
        elif firewall_tool() == "iptables":
            self.run(role, "iptables", "-w", "-D", "INPUT", "-i", IFACE, "-j", "DROP")
            self.run(role, "iptables", "-w", "-D", "OUTPUT", "-o", IFACE, "-j", "DROP")
        else:
            self.run(role, "nft", "delete", "table", "inet", NFT_TABLE)

    def heal_all(self) -> None:
        for role in list(self._cuts):
            self.heal(role)

    def is_cut(self, role: str) -> bool:
        return role in self._cuts

    # -------------------------------------------------------------- removal
    def close(self) -> None:
        """Kill whatever still runs inside, and delete every namespace this lab made."""
        for namespace in reversed(self.namespaces):
            _kill_inside(namespace)
            ip("netns", "del", namespace, check=False)
        self.namespaces = []
        self.hosts = {}
        self._cuts = {}

    def leftovers(self) -> list[str]:
        """Namespaces of this lab that still exist (empty after close())."""
        return [name for name in list_namespaces() if name.startswith(self.tag + "-")]

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
