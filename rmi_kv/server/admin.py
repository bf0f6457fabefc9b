"""Operator commands on the membership, and who holds a replica's name.

A removed replica leaves a marker in the name server, and every member keeps
the removal in its own member list. If it is ever started again, its old data
is out of date: it starts over with an empty data directory and catches up
from the others, like a new member.

Before a replica starts, ``claim_name`` finds whether a replica of that name
still answers (at the name server's entry, or at the address a member knows
it by): then the new process refuses, and the running one is unharmed.
"""
from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Optional

from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.config import REMOVED_PREFIX
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.errors import InvalidRequest, ReplicaUnavailable, RmiKvError
from rmi_kv.wire.naming import connect_nameserver, object_name
from rmi_kv.wire.peers import Membership, PeerHandle
from rmi_kv.wire.pyro import configure_pyro

log = logging.getLogger(__name__)

REMOVED_MARKER_URI = "PYRO:removed@127.0.0.1:1"


def removed_marker(name: str) -> str:
    return REMOVED_PREFIX + name


def remove_member(name: str, ns_host: str, ns_port: int, timeout: float = 3.0) -> str:
    """Take ``name`` out of the cluster; refused while it runs or while
    transactions it coordinated are still in doubt. Returns a summary."""
    configure_pyro()
    membership = Membership("rmi_kv-admin", ns_host, ns_port, call_timeout=timeout)
    try:
        membership.refresh()
        for view in _member_views(membership, exclude=name, timeout=timeout):  # ones the name server forgot
            membership.learn({member: uri for member, uri in view.get("member_uris", {}).items()
                              if member not in view.get("removed_members", [])})
        members = membership.members()
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
        nameserver = connect_nameserver(ns_host, ns_port, timeout=timeout)
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


@dataclass(frozen=True)
class NameClaim:
    """What the cluster says of a replica name before a process starts under it."""

    #: the URI at which a replica of that name answers now (None: none does)
    running_at: Optional[str]
    #: an operator removed that name (its old data is out of date)
    removed: bool


def claim_name(name: str, ns_host: str, ns_port: int, *, timeout: float = 2.0) -> NameClaim:
    """Whether a replica named ``name`` still answers, and whether it was removed.

    Asks the name server (its entry and removal marker) and every member it
    lists (the URI each knows the name by, and its removals), so a name
    server that forgot an entry does not hide a running replica.
    """
    membership = Membership(name, ns_host, ns_port, call_timeout=timeout)
    try:
        registered, removed_marks = membership.registrations()
        membership.learn({other: uri for other, uri in registered.items() if other != name})
        views = _member_views(membership, exclude=name, timeout=timeout)
        candidates = {registered[name]} if name in registered else set()
        candidates |= {view["member_uris"][name] for view in views if view.get("member_uris", {}).get(name)}
        removed = name in removed_marks or any(name in view.get("removed_members", []) for view in views)
        running = next((uri for uri in sorted(candidates) if _answers_as(uri, name, timeout)), None)
        return NameClaim(running_at=running, removed=removed)
    finally:
        membership.close()


def _member_views(membership: Membership, *, exclude: str, timeout: float) -> list[dict]:
    """The status of every member that answers within ``timeout`` (asked in parallel)."""
    names = [member for member in membership.names() if member != exclude]
    if not names:
        return []

    def status_of(member: str) -> Optional[dict]:
        try:
            return PeerHandle(member, membership).call("status", timeout=timeout)
        except RmiKvError:
            return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        return [view for view in pool.map(status_of, names) if isinstance(view, dict)]


def _answers_as(uri: str, name: str, timeout: float) -> bool:
    """True when the replica at ``uri`` answers a ping as ``name``."""
    proxy = Proxy(uri)
    proxy._pyroTimeout = timeout
    try:
        return proxy.ping() == name
    except (pyro_errors.PyroError, RmiKvError):  # unreachable, or another object at that address now
        return False
    finally:
        proxy._pyroRelease()


def clear_removed(ns_host: str, ns_port: int, name: str, timeout: float = 3.0) -> None:
    nameserver = connect_nameserver(ns_host, ns_port, timeout=timeout)
    try:
        nameserver.remove(removed_marker(name))
    finally:
        nameserver._pyroRelease()
