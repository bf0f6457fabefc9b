"""Delay, dropped connections and black holes without kernel help: a user-space
TCP fault proxy in front of replica5 (which advertises the proxy's address).
Under each fault: slower, or aborted with a clear error, never wrong."""
from __future__ import annotations

import itertools
import socket
import threading
import time

import pytest

from rmi_kv.errors import OutcomeUnknown, ReplicaUnavailable, TransactionAborted
from support.checks import Ledger, settled, wait_until
from support.faultproxy import FaultProxy
from support.launchers import DECISION_PAUSE_MS, SLOW_DECIDER, VOTE_TIMEOUT

PROXIED = "replica5"
DIRECT = ["replica1", "replica2", "replica3", "replica4"]
_keys = itertools.count(1)


# ----------------------------------------------------------------- the proxy alone
class EchoServer:
    """Echoes every byte; counts what it received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                with self._lock:
                    self.received += len(data)
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=2.0)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # already reset by a proxy in drop mode
        pass
    return sock


def receive(sock: socket.socket, size: int, timeout: float = 2.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def connection_dies(sock: socket.socket, timeout: float = 2.0) -> bool:
    """True when the peer closed or reset the connection within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(10) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_proxy_passes_delays_drops_and_swallows_on_command():
    echo = EchoServer()
    proxy = FaultProxy("127.0.0.1", echo.port)
    try:
        with connect(proxy) as sock:
            sock.sendall(b"hello")
            assert receive(sock, 5) == b"hello"

            proxy.delay(400)  # latency, both ways, per chunk; not bandwidth
            started = time.monotonic()
            for part in (b"a", b"b", b"c"):  # three chunks: each read by the proxy before the next is sent
                received = proxy.counters["received"]
                sock.sendall(part)
                wait_until(lambda: proxy.counters["received"] > received, 5, "the proxy read the chunk")
            assert receive(sock, 3) == b"abc"
            elapsed = time.monotonic() - started
            # 400 ms each way, the three chunks in flight together (one after another: 2.4 s)
            assert 0.8 <= elapsed < 2.3, elapsed

            proxy.passthrough()
            started = time.monotonic()
            sock.sendall(b"fast")
            assert receive(sock, 4) == b"fast"
            assert time.monotonic() - started < 0.4

            proxy.blackhole()  # open connections and new ones: bytes vanish, nothing answers
            before = echo.received
            sock.sendall(b"lost")
            with connect(proxy) as other:
                other.sendall(b"lost too")
                with pytest.raises(socket.timeout):
                    receive(other, 1, timeout=0.3)
            with pytest.raises(socket.timeout):
                receive(sock, 1, timeout=0.3)
            assert echo.received == before
            assert proxy.counters["swallowed"] >= len(b"lost") + len(b"lost too")

            proxy.passthrough()  # the connection that lost bytes is broken for good: closed
            assert connection_dies(sock)

        with connect(proxy) as sock:
            sock.sendall(b"again")
            assert receive(sock, 5) == b"again"
            proxy.drop()  # open connections are reset at once ...
            assert connection_dies(sock)
        try:  # ... and new ones as soon as they are accepted (connect itself may see the reset)
            with connect(proxy) as sock:
                assert connection_dies(sock)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert proxy.counters["refused"] >= 1

        proxy.passthrough()
        with connect(proxy) as sock:
            sock.sendall(b"back")
            assert receive(sock, 4) == b"back"
    finally:
        proxy.close()
        echo.close()
    wait_until(lambda: proxy.open_connections() == 0, 2.0, "every proxied connection closed")


