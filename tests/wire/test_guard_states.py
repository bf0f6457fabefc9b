"""ConnectionGuard's busy and idle states, read off a real Pyro5 daemon.

The guard learns when a message starts from Pyro5's own reads, and when the
next one is awaited from Pyro5 asking for it; if Pyro5 reads or dispatches
differently, these tests fail rather than the guard closing connections in
the middle of a request."""
from __future__ import annotations

import socket
import threading
from typing import Callable, Iterator

import pytest
from Pyro5 import errors as pyro_errors
from Pyro5 import protocol
from Pyro5.api import expose
from Pyro5.serializers import serializers
from Pyro5.socketutil import SocketConnection

from rmi_kv.wire.hardening import ConnectionGuard, GuardedDaemon
from support import checks

IDLE, BUSY = ConnectionGuard.IDLE, ConnectionGuard.BUSY
SERPENT = serializers["serpent"]
OBJECT = "gate"


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    checks.wait_until(condition, timeout, what, interval=0.005)


@expose
class Gate:
    """``hold`` returns once the test opens the gate: a request in progress."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def hold(self) -> str:
        self.entered.set()
        self.opened.wait(10)
        return "done"


@pytest.fixture
def served() -> Iterator[tuple[GuardedDaemon, Gate]]:
    daemon = GuardedDaemon(host="127.0.0.1", port=0, guard=ConnectionGuard(limit=8, handshake_timeout=5.0,
                                                                          idle_timeout=30.0))
    gate = Gate()
    daemon.register(gate, objectId=OBJECT)
    stop = threading.Event()
    loop = threading.Thread(target=daemon.requestLoop, kwargs={"loopCondition": lambda: not stop.is_set()})
    loop.start()
    try:
        yield daemon, gate
    finally:
        gate.opened.set()
        stop.set()
        daemon.shutdown()
        loop.join(10)


def message(msgtype: int, seq: int, payload: bytes) -> bytes:
    return protocol.SendingMessage(msgtype, 0, seq, SERPENT.serializer_id, payload).data


def connect(daemon: GuardedDaemon) -> SocketConnection:
    """A raw connection that did Pyro5's handshake, byte by byte as a proxy does."""
    host, port = daemon.sock.getsockname()[:2]
    conn = SocketConnection(socket.create_connection((host, port), timeout=10))
    conn.send(message(protocol.MSG_CONNECT, 0, SERPENT.dumps({"handshake": "hello", "object": OBJECT})))
    assert protocol.recv_stub(conn).type == protocol.MSG_CONNECTOK
    return conn


def test_busy_from_the_first_bytes_of_a_message_until_its_answer(served):
    daemon, gate = served
    guard = daemon.guard
    conn = connect(daemon)
    try:
        wait_until(lambda: guard.states() == [IDLE], "idle after the handshake")
        request = message(protocol.MSG_INVOKE, 1, SERPENT.dumpsCall(OBJECT, "hold", (), {}))
        conn.send(request[:protocol._header_size + 3])  # the header and a little of the payload
        wait_until(lambda: guard.states() == [BUSY], "busy while the message is read")
        assert not gate.entered.is_set()
        conn.send(request[protocol._header_size + 3:])
        assert gate.entered.wait(10)
        assert guard.states() == [BUSY]  # running
        gate.opened.set()
        answer = protocol.recv_stub(conn)
        assert answer.type == protocol.MSG_RESULT and SERPENT.loads(answer.data) == "done"
        wait_until(lambda: guard.states() == [IDLE], "idle between messages")
        conn.send(message(protocol.MSG_PING, 2, b"ping"))
        assert protocol.recv_stub(conn).type == protocol.MSG_PING
        wait_until(lambda: guard.states() == [IDLE], "idle again after the next message")
    finally:
        conn.close()
    wait_until(lambda: guard.count() == 0, "the closed connection forgotten")


def test_a_full_guard_closes_the_idle_connection_never_the_busy_one(served):
    daemon, gate = served
    guard = daemon.guard
    guard.limit = 2
    busy, idle = connect(daemon), connect(daemon)
    try:
        busy.send(message(protocol.MSG_INVOKE, 1, SERPENT.dumpsCall(OBJECT, "hold", (), {})))
        assert gate.entered.wait(10)
        wait_until(lambda: sorted(guard.states()) == [BUSY, IDLE], "one busy and one idle connection")
        newcomer = connect(daemon)  # takes the idle one's place
        assert guard.evicted == 1
        with pytest.raises(pyro_errors.ConnectionClosedError):  # the idle one was closed
            idle.send(message(protocol.MSG_PING, 2, b"ping"))
            protocol.recv_stub(idle)
        gate.opened.set()
        assert SERPENT.loads(protocol.recv_stub(busy).data) == "done"
        newcomer.close()
    finally:
        for conn in (busy, idle):
            conn.close()


def test_a_full_guard_of_busy_connections_refuses_with_a_reason(served):
    daemon, gate = served
    guard = daemon.guard
    guard.limit = 1
    busy = connect(daemon)
    try:
        busy.send(message(protocol.MSG_INVOKE, 1, SERPENT.dumpsCall(OBJECT, "hold", (), {})))
        assert gate.entered.wait(10)
        host, port = daemon.sock.getsockname()[:2]
        refused = SocketConnection(socket.create_connection((host, port), timeout=10))
        refused.send(message(protocol.MSG_CONNECT, 0, SERPENT.dumps({"handshake": "hello", "object": OBJECT})))
        answer = protocol.recv_stub(refused)
        assert answer.type == protocol.MSG_CONNECTFAIL
        assert "too many connections" in SERPENT.loads(answer.data)
        assert guard.denied == 1 and guard.states() == [BUSY]
        refused.close()
        gate.opened.set()
        assert SERPENT.loads(protocol.recv_stub(busy).data) == "done"
    finally:
        busy.close()
