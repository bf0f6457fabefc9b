"""Reaching the other members: the member list fed from the name server, and
connections to each member (proxy pools for calls, batchers for protocol messages).

``Membership`` ties three parts together: the durable member list
(``rmi_kv.core.members``, whose rules say who the members are), the name
server (where their addresses are found, ``NameServerLink``), and the links
to each member (``PeerLinks``). A background refresh picks up new members and
new addresses, and registers this replica again if the name server lost it.
A call to a member that fails to connect re-resolves its address once, so a
restarted member is reached at its new port.
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any, Callable, Iterable, Mapping, Optional

from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.config import Limits, size_allowance
from rmi_kv.core.batching import MessageBatcher
from rmi_kv.core.members import MemberList, MemberStore
from rmi_kv.core.messages import GET_DECISION, HAVE_COMMITTED
from rmi_kv.core.replies import PendingReply
from rmi_kv.errors import NameServerUnavailable, ReplicaUnavailable
from rmi_kv.wire.codec import decode_answers, encode_batch, message_size
from rmi_kv.wire.naming import NameServerLink, ProxyPool

log = logging.getLogger(__name__)


class PeerLinks:
    """Connections to each member: a proxy pool for calls, a batcher for
    protocol messages; dropped when the member moves or leaves."""

    def __init__(self, membership: "Membership") -> None:
        self._membership = membership
        self._pools: dict[str, ProxyPool] = {}
        self._batchers: dict[str, MessageBatcher] = {}
        self._lock = threading.Lock()

    def pool(self, name: str) -> ProxyPool:
        with self._lock:
            pool = self._pools.get(name)
            if pool is None:
                if name not in self._membership.list:
                    raise ReplicaUnavailable(f"{name} is not a member", replica=name)
                uri = self._membership.list.uri_of(name)
                if uri is None:
                    raise ReplicaUnavailable(f"{name} is a member whose address is not known yet", replica=name)
                pool = self._pools[name] = ProxyPool(uri, timeout=self._membership.call_timeout)
            return pool

    def batcher(self, name: str) -> MessageBatcher:
        """The batcher carrying protocol messages to member ``name``."""
        with self._lock:
            batcher = self._batchers.get(name)
            if batcher is None:
                batcher = self._batchers[name] = MessageBatcher(name, _BatchLink(name, self._membership),
                                                                   company=self._membership.company)
            return batcher

    def moved(self, name: str) -> None:
        """``name`` has a new address, or left: its pooled connections are stale."""
        with self._lock:
            old = self._pools.pop(name, None)
        if old is not None:
            old.close()

    def company_changed(self) -> None:
        """A transaction of this coordinator ended: batches waiting for its company look again."""
        with self._lock:
            batchers = list(self._batchers.values())
        for batcher in batchers:
            batcher.recheck()

    def batch_counts(self) -> tuple[int, int]:
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


class Membership:
    """The members of the cluster as one replica sees them, and the ways to reach them."""

    def __init__(self, self_name: str, ns_host: str, ns_port: int, *, store: Optional[MemberStore] = None,
                 call_timeout: float = 2.0, ns_timeout: float = 2.0, limits: Limits = Limits(),
                 company: Callable[[], int] = lambda: 0) -> None:
        self.self_name = self_name
        #: how many transactions this replica coordinates now: its batchers wait for that company
        self.company = company
        self.call_timeout = call_timeout
        self.limits = limits
        self.self_uri: Optional[str] = None
        self.nameserver = NameServerLink(ns_host, ns_port, timeout=ns_timeout)
        self.links = PeerLinks(self)
        self.list = MemberList(store=store, on_address_change=self.links.moved)

    @property
    def nameserver_reachable(self) -> bool:
        return self.nameserver.reachable

    # ----------------------------------------------------------- name server
    def register(self, uri: str) -> None:
        """Register (again) this replica's URI under its name; it is a member of its own list."""
        self.self_uri = uri
        self.nameserver.register(self.self_name, uri)
        self.list.learn({self.self_name: uri})

    def registrations(self) -> tuple[dict[str, str], set[str]]:
        """What the name server lists: replica name -> URI, and the names marked removed."""
        return self.nameserver.registrations()

    def refresh(self) -> dict[str, Optional[str]]:
        """Merge what the name server lists into the member list (it never
        shrinks the list); register this replica again if it went missing.
        Returns the members and their URIs."""
        registered, removed = self.registrations()
        self.list.merge_listing(registered, removed, self_name=self.self_name)
        if self.self_uri is not None and registered.get(self.self_name) != self.self_uri:
            log.warning("name server lost or changed this replica's entry; registering again")
            self.register(self.self_uri)
        return self.members()

    def resolve_again(self, name: str) -> bool:
        """Look ``name`` up again; True when its address changed."""
        try:
            uri = self.nameserver.lookup(name)
        except NameServerUnavailable:
            return False
        if uri is None or name not in self.list or self.list.uri_of(name) == uri:
            return False
        self.list.learn({name: uri})
        return True

    # --------------------------------------------------------------- members
    def learn(self, members: Mapping[str, Optional[str]]) -> None:
        self.list.learn(members)

    def forget(self, names: set[str]) -> None:
        self.list.forget(names)

    def members(self) -> dict[str, Optional[str]]:
        """Member name -> last known URI (None when not known yet)."""
        return self.list.members()

    def names(self) -> list[str]:
        return self.list.names()

    def removed(self) -> list[str]:
        return self.list.removed()

    def uri_of(self, name: str) -> Optional[str]:
        return self.list.uri_of(name)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a member, reloading the list once if it is not (yet) known."""
        if name in self.list:
            return True
        try:
            self.refresh()
        except NameServerUnavailable:
            return False
        return name in self.list

    # ----------------------------------------------------------------- links
    def pool(self, name: str) -> ProxyPool:
        return self.links.pool(name)

    def batcher(self, name: str) -> MessageBatcher:
        return self.links.batcher(name)

    def batch_counts(self) -> tuple[int, int]:
        """Protocol calls sent to members so far, and the messages they carried."""
        return self.links.batch_counts()

    def close(self) -> None:
        self.links.close()
        self.nameserver.close()


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
             lazy: bool = False) -> PendingReply:
        """Queue a protocol message for the member's next batch (not sent after
        ``expires``, a time.monotonic() value; a ``lazy`` one may wait a moment
        for company); the pending reply resolves to a ``Reply``."""
        return self.membership.batcher(self.name).submit((message, *args), message_size(message, args), expires, lazy)

    def getDecision(self, txid: str) -> str:
        return self.call(GET_DECISION, txid)

    def haveCommitted(self, txid: str, participant: str) -> None:
        return self.call(HAVE_COMMITTED, txid, participant)


class PeerCalls:
    """One method called on several members at once, each answer on its own
    (``core.failover.Call``: lease renewals, epoch votes and installs)."""

    def __init__(self, membership: Membership, workers: int = 8) -> None:
        self.membership = membership
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="peer-call")

    def __call__(self, names: Iterable[str], method: str, *args: Any, timeout: float) -> dict:
        futures = {name: self._executor.submit(PeerHandle(name, self.membership).call, method, *args, timeout=timeout)
                   for name in names}
        answers: dict[str, tuple[Any, Optional[BaseException]]] = {}
        for name, future in futures.items():
            try:
                answers[name] = (future.result(), None)
            except Exception as error:  # a member that did not answer is an answer too
                answers[name] = (None, error)
        return answers

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


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
        self.max_text = membership.limits.max_message_bytes() - 64 * 1024

    def _alone(self, message: list) -> list:
        """One message as a call of its own (JSON escapes can make a legal
        transaction of control characters too big for a batch)."""
        limit = self.handle.membership.call_timeout + size_allowance(message_size(message[0], tuple(message[1:])))
        try:
            return [True, self.handle.call(message[0], *message[1:], timeout=limit)]
        except Exception as error:
            return [False, error]

    def __call__(self, messages: list) -> list:
        text = encode_batch(messages)
        if 2 * len(text.encode("utf-8")) > self.max_text:  # serpent may double it: too big for one message
            return [self._alone(message) for message in messages]
        membership = self.handle.membership
        limit = membership.call_timeout + size_allowance(len(text))  # a large batch takes longer to carry
        uri = membership.uri_of(self.handle.name)
        proxy = getattr(self._connections, "proxy", None)
        if proxy is not None and self._connections.uri != uri:  # the member moved
            self._drop(proxy)
            proxy = None
        if proxy is None and uri is not None:
            proxy = self._connections.proxy = Proxy(uri)
            self._connections.uri = uri
        if proxy is not None:
            if proxy._pyroTimeout != limit:
                proxy._pyroTimeout = limit
            try:
                return decode_answers(proxy.batch(text), self.handle.name)
            except pyro_errors.TimeoutError:
                self._drop(proxy)
                raise self.handle.unanswered("batch", limit) from None
            except pyro_errors.CommunicationError:
                self._drop(proxy)
        return decode_answers(self.handle.call("batch", text, timeout=limit), self.handle.name)

    def _drop(self, proxy: Proxy) -> None:
        proxy._pyroRelease()
        self._connections.proxy = None
