"""Guards around Pyro5 for a server that treats every byte as hostile.

- Compressed messages are refused outright: Pyro5 would inflate them with
  no bound, even past its maximum message size (a 48 KB message can become
  50 MB). So are messages in any serializer but serpent: Pyro5 would decode
  whichever one the other side picks.
- ``ConnectionGuard`` bounds the connections a daemon holds. Each one costs a
  worker thread; when the bound is reached, the connection idle the longest
  (or stuck before its handshake) is closed to make room, so a flood of idle
  or silent connections cannot lock other clients out. A connection in the
  middle of a request is never closed. Handshakes have a short deadline.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from typing import Any, Optional

from Pyro5 import errors as pyro_errors
from Pyro5 import protocol
from Pyro5.serializers import SerpentSerializer
from Pyro5.server import Daemon
from Pyro5.socketutil import SocketConnection

from rmi_kv.config import Settings, Timeouts
from rmi_kv.wire.tls import role_of

log = logging.getLogger(__name__)

_original_message_init = protocol.ReceivingMessage.__init__


_SERPENT = SerpentSerializer.serializer_id


def _refusing_message_init(self, header, payload=None):
    _original_message_init(self, header, None)
    if self.flags & protocol.FLAGS_COMPRESSED:
        raise pyro_errors.ProtocolError("compressed messages are refused")
    if self.serializer_id != _SERPENT and self.type != protocol.MSG_PING:  # a ping carries no data
        raise pyro_errors.ProtocolError("only the serpent serializer is accepted")
    if payload is not None:
        self.add_payload(payload)


def refuse_unsafe_messages() -> None:
    """Make every Pyro5 message this process receives that is compressed, or
    not in serpent, fail at its header, before its payload is read (idempotent).

    Process-wide: a server installs it on purpose; a client need not. Pyro5
    has no hook for a message's header, so this wraps ``ReceivingMessage``'s
    constructor (Pyro5 5.17 protocol.py ``ReceivingMessage.__init__``, which
    ``recv_stub`` calls with the header alone).
    """
    protocol.ReceivingMessage.__init__ = _refusing_message_init


class ConnectionGuard:
    """Which connections a daemon holds, and which one to drop when full.

    A connection is idle from when it is admitted, and again each time its
    daemon waits for its next request (``waiting``); it is busy from the
    first bytes of a message on. Only idle ones are closed to make room.
    """

    IDLE, BUSY = "idle", "busy"

    def __init__(self, *, limit: int = Settings.max_connections, handshake_timeout: float = Timeouts.handshake,
                 idle_timeout: float = Timeouts.idle_connection) -> None:
        self.limit = limit
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        #: connection -> [state, since]
        self._connections: dict = {}
        self.evicted = 0
        self.denied = 0

    def admit(self, connection: SocketConnection) -> bool:
        """Register a new connection, closing the longest-idle one if full;
        False (and nothing registered) when every one held is busy."""
        with self._lock:
            if len(self._connections) >= self.limit:
                victim = self._longest_idle()
                if victim is None:
                    self.denied += 1
                    return False
                self._close(victim)
            self._connections[connection] = [self.IDLE, time.monotonic()]
        self._track(connection)
        return True

    def holds(self, connection: SocketConnection) -> bool:
        """True while ``connection`` is admitted and not yet closed or forgotten."""
        with self._lock:
            return connection in self._connections

    def waiting(self, connection: SocketConnection) -> None:
        """The connection waits for its next request: idle from now on."""
        entry = self._connections.get(connection)
        if entry is not None:
            entry[0], entry[1] = self.IDLE, time.monotonic()

    def states(self) -> list[str]:
        """IDLE or BUSY for each connection held, oldest first."""
        with self._lock:
            return [state for state, _since in self._connections.values()]

    def forget(self, connection: SocketConnection) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def close_all(self) -> None:
        """Close every connection (a clean shutdown need not wait for each one)."""
        with self._lock:
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            _shut(connection)

    def count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _longest_idle(self) -> Optional[SocketConnection]:
        idle = [(since, id(conn), conn) for conn, (state, since) in self._connections.items() if state == self.IDLE]
        return min(idle)[2] if idle else None

    def _close(self, connection: SocketConnection) -> None:
        del self._connections[connection]
        self.evicted += 1
        log.info("closing the connection idle the longest to make room (limit %d)", self.limit)
        _shut(connection)  # wakes its worker, which then ends

    def _track(self, connection: SocketConnection) -> None:
        """Mark the connection busy when bytes arrive while it is idle: the start of a message.

        Pyro5 has no hook between reading a message and running it; its reads
        all go through ``SocketConnection.recv`` (Pyro5 5.17 protocol.py
        ``recv_stub``: header, then payload), so this instance's ``recv`` is
        wrapped; tests/wire/test_guard_states.py fails if Pyro5 reads otherwise.
        """
        receive = connection.recv
        entries = self._connections

        def tracked_recv(size: int) -> bytes:
            data = receive(size)
            entry = entries.get(connection)
            if entry is not None and entry[0] == self.IDLE:
                entry[0] = self.BUSY
            return data

        connection.recv = tracked_recv


def _shut(connection: SocketConnection) -> None:
    try:
        connection.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class GuardedDaemonMixin:
    """Adds a ConnectionGuard to a Pyro5 daemon (thread-pool server)."""

    guard: ConnectionGuard

    def tls_handshakes_in_workers(self) -> None:
        """Move TLS handshakes out of accept(): there, one silent client stalls every
        new connection; in the connection's own worker it only costs that worker."""
        listening = getattr(self, "transportServer", None)
        listening = getattr(listening, "sock", None)
        if isinstance(listening, ssl.SSLSocket):
            listening.do_handshake_on_connect = False

    def _handshake(self, conn: SocketConnection, denied_reason: Optional[str] = None) -> bool:
        """Admit the connection, give it its handshake deadline and do the TLS handshake,
        all before Pyro5 reads its first byte.

        No public hook runs that early: Pyro5 5.17 server.py ``Daemon._handshake``
        reads the client's first message (``protocol.recv_stub``) before it calls
        ``validateHandshake``. A handshake that fails never reaches
        ``clientDisconnect`` (svr_threads.py ``ClientConnectionJob.handleConnection``
        just closes it), so the guard forgets it here.
        """
        if denied_reason is None:  # Pyro5 gives a reason when its own pool is full (svr_threads.py denyConnection)
            self.guard.admit(conn)  # when refused, validateHandshake says why
        conn.settimeout(self.guard.handshake_timeout)
        if isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock.do_handshake()
            except (OSError, ValueError) as error:
                log.info("TLS handshake failed: %s", error)
                self.guard.forget(conn)
                conn.close()
                return False
        accepted = super()._handshake(conn, denied_reason)
        if not accepted:
            self.guard.forget(conn)
        return accepted

    def validateHandshake(self, conn: SocketConnection, data: Any) -> Any:
        """Pyro5's hook once the client's connect message is in: refuse a connection
        the guard had no room for (the client is told why), note the role its
        certificate grants, and give it the idle timeout from now on."""
        if not self.guard.holds(conn):
            raise pyro_errors.CommunicationError("too many connections; try again later")
        conn.rmi_kv_role = role_of(conn.getpeercert())
        conn.settimeout(self.guard.idle_timeout)
        return super().validateHandshake(conn, data)

    def handleRequest(self, conn: SocketConnection) -> None:
        """Pyro5's per-request entry: the connection is idle until its next message starts."""
        self.guard.waiting(conn)
        super().handleRequest(conn)

    def clientDisconnect(self, conn: SocketConnection) -> None:
        """Pyro5's hook when a connection ends."""
        self.guard.forget(conn)
        super().clientDisconnect(conn)


class GuardedDaemon(GuardedDaemonMixin, Daemon):
    """A Pyro5 daemon whose connections are bounded by a ConnectionGuard."""

    def __init__(self, *args: Any, guard: Optional[ConnectionGuard] = None, **kwargs: Any) -> None:
        self.guard = guard or ConnectionGuard()
        super().__init__(*args, **kwargs)
        self.tls_handshakes_in_workers()


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_address(host: str, *, insecure: bool, tls: bool = False) -> Optional[str]:
    """Refuse to listen beyond this machine in the clear unless told to.

    Returns a warning to log when an insecure bind was allowed, None when
    the address is fine; raises InvalidRequest when it is refused.
    """
    from rmi_kv.errors import InvalidRequest

    if is_loopback(host) or tls:
        return None
    if not insecure:
        raise InvalidRequest(f"refusing to listen on {host} without TLS: anyone who reaches it could read and "
                             f"change the data. Use --tls-dir DIR, or --insecure if you really mean it")
    return (f"listening on {host} without TLS (--insecure): every request travels in the clear and "
            f"nobody is authenticated")
