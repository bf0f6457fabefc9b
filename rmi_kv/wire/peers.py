"""A replica's view of the other members, and handles to call them.

The members are kept durably by the replicas themselves (``MemberStore``,
the replica's own storage); the name server is only where their addresses
are found. So the member set never shrinks because a name server forgot,
lost or never had an entry (a restart without ``--storage``): a member
leaves only when an operator removes it. Invariants:

- a name the name server lists, not marked removed there, is a member;
- a member the name server does not list stays a member, at its last known
  URI (it may well still run there: the name server merely forgot it);
- a name is dropped only by an operator's removal: ``forget`` (told by the
  operator command) or the name server's removal marker;
- a removed name that registers again (a removed replica started again,
  which sets its old data aside and catches up) is a member again.

A background refresh picks up new members and new addresses, and registers
this replica again if the name server lost it. A call to a member that fails
to connect re-resolves its address once, so a restarted member is reached at
its new port.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any, Mapping, Optional, Protocol

from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.core.batching import MessageBatcher, decode_answers, encode_batch
from rmi_kv.config import Limits
from rmi_kv.errors import NameServerUnavailable, ReplicaUnavailable
from rmi_kv.wire.naming import ProxyPool, connect_nameserver, list_registrations, object_name

log = logging.getLogger(__name__)


class MemberStore(Protocol):
    """Where a replica keeps its member list durably (its storage)."""

    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        """name -> (last known URI, removed)."""

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        """Force these entries; a URI of None keeps the stored one."""


class _NoStore:
    """The member list of a process that keeps none (an operator command)."""

    def members(self) -> dict[str, tuple[Optional[str], bool]]:
        return {}

    def save_members(self, changes: Mapping[str, tuple[Optional[str], bool]]) -> None:
        pass


class Membership:
    """The member list (durable, in ``store``) and the members' URIs, cached."""

    def __init__(self, self_name: str, ns_host: str, ns_port: int, *, store: Optional[MemberStore] = None,
                 call_timeout: float = 2.0, ns_timeout: float = 2.0) -> None:
        self.self_name = self_name
        self.ns_host = ns_host
        self.ns_port = ns_port
        self.call_timeout = call_timeout
        self.ns_timeout = ns_timeout
        self.self_uri: Optional[str] = None
        self._store: MemberStore = store if store is not None else _NoStore()
        #: say so in the log when the member list changes (a replica's own list, not an operator's look)
        self._log_changes = store is not None
        known = self._store.members()
        #: member name -> last known URI (None: known by name only, from a peer)
        self._uris: dict[str, Optional[str]] = {name: uri for name, (uri, removed) in known.items() if not removed}
        #: names an operator removed
        self._removed: set[str] = {name for name, (_, removed) in known.items() if removed}
        self._pools: dict[str, ProxyPool] = {}
        self._batchers: dict[str, MessageBatcher] = {}
        self._lock = threading.Lock()
        self._ns_lock = threading.Lock()
        self._ns: Optional[Proxy] = None
        self.nameserver_reachable = False

    # ----------------------------------------------------------- name server
    def _with_nameserver(self, action):
        """Run ``action(ns_proxy)`` with one shared, reconnecting name server proxy."""
        with self._ns_lock:
            for attempt in (1, 2):
                if self._ns is None:
                    try:
                        self._ns = connect_nameserver(self.ns_host, self.ns_port, timeout=self.ns_timeout)
                    except NameServerUnavailable:
                        self.nameserver_reachable = False
                        raise
                self._ns._pyroClaimOwnership()
                try:
                    result = action(self._ns)
                    self.nameserver_reachable = True
                    return result
                except (pyro_errors.CommunicationError, NameServerUnavailable) as error:
                    self._ns._pyroRelease()
                    self._ns = None
                    if attempt == 2:
                        self.nameserver_reachable = False
                        raise NameServerUnavailable(f"name server at {self.ns_host}:{self.ns_port}: {error}") from None

    def register(self, uri: str) -> None:
        """Register (again) this replica's URI under its name; it is a member of its own list."""
        self.self_uri = uri
        self._with_nameserver(lambda ns: ns.register(object_name(self.self_name), uri, safe=False))
        self.learn({self.self_name: uri})
        log.info("registered %s as %s", object_name(self.self_name), uri)

    def registrations(self) -> tuple[dict[str, str], set[str]]:
        """What the name server lists: replica name -> URI, and the names marked removed."""
        return self._with_nameserver(list_registrations)

    def refresh(self) -> dict[str, Optional[str]]:
        """Merge what the name server lists into the member list (it never
        shrinks the list); register this replica again if it went missing.
        Returns the members and their URIs."""
        registered, removed = self.registrations()
        if removed:
            self.forget(removed & set(self.names()) - {self.self_name})
        self.learn({name: uri for name, uri in registered.items() if name not in removed})
        if self.self_uri is not None and registered.get(self.self_name) != self.self_uri:
            log.warning("name server lost or changed this replica's entry; registering again")
            self.register(self.self_uri)
        return self.members()

    def learn(self, members: Mapping[str, Optional[str]]) -> None:
        """Take these members (name -> URI, or None when only the name is
        known) into the list, durably; a URI replaces the cached one."""
        changes: dict[str, tuple[Optional[str], bool]] = {}
        with self._lock:
            for name, uri in members.items():
                if name in self._uris and (uri is None or self._uris[name] == uri):
                    continue
                if name not in self._uris and self._log_changes:
                    log.info("member %s joined (%s)", name, uri or "address not known yet")
                changes[name] = (uri, False)
        if not changes:
            return
        self._store.save_members(changes)
        with self._lock:
            for name, (uri, _) in changes.items():
                self._removed.discard(name)
                if uri is not None:
                    self._set_uri(name, uri)
                else:
                    self._uris.setdefault(name, None)

    def forget(self, names: set[str]) -> None:
        """Drop ``names`` for good (an operator removed them), durably."""
        names = set(names)
        if not names:
            return
        self._store.save_members({name: (None, True) for name in names})
        with self._lock:
            for name in names:
                self._removed.add(name)
                self._uris.pop(name, None)
                old = self._pools.pop(name, None)
                if old is not None:
                    old.close()
        if self._log_changes:
            log.info("member(s) %s removed by an operator", ", ".join(sorted(names)))

    def _set_uri(self, name: str, uri: str) -> None:
        if self._uris.get(name) != uri:
            self._uris[name] = uri
            old = self._pools.pop(name, None)
            if old is not None:
                old.close()

    def resolve_again(self, name: str) -> bool:
        """Look ``name`` up again; True when its address changed."""
        try:
            uri = self._with_nameserver(lambda ns: str(ns.lookup(object_name(name))))
        except (NameServerUnavailable, pyro_errors.NamingError):
            return False
        with self._lock:
            if name not in self._uris or self._uris.get(name) == uri:
                return False
        self.learn({name: uri})
        return True

    # --------------------------------------------------------------- members
    def members(self) -> dict[str, Optional[str]]:
        """Member name -> last known URI (None when not known yet)."""
        with self._lock:
            return dict(self._uris)

    def removed(self) -> list[str]:
        """The names an operator removed (they are not members)."""
        with self._lock:
            return sorted(self._removed)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a member, reloading the list once if it is not (yet) known."""
        with self._lock:
            if name in self._uris:
                return True
        try:
            self.refresh()
        except NameServerUnavailable:
            return False
        with self._lock:
            return name in self._uris

    def uri_of(self, name: str) -> Optional[str]:
        with self._lock:
            return self._uris.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._uris)

    def pool(self, name: str) -> ProxyPool:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                uri = self._uris.get(name)
                if uri is None:
                    why = "not a member" if name not in self._uris else "a member whose address is not known yet"
                    raise ReplicaUnavailable(f"{name} is {why}", replica=name)
                pool = self._pools[name] = ProxyPool(uri, timeout=self.call_timeout)
            return pool

    def batcher(self, name: str) -> MessageBatcher:
        """The batcher carrying protocol messages to member ``name``."""
        with self._lock:
            batcher = self._batchers.get(name)
            if batcher is None:
                batcher = self._batchers[name] = MessageBatcher(name, _BatchLink(name, self))
            return batcher

    def batch_counts(self) -> tuple[int, int]:
        """Protocol calls sent to members so far, and the messages they carried."""
        with self._lock:
            batchers = list(self._batchers.values())
        return sum(b.calls for b in batchers), sum(b.messages for b in batchers)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.close()
        for pool in pools:
            pool.close()
        with self._ns_lock:
            if self._ns is not None:
                self._ns._pyroClaimOwnership()
                self._ns._pyroRelease()
                self._ns = None


class PeerHandle:
    """Calls one member's remote methods; Pyro5 failures become ReplicaUnavailable."""

    def __init__(self, name: str, membership: Membership) -> None:
        self.name = name
        self.membership = membership

    def call(self, method: str, *args: Any, timeout: Optional[float] = None) -> Any:
        """Call ``method`` on the member (every protocol message is idempotent,
        so a retry after the member moved to a new address is safe)."""
        for attempt in (1, 2):
            try:
                with self.membership.pool(self.name).proxy(timeout) as proxy:
                    return getattr(proxy, method)(*args)
            except pyro_errors.TimeoutError:
                limit = timeout if timeout is not None else self.membership.call_timeout
                raise self.unanswered(method, limit) from None
            except pyro_errors.CommunicationError as error:
                if attempt == 1 and self.membership.resolve_again(self.name):
                    continue
                raise ReplicaUnavailable(f"{self.name} is unreachable ({error})", replica=self.name) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def unanswered(self, method: str, limit: float) -> ReplicaUnavailable:
        return ReplicaUnavailable(f"{self.name} did not answer {method} within {limit:g} s", replica=self.name)

    def send(self, message: str, *args: Any, expires: Optional[float] = None,
             lazy: bool = False) -> concurrent.futures.Future:
        """Queue a protocol message for the member's next batch (not sent after
        ``expires``, a time.monotonic() value; a ``lazy`` one may wait a moment
        for company); the future resolves to (value, error, elapsed_ms)."""
        size = sum(len(key) + len(value or "") for key, value in args[1].items()) if message == "canCommit" else 0
        return self.membership.batcher(self.name).submit((message, *args), size, expires, lazy)

    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: list) -> bool:
        return self.call("canCommit", txid, writes, coordinator, participants)

    def doCommit(self, txid: str) -> bool:
        return self.call("doCommit", txid)

    def doAbort(self, txid: str) -> bool:
        return self.call("doAbort", txid)

    def getDecision(self, txid: str) -> str:
        return self.call("getDecision", txid)

    def haveCommitted(self, txid: str, participant: str) -> None:
        return self.call("haveCommitted", txid, participant)


