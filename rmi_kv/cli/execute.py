"""Running a parsed command against the cluster: one function for every front end.

``execute`` turns a ``Command`` (``rmi_kv.cli.commands``) into calls on a
KeyValueClient and gives back a ``Result``: the JSON-ready payload, or the
rmi_kv error, with the latency; the console, script mode and the one-shot
commands only differ in how they show it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from rmi_kv.cli.commands import Command
from rmi_kv.cli.failures import exit_code_of
from rmi_kv.cli.health import annotate_digests, member_health, member_list, verdict
from rmi_kv.cli.snapshots import run_snapshot
from rmi_kv.errors import ClusterUnhealthy, KeyNotFound, ReplicaUnavailable, RmiKvError


@dataclass
class Result:
    """What one data command gave: a JSON-ready ``payload`` or an ``error``."""

    command: Command
    latency_ms: float
    payload: dict = field(default_factory=dict)
    error: Optional[RmiKvError] = None
    #: the two-phase commit round of a traced write (``KeyValue.traced``'s answer)
    trace: Optional[dict] = None

    @property
    def ok(self) -> bool:
        """No error, and (for status and health) every member healthy."""
        return self.error is None and self.payload.get("healthy", True) is not False

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return exit_code_of(self.error)
        if self.payload.get("exists") is False:  # like get's not found
            return KeyNotFound.exit_code
        return 0 if self.ok else ClusterUnhealthy.exit_code


def execute(kv: Any, command: Command, *, trace: bool = False,
            clock: Callable[[], float] = time.perf_counter) -> Result:
    """Run a data command with ``kv`` (a KeyValueClient). rmi_kv errors come
    back in the Result; anything else (a bug, Ctrl-C) propagates."""
    runner = _RUNNERS[command.name]
    started = clock()
    try:
        payload, round_trace = runner(kv, command, trace)
    except RmiKvError as error:
        return Result(command, (clock() - started) * 1000.0, error=error)
    return Result(command, (clock() - started) * 1000.0, payload, trace=round_trace)


def _put(kv: Any, command: Command, trace: bool) -> tuple[dict, Optional[dict]]:
    key, value = command.args
    round_trace = kv.traced({key: value}) if trace else kv.put(key, value)
    return {"key": key, "value": value}, round_trace


def _get(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    if command.prefix is not None:
        return _get_prefix(kv, command), None
    key = command.args[0]
    value = kv.get(key)
    if value is None:
        raise KeyNotFound(f"key {key!r} not found", key=key)
    return {"key": key, "value": value}, None


def _get_prefix(kv: Any, command: Command) -> dict:
    prefix, limit = command.prefix, command.limit
    items = kv.scan(prefix, limit, after=command.after)
    # a full page may be the last one: more only when a key follows it
    more = len(items) >= limit and bool(kv.keys(prefix, 1, after=items[-1][0]))
    return {"prefix": prefix, "items": [{"key": key, "value": value} for key, value in items], "limit": limit,
            "after": command.after, "more": more, "next_after": items[-1][0] if more else None}


def _count(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    prefix = command.args[0] if command.args else ""
    return {"prefix": prefix, "count": kv.count(prefix)}, None


def _cas(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    key, value = command.args
    (_, _, expected), = command.guards
    kv.cas(key, expected, value)
    return {"key": key, "expected": expected, "value": value, "swapped": True}, None


def _delete(kv: Any, command: Command, trace: bool) -> tuple[dict, Optional[dict]]:
    if command.prefix is not None:
        return {"prefix": command.prefix, "deleted": kv.delete_prefix(command.prefix)}, None
    key = command.args[0]
    round_trace = None
    if trace:
        if kv.get(key) is None:  # traced() deletes silently: keep delete's "not found"
            raise KeyNotFound(f"key {key!r} not found", key=key)
        round_trace = kv.traced({key: None})
    elif not kv.delete(key):
        raise KeyNotFound(f"key {key!r} not found", key=key)
    return {"key": key, "deleted": True}, round_trace


def _txn(kv: Any, command: Command, trace: bool) -> tuple[dict, Optional[dict]]:
    writes = dict(command.writes or {})
    if command.guards:  # (a traced round shows no guards: the plain call)
        kv.transaction(writes, command.guards)
        return {"writes": writes, "guards": [list(guard) for guard in command.guards]}, None
    round_trace = kv.traced(writes) if trace else kv.transaction(writes)
    return {"writes": writes}, round_trace


def _keys(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    prefix, limit = (command.args[0] if command.args else ""), command.limit
    keys = kv.keys(prefix, limit, after=command.after)
    # a full page may be the last one: more only when a key follows it
    more = len(keys) >= limit and bool(kv.keys(prefix, 1, after=keys[-1]))
    return {"prefix": prefix, "keys": keys, "limit": limit, "after": command.after, "more": more,
            "next_after": keys[-1] if more else None}, None


def _exists(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    key = command.args[0]
    return {"key": key, "exists": kv.get(key) is not None}, None


def _ping(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    return {"replica": kv.ping(), "answer": "PONG"}, None


def _status(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    statuses = _members(kv)
    return {"replicas": annotate_digests(statuses), **verdict(statuses)}, None


def _health(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    statuses = _members(kv)
    found = verdict(statuses)
    return {"members": member_health(statuses, found), **found}, None


def _verify(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    results = kv.verify()
    if not results:
        raise ReplicaUnavailable("no replica is registered in the name server; start one with "
                                 "'python run_server.py --name replica1'")
    return {"replicas": results, "healthy": all(r.get("reachable") and r.get("ok") for r in results)}, None


def _member(kv: Any, command: Command, trace: bool) -> tuple[dict, None]:
    return {"members": member_list(_members(kv), in_use=getattr(kv, "replica", None))}, None


def _members(kv: Any) -> list[dict]:
    """Every member's status; ReplicaUnavailable when there is no member to ask at all."""
    statuses = kv.status()
    if not statuses:
        raise ReplicaUnavailable("no replica is registered in the name server; start one with "
                                 "'python run_server.py --name replica1'")
    return statuses


_RUNNERS = {"put": _put, "get": _get, "delete": _delete, "txn": _txn, "keys": _keys, "status": _status,
            "health": _health, "member": _member, "verify": _verify, "count": _count, "cas": _cas,
            "snapshot": run_snapshot, "exists": _exists, "ping": _ping}
