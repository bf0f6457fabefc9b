"""The floors every figure is read against, measured on the same machine and
cluster as the run: a no-op Pyro5 round trip, and one forced log write.

A PUT through the current protocol cannot be faster than its critical path:

    client -> coordinator                       1 round trip
      canCommit to all, in parallel             1 round trip + PREPARED forced at each participant
      COMMIT decision forced at the coordinator                 1 forced write
      doCommit to all, in parallel              1 round trip + apply and COMMIT forced at each participant
    floor(PUT) = 3 x round trip + 3 x forced write

A GET is one round trip plus a local read: floor(GET) = 1 x round trip.
"""
from __future__ import annotations

import concurrent.futures
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from Pyro5.api import Proxy

from .stats import exact_percentile

PUT_ROUND_TRIPS = 3
PUT_FORCED_WRITES = 3
FLOOR_EXPLANATION = (
    "floor(PUT) = 3 x round trip + 3 x forced write: the client's call to the coordinator, the "
    "canCommit fan-out (PREPARED forced at every participant, in parallel), the COMMIT decision forced "
    "at the coordinator, and the doCommit fan-out (apply + COMMIT record forced at every participant, "
    "in parallel; the client is answered once all have applied). floor(GET) = 1 x round trip. "
    "round trip = p50 of a no-op ping() on a reused Pyro5 proxy from one thread; forced write = p50 "
    "of one SQLite commit (WAL, synchronous=FULL) in the cluster's data directory. "
    "put_early_reply_ms (2 x round trip + 2 x forced write) is the floor once the client is answered "
    "at the commit point; put_planned_formula_ms is 2 x round trip + 3 x forced write, the formula "
    "first planned for this store (one round trip short of the current path). put_shared_disk_ms replaces the two "
    "participant rounds' forced write by N forced writes started together on this disk (N = replicas), "
    "which is what they cost when every replica keeps its log on the same disk."
)


@dataclass
class Baselines:
    """Measured floors, in milliseconds."""

    replica: str
    round_trip_p50_ms: float
    round_trip_p95_ms: float
    round_trip_samples: int
    #: the same ping() through KeyValueClient: the client library's own cost on top
    client_ping_p50_ms: float
    #: ping() to every other replica at once from a thread pool (the shape of a 2PC fan-out)
    fanout_p50_ms: Optional[float]
    fanout_width: int
    forced_write_p50_ms: float
    forced_write_p95_ms: float
    forced_write_samples: int
    #: one forced write per replica, all at once on this disk (the shape of a 2PC phase here)
    parallel_forced_write_p50_ms: float
    parallel_forced_write_width: int
    fsync_p50_ms: float
    fsync_samples: int
    data_dir: str
    filesystem: str

    def floors(self) -> dict:
        """Floor latencies derived from the baselines (see FLOOR_EXPLANATION)."""
        rtt, forced = self.round_trip_p50_ms, self.forced_write_p50_ms
        return {
            "put_ms": round(PUT_ROUND_TRIPS * rtt + PUT_FORCED_WRITES * forced, 4),
            "get_ms": round(rtt, 4),
            "put_early_reply_ms": round(2 * rtt + 2 * forced, 4),
            "put_planned_formula_ms": round(2 * rtt + 3 * forced, 4),
            # the two participant rounds as this disk does them when every replica writes at once
            "put_shared_disk_ms": round(PUT_ROUND_TRIPS * rtt + 2 * self.parallel_forced_write_p50_ms + forced, 4),
            "put_formula": f"{PUT_ROUND_TRIPS} x round trip + {PUT_FORCED_WRITES} x forced write",
            "get_formula": "1 x round trip",
            "explanation": FLOOR_EXPLANATION,
        }

    def as_dict(self) -> dict:
        return asdict(self)


