"""Finding things: the name server, replica names, member URIs, reusable proxies.

Pyro5 proxies belong to one thread. A ``ProxyPool`` keeps idle proxies to one
URI; a thread checks one out, claims it, and gives it back, so connections
are reused across calls without sharing a proxy between threads.
"""
from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from typing import Any, Callable, Iterator, Optional

from Pyro5 import config as pyro_config
from Pyro5 import errors as pyro_errors
from Pyro5.api import Proxy

from rmi_kv.config import PROJECT_PREFIX, REMOVED_PREFIX, REPLICA_PREFIX
from rmi_kv.errors import NameServerUnavailable

log = logging.getLogger(__name__)

NAMESERVER_OBJECT = "Pyro.NameServer"


def object_name(replica: str) -> str:
    """The name a replica registers under in the name server."""
    return REPLICA_PREFIX + replica


def nameserver_uri(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"PYRO:{NAMESERVER_OBJECT}@{host}:{port}"


def connect_nameserver(host: str, port: int, *, timeout: float = 3.0) -> Proxy:
    """A bound proxy to the name server, or NameServerUnavailable with what to do."""
    proxy = Proxy(nameserver_uri(host, port))
    proxy._pyroTimeout = timeout
    try:
        proxy._pyroBind()
    except pyro_errors.CommunicationError as error:
        proxy._pyroRelease()
        if not pyro_config.SSL and speaks_tls(host, port, timeout=min(timeout, 2.0)):
            raise NameServerUnavailable(
                f"the name server at {host}:{port} asks for TLS, and this client connected without it; pass the "
                "directory of the client certificates (client.pem, client.key, ca.pem) with --tls-dir DIR",
                host=host, port=port, tls=True) from None
        raise NameServerUnavailable(
            f"no name server at {host}:{port} ({error}); start one with "
            f"'python run_nameserver.py --host {host} --port {port}'", host=host, port=port) from None
    return proxy


def speaks_tls(host: str, port: int, *, timeout: float = 2.0) -> bool:
    """Whether something at host:port answers a TLS handshake (a name server that asks for TLS closes
    a plain Pyro connection at once, which looks like no name server at all). Its certificate is not
    checked: this only tells what to say."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw):
            return True
    except ssl.SSLEOFError:
        return False  # closed without a word of TLS
    except ssl.SSLError as error:
        return "WRONG_VERSION" not in str(error).upper()  # a TLS alert (a client certificate is wanted): TLS
    except OSError:
        return False


def list_registrations(nameserver: Proxy) -> tuple[dict[str, str], set[str]]:
    """What the name server lists: replica name -> URI string for every
    registered replica, and the names an operator marked removed."""
    try:
        entries = nameserver.list(prefix=PROJECT_PREFIX)
    except pyro_errors.CommunicationError as error:
        raise NameServerUnavailable(f"the name server stopped answering: {error}") from None
    registered = {name[len(REPLICA_PREFIX):]: str(uri) for name, uri in entries.items()
                  if name.startswith(REPLICA_PREFIX)}
    removed = {name[len(REMOVED_PREFIX):] for name in entries if name.startswith(REMOVED_PREFIX)}
    return registered, removed


def list_members(nameserver: Proxy) -> dict[str, str]:
    """Replica name -> URI string, for every replica registered in the name server."""
    return list_registrations(nameserver)[0]


def connection_looks_dead(proxy: Proxy) -> bool:
    """True when an idle proxy's socket was closed by the other side.

    Pyro5 never sends unsolicited data, so an idle socket that is readable
    means end-of-file or reset: the server restarted or dropped us. Sending a
    request on it could not reach anyone, so it is safe to reconnect first.
    """
    connection = proxy._pyroConnection
    if connection is None:
        return False
    try:
        readable, _, _ = select.select([connection.sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def ensure_connected(proxy: Proxy) -> None:
    """Connect now (raising CommunicationError if the server cannot be reached),
    so that a failure afterwards means the request was sent."""
    if connection_looks_dead(proxy):
        proxy._pyroRelease()
    if proxy._pyroConnection is None:
        proxy._pyroBind()


class ProxyPool:
    """Idle proxies to one URI, handed to one thread at a time."""

    def __init__(self, uri: str, *, timeout: float, max_idle: int = 32) -> None:
        self.uri = uri
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[Proxy] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextlib.contextmanager
    def proxy(self, timeout: Optional[float] = None) -> Iterator[Proxy]:
        """Check out a connected proxy; it goes back to the pool unless the call failed."""
        with self._lock:
            proxy = self._idle.pop() if self._idle else None
        if proxy is None:
            proxy = Proxy(self.uri)
        proxy._pyroClaimOwnership()
        proxy._pyroTimeout = self.timeout if timeout is None else timeout
        try:
            ensure_connected(proxy)
            yield proxy
        except BaseException:
            proxy._pyroRelease()  # a failed call leaves the connection in an unknown state
            raise
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(proxy)
                return
        proxy._pyroRelease()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for proxy in idle:
            with contextlib.suppress(Exception):
                proxy._pyroClaimOwnership()
                proxy._pyroRelease()


class NameServerLink:
    """One shared, reconnecting proxy to the name server, for a replica's
    registrations and look-ups (a replica's threads take turns on it)."""

    def __init__(self, host: str, port: int, *, timeout: float = 2.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proxy: Optional[Proxy] = None
        #: whether the last exchange with the name server worked
        self.reachable = False

    def run(self, action: Callable[[Proxy], Any]) -> Any:
        """``action(proxy)``, reconnecting once; NameServerUnavailable when it cannot be done."""
        with self._lock:
            for attempt in (1, 2):
                if self._proxy is None:
                    try:
                        self._proxy = connect_nameserver(self.host, self.port, timeout=self.timeout)
                    except NameServerUnavailable:
                        self.reachable = False
                        raise
                self._proxy._pyroClaimOwnership()
                try:
                    result = action(self._proxy)
                    self.reachable = True
                    return result
                except (pyro_errors.CommunicationError, NameServerUnavailable) as error:
                    self._proxy._pyroRelease()
                    self._proxy = None
                    if attempt == 2:
                        self.reachable = False
                        raise NameServerUnavailable(f"name server at {self.host}:{self.port}: {error}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def register(self, replica: str, uri: str) -> None:
        self.run(lambda ns: ns.register(object_name(replica), uri, safe=False))
        log.info("registered %s as %s", object_name(replica), uri)

    def registrations(self) -> tuple[dict[str, str], set[str]]:
        """What the name server lists: replica name -> URI, and the names marked removed."""
        return self.run(list_registrations)

    def lookup(self, replica: str) -> Optional[str]:
        """The URI registered for ``replica`` (None: none is)."""
        try:
            return self.run(lambda ns: str(ns.lookup(object_name(replica))))
        except pyro_errors.NamingError:
            return None

    def close(self) -> None:
        with self._lock:
            if self._proxy is not None:
                self._proxy._pyroClaimOwnership()
                self._proxy._pyroRelease()
                self._proxy = None
