"""KeyValueClient: the library every front end (and every test) uses.

    with KeyValueClient(ns_host="127.0.0.1", ns_port=9090, replica="replica2") as kv:
        kv.put("k", "v"); kv.get("k"); kv.delete("k")

A client may be shared by threads: each thread gets its own Pyro5 proxies.
Errors are always rmi_kv errors: ``ReplicaUnavailable`` when nothing was
sent, ``OutcomeUnknown`` when a write was sent and no answer came.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from typing import Any, Iterator, Optional, Sequence

from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.config import DEFAULT_NS_HOST, DEFAULT_NS_PORT, Limits, Timeouts
from rmi_kv.core import validation
from rmi_kv.errors import (InvalidRequest, NameServerUnavailable, OutcomeUnknown, ReplicaUnavailable, RmiKvError)
from rmi_kv.wire.naming import connect_nameserver, connection_looks_dead, ensure_connected, list_members
from rmi_kv.wire.pyro import configure_pyro

log = logging.getLogger("rmi_kv.wire.client")

#: what a replica takes (the same for every replica): a write over it is refused before it is sent
LIMITS = Limits()

_WRITES = frozenset({"put", "delete", "transaction", "traced", "deletePrefix", "cas"})
#: seconds to wait for a replica to accept a connection (calls then get the full timeout)
CONNECT_TIMEOUT = 3.0
#: first pause before asking a replica that is still starting again (it doubles, up to 0.5 s)
STARTING_POLL = 0.02
#: how long one watch call waits at the replica for a change
WATCH_WAIT = 5.0
#: the longest pause between two attempts to reach a replica again while watching
WATCH_RETRY_MAX = 1.0


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def unreachable_advice(name: str, failure: BaseException) -> str:
    """What to do about a replica that could not be reached: start it, or (when it took the
    connection but never answered: paused or overloaded, so running) resume it or wait."""
    if isinstance(failure, pyro_errors.TimeoutError):
        return ("it took the connection but did not answer: it runs but may be paused (SIGSTOP, a debugger) or "
                "overloaded; resume it (kill -CONT) or wait, or ask another replica")
    return f"is it running? start it with 'python run_server.py --name {name}'"


class KeyValueClient:
    """Talks to one replica (``replica``), or to any replica when None."""

    def __init__(self, ns_host: str = DEFAULT_NS_HOST, ns_port: int = DEFAULT_NS_PORT, *,
                 replica: Optional[str] = None, timeout: float = Timeouts.client, tls_dir: Optional[str] = None) -> None:
        configure_pyro()  # a client's settings only: hardening is for servers
        if tls_dir:
            from rmi_kv.wire.tls import CLIENT, configure_tls

            configure_tls(tls_dir, CLIENT)
        self.ns_host = ns_host
        self.ns_port = ns_port
        self.replica = replica
        self.timeout = timeout
        self._uris: dict[str, str] = {}
        self._uris_lock = threading.Lock()
        self._local = threading.local()
        #: every proxy made, to close them all; a thread's proxies go when the thread ends
        self._all_proxies: "weakref.WeakSet[Proxy]" = weakref.WeakSet()

    # ------------------------------------------------------------ lifetime
    def __enter__(self) -> "KeyValueClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this client opened."""
        with self._uris_lock:
            proxies, self._all_proxies = list(self._all_proxies), weakref.WeakSet()
        for proxy in proxies:
            try:
                proxy._pyroClaimOwnership()
                proxy._pyroRelease()
            except Exception:  # closing is best effort
                pass
        self._local = threading.local()

    # ------------------------------------------------------------- lookup
    def replicas(self, *, refresh: bool = False) -> dict[str, str]:
        """Replica name -> URI, from the name server (cached)."""
        with self._uris_lock:
            cached = dict(self._uris)
        if cached and not refresh:
            return cached
        nameserver = connect_nameserver(self.ns_host, self.ns_port, timeout=min(self.timeout, 5.0))
        try:
            members = list_members(nameserver)
        finally:
            nameserver._pyroRelease()
        with self._uris_lock:
            self._uris = members
        return dict(members)

    def _lookup(self, name: str, refresh: bool = False) -> str:
        members = self.replicas(refresh=refresh)
        if name not in members and not refresh:
            members = self.replicas(refresh=True)
        if name not in members:
            known = ", ".join(sorted(members)) or "none"
            raise ReplicaUnavailable(f"no replica named {name!r} is registered (registered: {known}); "
                                     f"start it with 'python run_server.py --name {name}'", replica=name)
        return members[name]

    def _proxy(self, name: str, refresh: bool = False, uri: Optional[str] = None) -> Proxy:
        """This thread's proxy to ``name`` at ``uri`` (default: where the name server says it is)."""
        proxies = getattr(self._local, "proxies", None)
        if proxies is None:
            proxies = self._local.proxies = {}
            self._local.uris = {}
        uri = uri or self._lookup(name, refresh)
        proxy = proxies.get(name)
        if proxy is None or self._local.uris.get(name) != uri:
            if proxy is not None:
                proxy._pyroRelease()
            proxy = proxies[name] = Proxy(uri)
            self._local.uris[name] = uri
            with self._uris_lock:
                self._all_proxies.add(proxy)
        proxy._pyroTimeout = self.timeout
        return proxy

    def _drop(self, name: str) -> None:
        proxy = getattr(self._local, "proxies", {}).pop(name, None)
        if proxy is not None:
            proxy._pyroRelease()

    def _reusable(self, name: str) -> Optional[Proxy]:
        """This thread's proxy to ``name`` when it is connected, alive and still
        at the address the name server gave (the common case: no set-up)."""
        proxy = getattr(self._local, "proxies", {}).get(name)
        if (proxy is None or proxy._pyroConnection is None or self._local.uris.get(name) != self._uris.get(name)
                or connection_looks_dead(proxy)):
            return None
        return proxy

    def _connected(self, name: str) -> Proxy:
        """A connected proxy to ``name``, looking its address up again if it moved."""
        reusable = self._reusable(name)
        if reusable is not None:
            return reusable
        proxy = self._proxy(name)
        failure = self._connect(name, proxy)
        if failure is None:
            return proxy
        try:
            moved = self._lookup(name, refresh=True) != str(proxy._pyroUri)
        except NameServerUnavailable:
            moved = False
        if moved:
            proxy = self._proxy(name)
            failure = self._connect(name, proxy)
            if failure is None:
                return proxy
        raise ReplicaUnavailable(
            f"replica {name} at {proxy._pyroUri.location} is unreachable ({failure}); {unreachable_advice(name, failure)}",
            replica=name, cause=str(failure))

    def _connect(self, name: str, proxy: Proxy) -> Optional[BaseException]:
        """Connect ``proxy``; the error if that failed (and the proxy is dropped).

        Connecting gets a short deadline of its own: a replica that does not
        even accept the connection (cut off) should not cost the whole timeout.
        """
        proxy._pyroTimeout = min(self.timeout, CONNECT_TIMEOUT)
        try:
            ensure_connected(proxy)
            return None
        except pyro_errors.CommunicationError as error:
            self._drop(name)
            return error
        finally:
            proxy._pyroTimeout = self.timeout

    def _candidates(self) -> list[str]:
        if self.replica is not None:
            return [self.replica]
        names = list(self.replicas())
        if not names:
            names = list(self.replicas(refresh=True))
        if not names:
            raise ReplicaUnavailable("no replica is registered in the name server; start one with "
                                     "'python run_server.py --name replica1'")
        random.shuffle(names)
        return names

    # ------------------------------------------------------------- calls
    def _invoke(self, method: str, *args: Any) -> Any:
        """Call ``method`` on a replica; while the replicas that could take it
        say they are still starting (catching up), wait for them within the timeout."""
        deadline = time.monotonic() + self.timeout
        pause = STARTING_POLL
        while True:
            try:
                return self._invoke_once(method, *args)
            except ReplicaUnavailable as error:
                if not getattr(error, "starting", False) or time.monotonic() + pause > deadline:
                    raise
                log.debug("%s: %s; asking again in %.0f ms", method, error, pause * 1000.0)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _invoke_once(self, method: str, *args: Any) -> Any:
        is_write = method in _WRITES
        debugging = log.isEnabledFor(logging.DEBUG)
        last_error: Optional[RmiKvError] = None
        starting: Optional[RmiKvError] = None
        for name in self._candidates():
            try:
                proxy = self._connected(name)
            except ReplicaUnavailable as error:
                last_error = error
                continue  # nothing was sent: another replica may take it
            started = time.perf_counter()
            if debugging:
                log.debug("-> %s %s%s", name, method, _short(args))
            try:
                result = getattr(proxy, method)(*args)
            except ReplicaUnavailable as error:  # the replica refused before doing anything
                log.debug("<- %s %s refused: %s", name, method, error)
                last_error = error
                if getattr(error, "starting", False):
                    starting = error
                continue
            except RmiKvError as error:
                log.debug("<- %s %s error %s: %s (%.2f ms)", name, method, type(error).__name__, error,
                          (time.perf_counter() - started) * 1000.0)
                raise
            except pyro_errors.CommunicationError as error:
                self._drop(name)
                log.debug("<- %s %s no answer: %s", name, method, error)
                if "too large" in str(error):  # refused as it arrived, before anything was done
                    raise InvalidRequest(f"{method} is too large to send ({error}); nothing was written") from None
                if is_write:
                    raise OutcomeUnknown(
                        f"{method} was sent to {name} but no answer came ({error}); it may or may not have "
                        f"committed: read the key to find out", replica=name) from None
                last_error = ReplicaUnavailable(f"replica {name} did not answer {method} ({error})", replica=name)
                continue
            if debugging:
                log.debug("<- %s %s = %s (%.2f ms)", name, method, _short(result),
                          (time.perf_counter() - started) * 1000.0)
            return result
        assert last_error is not None
        raise starting or last_error

    # ---------------------------------------------------------- the API
    def get(self, key: str) -> Optional[str]:
        """The value of ``key``, or None when it has none."""
        return self._invoke("get", key)

    def put(self, key: str, value: str) -> None:
        """Set ``key`` to ``value`` on every replica."""
        validation.check_key(key, LIMITS)  # a write over the limits is refused here, not lost on the way
        validation.check_value(value, LIMITS)
        self._invoke("put", key, value)

    def delete(self, key: str) -> bool:
        """Delete ``key`` on every replica; True when it had a value."""
        return bool(self._invoke("delete", key))

    def transaction(self, writes: dict, guards: Sequence = ()) -> None:
        """Apply several writes atomically: key -> value, or key -> None to delete;
        with ``guards`` (key, "==" or "!=", value or None), only if each holds
        (CompareFailed otherwise, and nothing is written)."""
        validation.check_writes(writes, LIMITS)
        self._invoke("transaction", writes, *([[list(guard) for guard in guards]] if guards else []))

    def traced(self, writes: dict) -> dict:
        """Like ``transaction``; returns the two-phase commit round message by message."""
        return self._invoke("traced", writes)

    def keys(self, prefix: str = "", limit: int = 100, *, after: Optional[str] = None) -> list[str]:
        """Keys starting with ``prefix``, sorted, at most ``limit``; with ``after`` (the last key
        of the page before), the next page: a cursor that walks the whole key space."""
        cursor = () if after is None else (after,)  # a replica of an older version takes two arguments
        return list(self._invoke("keys", prefix, limit, *cursor))

    def scan(self, prefix: str = "", limit: int = 100, *, after: Optional[str] = None) -> list[tuple[str, str]]:
        """A page of (key, value) pairs of the keys starting with ``prefix``, after ``after``."""
        cursor = () if after is None else (after,)
        return [(key, value) for key, value in self._invoke("scan", prefix, limit, *cursor)]

    def count(self, prefix: str = "") -> int:
        return int(self._invoke("count", prefix))

    def cas(self, key: str, expected: Optional[str], value: Optional[str]) -> None:
        """Set ``key`` to ``value`` only if it holds ``expected`` (None: no value); CompareFailed otherwise."""
        validation.check_key(key, LIMITS)
        for text in (expected, value):
            if text is not None:
                validation.check_value(text, LIMITS)
        self._invoke("cas", key, expected, value)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``, atomically; how many there were."""
        return int(self._invoke("deletePrefix", prefix))

    def ping(self) -> str:
        return self._invoke("ping")

    def watch(self, target: str, *, prefix: bool = False, wait: float = WATCH_WAIT) -> Iterator[dict]:
        """Every change committed from now on to key ``target`` (or, with ``prefix``, to the keys
        starting with it), as it happens, until the caller stops iterating.

        It long-polls one replica (the one in use, or any): each ``watch`` call waits up to
        ``wait`` seconds there for a change. Yields dicts with a ``type``:
        ``watching`` once it is in place (replica, cursor); ``change`` for each change (key,
        value or None, deleted, txid, committed_at, replica, seq); ``lost`` when the replica went
        away (error: why; it keeps trying, the same replica first, another unless one was
        chosen); ``resumed`` when a replica answers again: ``missed`` says whether changes may
        have gone by unseen (the replica restarted, another one answers, or too many changes
        came meanwhile) since ``since`` (when the last change seen was committed, or the watch
        began), and ``resumed_from`` is the cursor it goes on from.
        """
        current, cursor = self.replica, None
        since = time.time()
        lost: Optional[str] = None
        pause = STARTING_POLL
        while True:
            try:
                name, answer = self._watch_once(current, target, prefix, cursor, wait if cursor else 0.001)
            except (ReplicaUnavailable, NameServerUnavailable) as error:
                if cursor is None:
                    raise  # never reached: say so, as every other command does
                if lost is None:
                    lost = current or "any replica"
                    yield {"type": "lost", "replica": current, "error": str(error), "since": since}
                time.sleep(pause)
                pause = min(pause * 2, WATCH_RETRY_MAX)
                continue
            pause = STARTING_POLL
            if cursor is None:
                yield {"type": "watching", "replica": name, "target": target, "prefix": prefix,
                       "cursor": answer["next"]}
            elif lost is not None or answer["missed"] or name != current:
                yield {"type": "resumed", "replica": name, "previous": current, "missed": bool(answer["missed"]),
                       "since": since, "resumed_from": answer["resumed_from"]}
            lost, current, cursor = None, name, answer["next"]
            for event in answer["events"]:
                since = event["committed_at"]
                yield {"type": "change", "replica": name, **event}

    def _watch_once(self, current: Optional[str], target: str, prefix: bool, cursor: Optional[dict],
                    wait: float) -> tuple[str, dict]:
        """(replica, answer) of one ``watch`` call: to ``current`` first, then (unless the
        client is pinned to a replica) to any other; ReplicaUnavailable when none answers."""
        if self.replica is not None:
            names = [self.replica]
        else:
            others = [name for name in self._candidates() if name != current]
            names = ([current] if current else []) + others
        last_error: Optional[RmiKvError] = None
        for name in names:
            try:
                proxy = self._connected(name)
                proxy._pyroTimeout = wait + self.timeout
                try:
                    return name, proxy.watch(target, prefix, cursor, wait)
                finally:
                    proxy._pyroTimeout = self.timeout
            except (ReplicaUnavailable, NameServerUnavailable) as error:
                last_error = error
            except pyro_errors.CommunicationError as error:
                self._drop(name)
                last_error = ReplicaUnavailable(f"replica {name} did not answer watch ({error})", replica=name)
        if last_error is None:
            last_error = ReplicaUnavailable("no replica is registered in the name server")
        raise ReplicaUnavailable(str(last_error), replica=getattr(last_error, "replica", None))

    def protocol_events(self, replica: str, cursor: Optional[dict], wait: float = WATCH_WAIT) -> dict:
        """One long poll of ``replica``'s protocol feed (``KeyValue.protocolEvents``): the messages
        of the rounds it coordinated after ``cursor`` (None: from now), waiting up to ``wait``
        seconds for one; ReplicaUnavailable when it does not answer."""
        proxy = self._connected(replica)
        proxy._pyroTimeout = wait + self.timeout
        try:
            return dict(proxy.protocolEvents(cursor, wait))
        except pyro_errors.CommunicationError as error:
            self._drop(replica)
            raise ReplicaUnavailable(f"replica {replica} did not answer protocolEvents ({error})",
                                     replica=replica) from None
        finally:
            proxy._pyroTimeout = self.timeout

    def status_of(self, replica: str) -> dict:
        """``replica``'s status, as one entry of ``status`` (``reachable``, ``latency_ms``, and
        ``error`` when it did not answer)."""
        return self._ask_member(replica, self._lookup(replica), True, "status")

    def snapshot_open(self) -> dict:
        """Begin a consistent copy of a replica's committed data (the replica in use, or any):
        ``id``, ``replica``, ``digest``, ``keys``, ``taken_at``; page through it on that replica."""
        return dict(self._invoke("snapshotOpen"))

    def snapshot_page(self, replica: str, snapshot_id: str, after: Optional[str] = None,
                      limit: int = 1000) -> dict:
        """The entries of snapshot ``snapshot_id`` on ``replica`` after key ``after``: ``entries``, ``more``."""
        return dict(self._call_on(replica, "snapshotPage", snapshot_id, after, limit))

    def snapshot_close(self, replica: str, snapshot_id: str) -> bool:
        """End snapshot ``snapshot_id`` on ``replica``."""
        return bool(self._call_on(replica, "snapshotClose", snapshot_id))

    def _call_on(self, name: str, method: str, *args: Any) -> Any:
        """``method`` on replica ``name`` itself (a read: no answer is ReplicaUnavailable)."""
        proxy = self._connected(name)
        try:
            return getattr(proxy, method)(*args)
        except pyro_errors.CommunicationError as error:
            self._drop(name)
            raise ReplicaUnavailable(f"replica {name} did not answer {method} ({error})", replica=name) from None

    def status(self) -> list[dict]:
        """One status dict per member, sorted by name; unreachable ones say why.

        The members are every name the name server lists and every member a
        reachable replica counts (its ``members``): a member the name server
        does not list is reached at the address a replica last knew for it
        (``member_uris``). Each dict carries ``reachable``, ``registered`` (in
        the name server), ``uri`` and ``latency_ms``; an unreachable one also
        ``error`` (what happened and what to do) and ``cause``.
        """
        try:
            registered = self.replicas(refresh=True)
        except NameServerUnavailable:
            registered = self.replicas()
            if not registered:
                raise
        found: dict[str, dict] = {}
        names, uris = set(registered), {}
        for name in sorted(registered):
            found[name] = self._member_status(name, registered[name], registered=True)
            self._learn_members(found[name], names, uris)
        while names - set(found):
            addressed = sorted(name for name in names - set(found) if name in uris)
            for name in addressed:
                found[name] = self._member_status(name, uris[name], registered=False)
                self._learn_members(found[name], names, uris)
            if not addressed:
                for name in names - set(found):
                    found[name] = {"name": name, "uri": None, "reachable": False, "registered": False,
                                   "cause": "not registered in the name server, and no member knows its address",
                                   "error": f"{name} is not registered in the name server, and no member knows its "
                                            f"address; start it with 'python run_server.py --name {name}'"}
        return [found[name] for name in sorted(found)]

    @staticmethod
    def _learn_members(status: dict, names: set, uris: dict) -> None:
        """Add the members a reachable replica counts, and the addresses it knows, to ``names`` and ``uris``."""
        if status.get("reachable"):
            names.update(status.get("members", ()))
            for name, uri in status.get("member_uris", {}).items():
                uris.setdefault(name, uri)

    def _member_status(self, name: str, uri: str, registered: bool) -> dict:
        """``name``'s status, asked at ``uri`` (its name server entry when ``registered``)."""
        return self._ask_member(name, uri, registered, "status")

    def verify(self) -> list[dict]:
        """Every registered member checks its data against its digest now
        (``KeyValue.verify``); one dict per member, sorted by name, with
        ``reachable`` and ``latency_ms``, and ``error`` where it failed."""
        registered = self.replicas(refresh=True)
        return [self._ask_member(name, registered[name], True, "verify") for name in sorted(registered)]

    def _ask_member(self, name: str, uri: str, registered: bool, method: str) -> dict:
        """``method``'s answer (a dict) from member ``name``, or why there is none."""
        started = time.perf_counter()
        try:
            proxy = self._connected(name) if registered else self._connected_at(name, uri)
            answer = dict(getattr(proxy, method)())
            answer.update(name=answer.get("name", name), reachable=True, registered=registered)
            answer.setdefault("uri", uri)
        except (RmiKvError, pyro_errors.CommunicationError) as error:
            self._drop(name)
            answer = {"name": name, "uri": uri, "reachable": False, "registered": registered, "error": str(error),
                      "cause": getattr(error, "cause", None) or str(error)}
        answer["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        return answer

    def _connected_at(self, name: str, uri: str) -> Proxy:
        """A connected proxy to member ``name`` at ``uri``, an address the name server does not give."""
        proxy = self._proxy(name, uri=uri)
        failure = self._connect(name, proxy)
        if failure is not None:
            raise ReplicaUnavailable(
                f"replica {name} is not registered in the name server and is unreachable at its last known "
                f"address {proxy._pyroUri.location} ({failure}); start it with 'python run_server.py --name {name}'",
                replica=name, cause=f"not registered in the name server; {failure}")
        return proxy
