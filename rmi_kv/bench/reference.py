"""The yardstick: the same two-phase commit with nothing but Pyro5 and os.fsync.

``python -m rmi_kv.bench --reference`` runs its clients a second time against
these nodes, so every rmi_kv figure can also be read against what Pyro5 and
this machine allow for the same protocol. A reference node does the PUT path
of rmi_kv with the same calls and the same forced writes, and nothing else:

- the coordinator (the node a client calls) sends ``canCommit`` to every
  other node in parallel; each appends a PREPARED line to its log, calls
  ``os.fsync``, and votes yes;
- the coordinator applies the write and forces its decision line;
- it sends ``doCommit`` in parallel; each node applies and forces a COMMIT
  line; the client gets its answer once every node has answered.

That is 2 phases and 9 forced writes per PUT with 5 nodes, as in rmi_kv.
Each node locks the key from its vote to the decision, without waiting: a
vote on a key another transaction holds is no, and the coordinator aborts and
tries again a little later, so concurrent writes of one key never leave the
nodes different. A GET is a dictionary lookup. There is no validation, no
SQLite, no batching, no group commit and no recovery: it keeps nothing safe
and is never a store, only a measuring stick. Nodes use rmi_kv's Pyro5
settings (serpent, the same transport), so the difference between the two
is the cost of rmi_kv's own code.

A node is started as ``python -m rmi_kv.bench.reference NAME DATA_DIR``: it
prints its URI, serves on 127.0.0.1 (OS-chosen port), and exits when its
standard input closes, so it never outlives the benchmark.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import os
import random
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from Pyro5.api import Daemon, Proxy, expose

from rmi_kv.wire.hardening import refuse_unsafe_messages
from rmi_kv.wire.pyro import configure_pyro
from .probe import DigestCheck

#: how long a node may take to start and print its URI
START_TIMEOUT = 30.0
#: a PUT that meets a locked key aborts, waits a random time up to this many seconds
#: times the attempt number (at most 50 times it), and tries again, at most MAX_ATTEMPTS
#: times in all (writers of one key through every node can abort each other for a while
#: on a loaded machine)
CONFLICT_BACKOFF = 0.002
MAX_ATTEMPTS = 200
#: how long a node waits for another node's answer
PEER_TIMEOUT = 30.0


@expose
class ReferenceNode:
    """One node of the bare two-phase commit (see the module's docstring)."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self._log = open(log_path, "ab", buffering=0)
        self._log_lock = threading.Lock()
        self._store: dict[str, str] = {}
        self._staged: dict[str, tuple[str, str]] = {}
        self._lock_holders: dict[str, str] = {}
        self._locks_mutex = threading.Lock()
        self._peers: list[str] = []
        self._counter = itertools.count(1)
        self._fan_out = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="fan-out")
        self._proxies = threading.local()

    def _force(self, line: str) -> None:
        """Append one log line and fsync it: one forced write, never shared."""
        with self._log_lock:
            self._log.write(line.encode("utf-8") + b"\n")
            os.fsync(self._log.fileno())

    def _peer(self, uri: str) -> Proxy:
        """This thread's proxy to ``uri`` (a Pyro5 proxy belongs to one thread)."""
        proxies = self._proxies.__dict__.setdefault("by_uri", {})
        if uri not in proxies:
            proxies[uri] = Proxy(uri)
            proxies[uri]._pyroTimeout = PEER_TIMEOUT
        return proxies[uri]

    def _on_every_peer(self, method: str, *args: object) -> list:
        calls = [self._fan_out.submit(lambda uri=uri: getattr(self._peer(uri), method)(*args))
                 for uri in self._peers]
        return [call.result() for call in calls]

    def connect(self, peer_uris: list[str]) -> int:
        """The other nodes of the reference cluster; returns how many."""
        self._peers = list(peer_uris)
        return len(self._peers)

    def preload(self, items: dict) -> int:
        """Set values without the protocol (the benchmark's preload is not measured)."""
        self._store.update(items)
        return len(items)

    def _lock(self, txid: str, key: str) -> bool:
        """Take ``key`` for ``txid`` unless another transaction holds it (no waiting)."""
        with self._locks_mutex:
            return self._lock_holders.setdefault(key, txid) == txid

    def _unlock(self, txid: str, key: str) -> None:
        with self._locks_mutex:
            if self._lock_holders.get(key) == txid:
                del self._lock_holders[key]

    def canCommit(self, txid: str, key: str, value: str) -> bool:
        if not self._lock(txid, key):
            return False
        self._staged[txid] = (key, value)
        self._force(f"PREPARED {txid} {key} {value}")
        return True

    def doCommit(self, txid: str) -> bool:
        key, value = self._staged.pop(txid)
        self._store[key] = value
        self._force(f"COMMIT {txid}")
        self._unlock(txid, key)
        return True

    def doAbort(self, txid: str) -> bool:
        staged = self._staged.pop(txid, None)
        if staged is not None:
            self._unlock(txid, staged[0])
        return True

    def put(self, key: str, value: str) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            txid = f"{self.name}:{next(self._counter)}"
            if self._lock(txid, key):
                try:
                    if all(self._on_every_peer("canCommit", txid, key, value)):
                        self._store[key] = value
                        self._force(f"DECISION {txid} {key} {value}")
                        self._on_every_peer("doCommit", txid)
                        return
                    self._on_every_peer("doAbort", txid)
                finally:
                    self._unlock(txid, key)
            time.sleep(random.uniform(0.0, CONFLICT_BACKOFF * min(attempt, 50)))
        raise RuntimeError(f"{key!r}: still locked by other writes after {MAX_ATTEMPTS} attempts")

    def get(self, key: str) -> Optional[str]:
        return self._store.get(key)

    def ping(self) -> str:
        return self.name

    def digest(self) -> str:
        """A hash of every key and value: equal on every node after a run."""
        text = "\n".join(f"{key}\t{value}" for key, value in sorted(self._store.items()))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ReferenceClient:
    """What a benchmark worker calls on a reference node: put, get, ping, close."""

    def __init__(self, uri: str, timeout: float) -> None:
        configure_pyro()
        self._proxy = Proxy(uri)
        self._proxy._pyroTimeout = timeout

    def put(self, key: str, value: str) -> None:
        self._proxy.put(key, value)

    def get(self, key: str) -> Optional[str]:
        return self._proxy.get(key)

    def ping(self) -> str:
        return self._proxy.ping()

    def close(self) -> None:
        self._proxy._pyroRelease()


