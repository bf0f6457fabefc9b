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
from typing import Optional

from Pyro5 import errors as pyro_errors
from Pyro5 import protocol
from Pyro5.serializers import SerpentSerializer
from Pyro5.server import Daemon

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
    """Make every Pyro5 message that is compressed, or not in serpent, fail at
    its header, before its payload is read (idempotent)."""
    protocol.ReceivingMessage.__init__ = _refusing_message_init


class ConnectionGuard:
    """Which connections a daemon holds, and which one to drop when full."""

    IDLE, BUSY = "idle", "busy"

    def __init__(self, limit: int = 200, handshake_timeout: float = 5.0, idle_timeout: float = 300.0) -> None:
        self.limit = limit
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        #: connection -> [state, since]
        self._connections: dict = {}
        self.evicted = 0
        self.denied = 0

    def admit(self, connection) -> bool:
        """Register a new connection, closing the longest-idle one if full."""
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

    def forget(self, connection) -> None:
        with self._lock:
            self._connections.pop(connection, None)

    def close_all(self) -> None:
        """Close every connection (a clean shutdown need not wait for each one)."""
        with self._lock:
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def count(self) -> int:
        with self._lock:
            return len(self._connections)

    def _longest_idle(self):
        idle = [(since, id(conn), conn) for conn, (state, since) in self._connections.items() if state == self.IDLE]
        return min(idle)[2] if idle else None

    def _close(self, connection) -> None:
        del self._connections[connection]
        self.evicted += 1
        log.info("closing the connection idle the longest to make room (limit %d)", self.limit)
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)  # wakes its worker, which then ends
        except OSError:
            pass

    def _track(self, connection) -> None:
        """Note when the connection waits for a request (idle) and when it runs one (busy)."""
        receive = connection.recv
        entries = self._connections

        def tracked_recv(size: int) -> bytes:
            starts_message = size == 6  # Pyro5 reads 'PYRO' + version first for every message
            if starts_message:
                entry = entries.get(connection)
                if entry is not None:
                    entry[0], entry[1] = self.IDLE, time.monotonic()
            data = receive(size)
            if starts_message:
                entry = entries.get(connection)
                if entry is not None:
                    entry[0] = self.BUSY
            return data

        connection.recv = tracked_recv


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

    def _handshake(self, conn, denied_reason: Optional[str] = None) -> bool:
        if denied_reason is None and not self.guard.admit(conn):
            denied_reason = "too many connections; try again later"
        conn.settimeout(self.guard.handshake_timeout)
        if isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock.do_handshake()
                conn.rmi_kv_role = role_of(conn.sock.getpeercert())
            except (OSError, ValueError) as error:
                log.info("TLS handshake failed: %s", error)
                self.guard.forget(conn)
                conn.close()
                return False
        accepted = super()._handshake(conn, denied_reason)
        if accepted:
            conn.settimeout(self.guard.idle_timeout)
        else:
            self.guard.forget(conn)
        return accepted

    def _clientDisconnect(self, conn) -> None:
        self.guard.forget(conn)
        super()._clientDisconnect(conn)


class GuardedDaemon(GuardedDaemonMixin, Daemon):
    """A Pyro5 daemon whose connections are bounded by a ConnectionGuard."""

    def __init__(self, *args, guard: Optional[ConnectionGuard] = None, **kwargs) -> None:
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


def check_bind_address(host: str, insecure: bool, tls: bool = False) -> Optional[str]:
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