def _timed_samples(operation: Callable[[], object], samples: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        operation()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        operation()
        timings.append(time.perf_counter() - started)
    return timings


def _ms(seconds: Optional[float]) -> float:
    return round((seconds or 0.0) * 1000.0, 4)


def round_trip(uri: str, samples: int = 1000, timeout: float = 10.0) -> list[float]:
    """Seconds per no-op ping() on one reused, direct Pyro5 proxy."""
    with Proxy(uri) as proxy:
        proxy._pyroTimeout = timeout
        proxy._pyroBind()
        return _timed_samples(proxy.ping, samples, warmup=max(20, samples // 20))


def fanout(uris: list[str], samples: int = 300, timeout: float = 10.0) -> list[float]:
    """Seconds to ping() every URI in parallel, one pooled thread and proxy per URI."""
    if not uris:
        return []
    proxies: dict[int, Proxy] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(uris)) as pool:
        def call(slot: int) -> object:
            proxy = proxies.get(slot)
            if proxy is None:
                proxy = proxies[slot] = Proxy(uris[slot])
                proxy._pyroTimeout = timeout
            proxy._pyroClaimOwnership()
            return proxy.ping()

        def once() -> None:
            for future in [pool.submit(call, slot) for slot in range(len(uris))]:
                future.result()

        try:
            return _timed_samples(once, samples, warmup=20)
        finally:
            for proxy in proxies.values():
                proxy._pyroClaimOwnership()
                proxy._pyroRelease()


def forced_write(directory: Path, samples: int = 300, payload_size: int = 200) -> list[float]:
    """Seconds per SQLite commit (WAL, synchronous=FULL) of one small row, in ``directory``."""
    path = Path(directory) / "bench-forced-write-probe.sqlite3"
    connection = _probe_database(path)
    payload = "x" * payload_size
    try:
        return _timed_samples(lambda: _commit_row(connection, payload), samples, warmup=20)
    finally:
        connection.close()
        _remove_database(path)


def parallel_forced_writes(directory: Path, width: int, samples: int = 150,
                           payload_size: int = 200) -> list[float]:
    """Seconds until ``width`` SQLite commits, one per file and thread, started together,
    have all finished: what one 2PC phase costs when the replicas share this disk."""
    connections = [_probe_database(Path(directory) / f"bench-parallel-probe-{index}.sqlite3")
                   for index in range(width)]
    start, done = threading.Barrier(width + 1), threading.Barrier(width + 1)
    payload, rounds = "x" * payload_size, samples + 10

    def writer(connection: sqlite3.Connection) -> None:
        for _ in range(rounds):
            start.wait()
            _commit_row(connection, payload)
            done.wait()

    threads = [threading.Thread(target=writer, args=(connection,), daemon=True) for connection in connections]
    for thread in threads:
        thread.start()
    timings = []
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            start.wait()
            done.wait()
            timings.append(time.perf_counter() - started)
    finally:
        for thread in threads:
            thread.join()
        for index, connection in enumerate(connections):
            connection.close()
            _remove_database(Path(directory) / f"bench-parallel-probe-{index}.sqlite3")
    return timings[10:]


def _probe_database(path: Path) -> sqlite3.Connection:
    """A scratch SQLite database set up like the replicas' (WAL, synchronous=FULL)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, payload TEXT)")
    return connection


def _commit_row(connection: sqlite3.Connection, payload: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("INSERT INTO log(payload) VALUES (?)", (payload,))
    connection.execute("COMMIT")


def _remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def raw_fsync(directory: Path, samples: int = 300, payload_size: int = 200) -> list[float]:
    """Seconds per append of ``payload_size`` bytes plus os.fsync, in ``directory``."""
    path = Path(directory) / "bench-fsync-probe.bin"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = b"x" * payload_size
    try:
        def append() -> None:
            os.write(descriptor, payload)
            os.fsync(descriptor)

        return _timed_samples(append, samples, warmup=20)
    finally:
        os.close(descriptor)
        path.unlink(missing_ok=True)


def filesystem_of(path: Path) -> str:
    """'TYPE on MOUNTPOINT' for ``path`` (Linux /proc/mounts), or 'unknown'."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    target, best = str(Path(path).resolve()), ("", "unknown")
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            mount_point = parts[1].replace("\\040", " ")
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best[0]):
                best = (mount_point, f"{parts[2]} on {mount_point}")
    return best[1]


def measure(replica: str, uris: dict[str, str], client_ping: Callable[[], object], data_dir: Path,
            payload_size: int, samples: int = 1000, disk_samples: int = 300) -> Baselines:
    """Every baseline, measured now (run it while the cluster is idle)."""
    rtt = round_trip(uris[replica], samples)
    client_rtt = _timed_samples(client_ping, max(100, samples // 2), warmup=20)
    others = [uri for name, uri in sorted(uris.items()) if name != replica]
    fan = fanout(others, max(100, samples // 3))
    payload = payload_size + 120  # a PREPARED record: the value plus txid, key and names
    forced = forced_write(data_dir, disk_samples, payload)
    synced = raw_fsync(data_dir, disk_samples, payload)
    parallel = parallel_forced_writes(data_dir, len(uris), max(50, disk_samples // 2), payload)
    return Baselines(
        replica=replica,
        round_trip_p50_ms=_ms(exact_percentile(rtt, 0.5)), round_trip_p95_ms=_ms(exact_percentile(rtt, 0.95)),
        round_trip_samples=len(rtt), client_ping_p50_ms=_ms(exact_percentile(client_rtt, 0.5)),
        fanout_p50_ms=_ms(exact_percentile(fan, 0.5)) if fan else None, fanout_width=len(others),
        forced_write_p50_ms=_ms(exact_percentile(forced, 0.5)),
        forced_write_p95_ms=_ms(exact_percentile(forced, 0.95)), forced_write_samples=len(forced),
        parallel_forced_write_p50_ms=_ms(exact_percentile(parallel, 0.5)), parallel_forced_write_width=len(uris),
        fsync_p50_ms=_ms(exact_percentile(synced, 0.5)), fsync_samples=len(synced),
        data_dir=str(data_dir), filesystem=filesystem_of(data_dir),
    )