# ----------------------------------------------------------- a cluster behind it
class Faulty:
    """One test's view of the proxied cluster: clients, the proxy, a ledger of writes."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.proxy: FaultProxy = cluster.proxy
        self.ledger = Ledger()
        self._clients = {}

    def client(self, name=None, timeout: float = 5.0):
        key = (name, timeout)
        if key not in self._clients:
            self._clients[key] = self.cluster.client(name, timeout=timeout)
        return self._clients[key]

    @staticmethod
    def key(label: str) -> str:
        return f"proxy:{label}:{next(_keys)}"

    def put(self, name: str, label: str, timeout: float = 5.0):
        """A write through ``name`` with a fresh key; returns (key, error or None, seconds)."""
        key = self.key(label)
        started = time.monotonic()
        error = self.ledger.put(self.client(name, timeout).put, key, f"value-of-{key}")
        return key, error, time.monotonic() - started

    def write_until_acknowledged(self, name: str, timeout: float = 15.0) -> None:
        wait_until(lambda: self.put(name, "after")[1] is None, timeout, f"a write through {name} commits")

    def check_never_wrong(self) -> None:
        """Back in pass mode: all replicas converge, no acknowledged write is lost,
        no aborted write shows, writes of unknown outcome read the same everywhere."""
        names = self.cluster.names
        wait_until(lambda: settled(self.client(timeout=3.0).status(), names), 20.0, "replicas converge")
        problems = self.ledger.problems(names, lambda name, key: self.client(name).get(key))
        assert problems == []

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


@pytest.fixture
def faulty(proxied_cluster):
    helper = Faulty(proxied_cluster)
    try:
        yield helper
    finally:
        proxied_cluster.proxy.passthrough()
        helper.close()


def test_delay_makes_operations_slower_never_wrong(faulty):
    for name in DIRECT + [PROXIED]:
        if name != SLOW_DECIDER:
            assert faulty.put(name, "warm")[1] is None

    faulty.proxy.delay(100)  # below the vote timeout: slower, still committed
    key, error, elapsed = faulty.put("replica1", "slow")
    assert error is None
    assert elapsed >= 0.35, elapsed  # canCommit and doCommit each cross the proxy twice
    reader = faulty.client(PROXIED)
    started = time.monotonic()
    assert reader.get(key) == faulty.ledger.acknowledged[key]
    assert time.monotonic() - started >= 0.2
    assert faulty.put(PROXIED, "slow-coordinator")[1] is None

    writer = faulty.client(PROXIED, timeout=VOTE_TIMEOUT)
    writer.ping()  # connected before the delay grows: the next request is surely sent

    faulty.proxy.delay(1500)  # beyond the vote timeout: aborted, named, on time
    key, error, elapsed = faulty.put("replica2", "too-slow")
    assert isinstance(error, TransactionAborted), error
    assert PROXIED in error.replicas and "nothing was written" in str(error)
    assert f"did not vote within {VOTE_TIMEOUT:g} s" in error.replicas[PROXIED]
    assert elapsed < VOTE_TIMEOUT + 1.5, elapsed
    for name in DIRECT:  # nothing was written, and reads elsewhere go on
        assert faulty.client(name).get(key) is None

    # the answer is lost, the request is not: outcome unknown, and the write lands late
    late_key, error, _ = faulty.put(PROXIED, "late", timeout=VOTE_TIMEOUT)
    assert isinstance(error, OutcomeUnknown), error
    assert "read the key to find out" in str(error)
    wait_until(lambda: all(faulty.client(name).get(late_key) == f"value-of-{late_key}" for name in DIRECT),
               10.0, "the delayed write lands")

    faulty.proxy.passthrough()
    faulty.write_until_acknowledged("replica3")
    faulty.check_never_wrong()


def test_dropped_connections_make_writes_abort_and_reads_fail_over(faulty):
    key, error, _ = faulty.put("replica1", "before")
    assert error is None
    faulty.client(PROXIED, timeout=2.0).ping()

    faulty.proxy.drop()
    for coordinator in ("replica1", "replica4"):
        _, error, elapsed = faulty.put(coordinator, "dropped")
        assert isinstance(error, TransactionAborted), error
        assert set(error.replicas) == {PROXIED}
        assert "unreachable" in error.replicas[PROXIED]
        assert elapsed < VOTE_TIMEOUT + 1.0, elapsed  # a reset is noticed at once
    with pytest.raises(ReplicaUnavailable) as raised:  # the reset comes before the request: nothing sent
        faulty.client(PROXIED, timeout=2.0).get(key)
    assert PROXIED in str(raised.value)
    _, error, _ = faulty.put(PROXIED, "via-dropped")
    assert isinstance(error, ReplicaUnavailable), error
    anyone = faulty.client(None)
    for _ in range(20):  # any-replica reads move past the unreachable one
        assert anyone.get(key) == faulty.ledger.acknowledged[key]
    statuses = {status["name"]: status for status in faulty.client("replica2", timeout=2.0).status()}
    assert statuses[PROXIED]["reachable"] is False
    assert len({statuses[name]["digest"] for name in DIRECT}) == 1

    faulty.proxy.passthrough()
    faulty.write_until_acknowledged(PROXIED)
    faulty.write_until_acknowledged("replica2")
    faulty.check_never_wrong()


def test_black_hole_makes_writes_abort_within_the_vote_timeout(faulty):
    key, error, _ = faulty.put("replica2", "before")
    assert error is None
    writer = faulty.client(PROXIED, timeout=VOTE_TIMEOUT)
    writer.ping()  # an open connection, which the black hole will swallow

    faulty.proxy.blackhole()
    _, error, elapsed = faulty.put("replica3", "swallowed")
    assert isinstance(error, TransactionAborted), error
    assert set(error.replicas) == {PROXIED}
    assert f"did not vote within {VOTE_TIMEOUT:g} s" in error.replicas[PROXIED]
    assert VOTE_TIMEOUT * 0.9 <= elapsed < VOTE_TIMEOUT + 1.5, elapsed

    lost_key, error, _ = faulty.put(PROXIED, "unanswered", timeout=VOTE_TIMEOUT)
    assert isinstance(error, OutcomeUnknown), error  # sent, never answered
    with pytest.raises(ReplicaUnavailable):  # a new connection never gets its handshake answered
        faulty.client(PROXIED, timeout=0.5).get(key)
    for name in DIRECT:
        assert faulty.client(name).get(key) == faulty.ledger.acknowledged[key]

    faulty.proxy.passthrough()
    faulty.write_until_acknowledged(PROXIED)
    faulty.check_never_wrong()
    for name in faulty.cluster.names:  # the swallowed request never reached anyone
        assert faulty.client(name).get(lost_key) is None


def test_cut_after_the_vote_the_commit_still_reaches_everyone(faulty):
    """replica5 votes YES, then the network swallows everything to it before doCommit: the write
    is acknowledged (replica5 holds the keys prepared), and replica5 applies it once reachable."""
    coordinator = faulty.client(SLOW_DECIDER)
    coordinator.ping()
    outcome: dict = {}

    def write() -> None:
        started = time.monotonic()
        outcome["error"] = faulty.ledger.put(faulty.client(SLOW_DECIDER, timeout=10.0).put, key, f"value-of-{key}")
        outcome["elapsed"] = time.monotonic() - started

    def decided() -> list:
        mine = [status for status in coordinator.status() if status["name"] == SLOW_DECIDER]
        return mine[0]["unacknowledged_commits"] if mine else []

    key = faulty.key("mid-commit")
    earlier = set(decided())
    writer = threading.Thread(target=write)
    writer.start()
    try:
        # COMMIT is forced at the coordinator, which pauses before doCommit: cut replica5 off now
        txids = wait_until(lambda: set(decided()) - earlier, 10.0, "the coordinator decides", interval=0.01)
        faulty.proxy.blackhole()
    finally:
        writer.join(15.0)
    assert not writer.is_alive()
    assert outcome["error"] is None, outcome  # acknowledged: every participant voted YES, COMMIT is durable
    assert outcome["elapsed"] >= DECISION_PAUSE_MS / 1000.0
    for name in DIRECT:
        assert faulty.client(name).get(key) == f"value-of-{key}"
    # replica5 learns the outcome either by itself (the proxy only cuts traffic *to* it, so its
    # recovery can still ask the coordinator) or from the coordinator re-sending doCommit once healed
    faulty.proxy.passthrough()
    wait_until(lambda: faulty.client(PROXIED).get(key) == f"value-of-{key}", 10.0, "replica5 applies the commit")
    wait_until(lambda: not txids & set(decided()), 10.0, "replica5's acknowledgement reaches the coordinator")
    faulty.check_never_wrong()