class ReferenceCluster:
    """``size`` reference nodes started as processes on 127.0.0.1, connected to each
    other; stopped on exit. Their logs (NAME.log) and what they wrote to standard
    error (NAME.err) stay in ``data_dir``."""

    def __init__(self, size: int, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.names = [f"reference{number}" for number in range(1, size + 1)]
        self.uris: dict[str, str] = {}
        self._processes: dict[str, subprocess.Popen] = {}

    def _errors_of(self, name: str) -> Path:
        return self.data_dir / f"{name}.err"

    @property
    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self._processes.items()}

    def __enter__(self) -> "ReferenceCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every node, wait for its URI, and tell each about the others."""
        configure_pyro()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            with open(self._errors_of(name), "w") as errors:  # a file: a pipe nobody reads could fill up
                self._processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "rmi_kv.bench.reference", name, str(self.data_dir)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        deadline = time.monotonic() + START_TIMEOUT
        for name, process in self._processes.items():
            self.uris[name] = _read_uri(name, process, deadline, self._errors_of(name))
        for name, uri in self.uris.items():
            with Proxy(uri) as node:
                node.connect([other for other_name, other in self.uris.items() if other_name != name])

    def stop(self) -> None:
        """Close every node's standard input (it then exits); kill those that linger."""
        for process in self._processes.values():
            if process.stdin and not process.stdin.closed:
                process.stdin.close()
        deadline = time.monotonic() + 5.0
        for process in self._processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
            if process.stdout:
                process.stdout.close()
        self._processes.clear()

    def preload(self, batches: Iterable[dict]) -> None:
        proxies = {name: Proxy(uri) for name, uri in self.uris.items()}
        try:
            for batch in batches:
                for proxy in proxies.values():
                    proxy.preload(batch)
        finally:
            for proxy in proxies.values():
                proxy._pyroRelease()

    def check_digests(self) -> DigestCheck:
        """Every node's digest: a reference that lost a write would be no yardstick."""
        digests, unreachable = {}, []
        for name, uri in self.uris.items():
            try:
                with Proxy(uri) as node:
                    digests[name] = node.digest()
            except Exception:  # a node that died: reported, not raised
                unreachable.append(name)
        return DigestCheck.of(digests, unreachable)


def _read_uri(name: str, process: subprocess.Popen, deadline: float, errors: Path) -> str:
    """The URI a starting node prints first; RuntimeError with the last line it wrote to
    ``errors`` if it dies or takes too long."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = process.stdout.readline().strip() if ready else ""
    if not line.startswith("PYRO:"):
        process.kill()
        process.wait(5.0)
        written = [text for text in errors.read_text(errors="replace").splitlines() if text.strip()]
        reason = (written or [line or "no answer in time"])[-1]
        raise RuntimeError(f"reference node {name} did not start: {reason.strip()[:500]}")
    return line


def serve(name: str, data_dir: Path) -> None:
    """Run one node until standard input closes."""
    configure_pyro(server=True)
    refuse_unsafe_messages()  # the reference holds messages to what a replica accepts
    daemon = Daemon(host="127.0.0.1", port=0)
    uri = daemon.register(ReferenceNode(name, Path(data_dir) / f"{name}.log"), "reference")
    print(uri, flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), daemon.shutdown()), daemon=True).start()
    daemon.requestLoop()
    daemon.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m rmi_kv.bench.reference NAME DATA_DIR  (started by python -m rmi_kv.bench "
              "--reference)", file=sys.stderr)
        return 2
    try:
        serve(args[0], Path(args[1]))
    except OSError as error:  # its log or its port: one line for the benchmark to show
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
