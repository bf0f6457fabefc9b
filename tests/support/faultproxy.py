"""A small user-space TCP fault proxy, for network faults without kernel help.

Put it in front of a server's port and make the server advertise the
proxy's address: everyone then reaches the server through it, and a test can
change what the network does at any moment (the way etcd's robustness tests
do it):

    proxy = FaultProxy("127.0.0.1", 4711)       # listens on 127.0.0.1:<port chosen by the OS>
    proxy.delay(200)     # every chunk, either way, arrives 200 ms after it was sent
    proxy.drop()         # reset every open connection; new ones are reset at once
    proxy.blackhole()    # accept and swallow: nothing is forwarded, nothing answers
    proxy.passthrough()  # back to normal
    proxy.close()

Leaving ``blackhole`` closes the connections that lost bytes (their stream is
broken for good, as a TCP connection whose peer gave up would be); the
others carry on. Delay is latency, not bandwidth: chunks are forwarded in
order, each at its own arrival time plus the delay.
"""
from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from typing import Optional

PASS, DELAY, DROP, BLACKHOLE = "pass", "delay", "drop", "blackhole"
_CHUNK = 65536
_EOF = object()


def _reset(sock: Optional[socket.socket]) -> None:
    """Close with an RST (SO_LINGER 0): the other side sees the connection die at once."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One proxied connection: client <-> upstream, a reader and a writer per direction."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket, upstream: Optional[socket.socket]) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream  # None: accepted during a black hole, never connected
        self.swallowed = 0
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._ends = 0
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        pairs = [(self.client, self.upstream, "up")]
        if self.upstream is not None:
            pairs.append((self.upstream, self.client, "down"))
        for source, destination, direction in pairs:
            chunks: queue.Queue = queue.Queue()
            reader = threading.Thread(target=self._read, args=(source, chunks), daemon=True,
                                      name=f"faultproxy-{direction}-read")
            self._threads.append(reader)
            if destination is not None:
                writer = threading.Thread(target=self._write, args=(destination, chunks), daemon=True,
                                          name=f"faultproxy-{direction}-write")
                self._threads.append(writer)
        for thread in self._threads:
            thread.start()

    def _read(self, source: socket.socket, chunks: queue.Queue) -> None:
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            if not data:
                chunks.put((0.0, _EOF))
                if self.upstream is None:
                    self.close()
                return
            self.proxy._count("received", len(data))
            mode, delay = self.proxy.mode_now()
            if mode == BLACKHOLE or self.upstream is None:
                with self._lock:
                    self.swallowed += len(data)
                self.proxy._count("swallowed", len(data))
                continue
            if mode == DROP:  # raced with drop(): this link is being reset
                chunks.put((0.0, _EOF))
                return
            chunks.put((time.monotonic() + (delay if mode == DELAY else 0.0), data))

    def _write(self, destination: socket.socket, chunks: queue.Queue) -> None:
        while True:
            due, data = chunks.get()
            if data is _EOF:
                try:
                    destination.shutdown(socket.SHUT_WR)  # pass the half-close on, after the data
                except OSError:
                    pass
                self._end()
                return
            if self.closed.wait(max(0.0, due - time.monotonic())):  # the delay mode's hold, cut short by close()
                return
            try:
                destination.sendall(data)
            except OSError:
                self.close()
                return
            self.proxy._count("forwarded", len(data))

    def _end(self) -> None:
        with self._lock:
            self._ends += 1
            both = self._ends >= 2
        if both:
            self.close(reset=False)

    def close(self, reset: bool = True) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            if reset:
                _reset(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        self.proxy._forget(self)


class FaultProxy:
    """A threaded TCP proxy on ``listen_host`` (port chosen by the OS) to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1",
                 listen_port: int = 0, connect_timeout: float = 2.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._mode = PASS
        self._delay = 0.0
        self._links: set[_Link] = set()
        self.counters = {"accepted": 0, "refused": 0, "received": 0, "forwarded": 0, "swallowed": 0, "reset": 0}
        self._stopped = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # ----------------------------------------------------------------- modes
    @property
    def mode(self) -> str:
        return self.mode_now()[0]

    def mode_now(self) -> tuple[str, float]:
        with self._lock:
            return self._mode, self._delay

    def passthrough(self) -> None:
        """Forward everything at once; connections that lost bytes in a black hole are closed."""
        self._set(PASS, 0.0)

    def delay(self, milliseconds: float) -> None:
        """Forward every chunk, either way, ``milliseconds`` after it arrived."""
        self._set(DELAY, milliseconds / 1000.0)

    def drop(self) -> None:
        """Reset every open connection now, and every new one as soon as it is accepted."""
        self._set(DROP, 0.0)
        for link in self._snapshot():
            self._count("reset", 1)
            link.close(reset=True)

    def blackhole(self) -> None:
        """Accept connections and swallow their bytes: nothing is forwarded either way."""
        self._set(BLACKHOLE, 0.0)

    def _set(self, mode: str, delay: float) -> None:
        with self._lock:
            previous = self._mode
            self._mode, self._delay = mode, delay
        if previous == BLACKHOLE and mode != BLACKHOLE:
            for link in self._snapshot():
                if link.swallowed or link.upstream is None:
                    link.close(reset=True)

    # ------------------------------------------------------------- plumbing
    def _snapshot(self) -> list[_Link]:
        with self._lock:
            return list(self._links)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _count(self, name: str, amount: int) -> None:
        with self._lock:
            self.counters[name] += amount

    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            mode, _ = self.mode_now()
            if mode == DROP:
                self._count("refused", 1)
                _reset(client)
                continue
            upstream = None
            if mode != BLACKHOLE:
                try:
                    upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
                except OSError:
                    self._count("refused", 1)
                    _reset(client)  # the target is down: so is the proxy, for this client
                    continue
                upstream.settimeout(None)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                if self._stopped.is_set():
                    _reset(client)
                    _reset(upstream)
                    return
                self._links.add(link)
                self.counters["accepted"] += 1
            link.start()

    def close(self) -> None:
        """Stop accepting and reset every connection."""
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._acceptor.join(timeout=2)
        for link in self._snapshot():
            link.close(reset=True)

    def __enter__(self) -> "FaultProxy":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