class _BatchLink:
    """Sends batches to one member over a connection each sender thread keeps.

    The connection is made once, not checked out of the pool per call. Any
    failure drops it, and the batch goes once more through the pool, which
    reconnects and looks the member up again (a batch is idempotent, like
    every protocol message in it).
    """

    def __init__(self, name: str, membership: Membership) -> None:
        self.handle = PeerHandle(name, membership)
        self._connections = threading.local()
        #: the longest batch text that surely fits in one Pyro5 message
        self.max_text = Limits().max_message_bytes() - 64 * 1024

    def _alone(self, message: list) -> list:
        """One message as a call of its own (JSON escapes can make a legal
        transaction of control characters too big for a batch)."""
        try:
            return [True, self.handle.call(message[0], *message[1:])]
        except Exception as error:
            return [False, error]

    def __call__(self, messages: list) -> list:
        text = encode_batch(messages)
        if 2 * len(text.encode("utf-8")) > self.max_text:  # serpent may double it: too big for one message
            return [self._alone(message) for message in messages]
        membership = self.handle.membership
        uri = membership.uri_of(self.handle.name)
        proxy = getattr(self._connections, "proxy", None)
        if proxy is not None and self._connections.uri != uri:  # the member moved
            self._drop(proxy)
            proxy = None
        if proxy is None and uri is not None:
            proxy = self._connections.proxy = Proxy(uri)
            proxy._pyroTimeout = membership.call_timeout
            self._connections.uri = uri
        if proxy is not None:
            try:
                return decode_answers(proxy.batch(text), self.handle.name)
            except pyro_errors.TimeoutError:
                self._drop(proxy)
                raise self.handle.unanswered("batch", membership.call_timeout) from None
            except pyro_errors.CommunicationError:
                self._drop(proxy)
        return decode_answers(self.handle.call("batch", text), self.handle.name)

    def _drop(self, proxy: Proxy) -> None:
        proxy._pyroRelease()
        self._connections.proxy = None
