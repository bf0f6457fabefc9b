"""Operator commands on the membership: taking a replica out for good.

A removed replica leaves a marker in the name server. If it is ever started
again, its old data is out of date: it starts over with an empty data
directory and catches up from the others, like a new member.
"""
from __future__ import annotations

import logging

from Pyro5 import errors as pyro_errors

from .config import configure_pyro
from .coordinator import Coordinator
from .errors import InvalidRequest, ReplicaUnavailable, RmiKvError
from .naming import connect_nameserver, object_name
from .peers import Membership, PeerHandle

log = logging.getLogger(__name__)

REMOVED_PREFIX = "rmi_kv.removed."
REMOVED_MARKER_URI = "PYRO:removed@127.0.0.1:1"


def removed_marker(name: str) -> str:
    return REMOVED_PREFIX + name


def remove_member(name: str, ns_host: str, ns_port: int, timeout: float = 3.0) -> str:
    """Take ``name`` out of the cluster; refused while it runs or while
    transactions it coordinated are still in doubt. Returns a summary."""
    configure_pyro()
    membership = Membership("rmi_kv-admin", ns_host, ns_port, call_timeout=timeout)
    try:
        members = membership.refresh()
        if name not in members:
            raise InvalidRequest(f"{name} is not a member (members: {', '.join(sorted(members)) or 'none'})")
        try:
            PeerHandle(name, membership).call("ping")
        except ReplicaUnavailable:
            pass
        else:
            raise InvalidRequest(f"{name} is running: stop it first (Ctrl-C or SIGTERM), then remove it")
        others = sorted(set(members) - {name})
        blocked = []
        for other in others:
            try:
                status = PeerHandle(other, membership).call("status")
            except RmiKvError:
                continue
            blocked += [txid for txid in status.get("in_doubt", []) if Coordinator.coordinator_of(txid) == name]
        if blocked:
            raise InvalidRequest(f"{name} coordinated transactions that are still in doubt ({', '.join(blocked)}); "
                                 f"start {name} again so they are decided, then remove it")
        nameserver = connect_nameserver(ns_host, ns_port, timeout)
        try:
            nameserver.register(removed_marker(name), REMOVED_MARKER_URI, safe=False)
            nameserver.remove(object_name(name))
        finally:
            nameserver._pyroRelease()
        told = []
        for other in others:
            try:
                PeerHandle(other, membership).call("forgetMember", name)
                told.append(other)
            except RmiKvError as error:
                log.warning("could not tell %s: %s (it reloads the member list by itself)", other, error)
        return f"removed {name}; members now: {', '.join(others) or 'none'} (told: {', '.join(told) or 'none'})"
    finally:
        membership.close()


def was_removed(ns_host: str, ns_port: int, name: str, timeout: float = 3.0) -> bool:
    """True when an operator removed ``name`` from the cluster (its data is out of date)."""
    nameserver = connect_nameserver(ns_host, ns_port, timeout)
    try:
        return removed_marker(name) in nameserver.list(prefix=removed_marker(name))
    except pyro_errors.CommunicationError:
        return False
    finally:
        nameserver._pyroRelease()


def clear_removed(ns_host: str, ns_port: int, name: str, timeout: float = 3.0) -> None:
    nameserver = connect_nameserver(ns_host, ns_port, timeout)
    try:
        nameserver.remove(removed_marker(name))
    finally:
        nameserver._pyroRelease()
