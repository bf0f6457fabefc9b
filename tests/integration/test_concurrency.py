"""Concurrent clients through different replicas: no divergence, no lost write."""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Optional

from rmi_kv.errors import TransactionAborted

KEYS = [f"hot:{index}" for index in range(6)]


@dataclass
class Write:
    key: str
    value: Optional[str]  # None: a delete
    invoked: float
    completed: float


def possible_final_values(writes: list[Write]) -> set:
    """Values a key may end with: those of acknowledged writes that no other
    acknowledged write started after (in real time)."""
    return {w.value for w in writes if not any(o.invoked > w.completed for o in writes)}


def test_eight_clients_two_hundred_mixed_operations(cluster):
    acknowledged: list[Write] = []
    failures: list[BaseException] = []
    aborted = []
    lock = threading.Lock()

    def worker(number: int) -> None:
        rng = random.Random(number)
        replica = cluster.names[number % len(cluster.names)]
        try:
            with cluster.client(replica) as kv:
                for op in range(200):
                    key = rng.choice(KEYS)
                    roll = rng.random()
                    invoked = time.monotonic()
                    try:
                        if roll < 0.45:
                            value = f"w{number}-{op}"
                            kv.put(key, value)
                            write = Write(key, value, invoked, time.monotonic())
                        elif roll < 0.6:
                            kv.delete(key)
                            write = Write(key, None, invoked, time.monotonic())
                        else:
                            kv.get(key)
                            continue
                    except TransactionAborted as error:
                        with lock:
                            aborted.append(error)
                        continue
                    with lock:
                        acknowledged.append(write)
        except BaseException as error:  # reported below, with the thread's name
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,), name=f"client{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "clients hung"
    print(f"acknowledged {len(acknowledged)}, aborted {len(aborted)}")
    assert failures == []
    assert len(acknowledged) > 8 * 200 * 0.5 * 0.9, f"too many aborts: {len(aborted)}"

    with cluster.client() as kv:
        statuses = kv.status()
    assert len({status["digest"] for status in statuses}) == 1, statuses
    assert all(not status["in_doubt"] for status in statuses)
    for name in cluster.names:
        with cluster.client(name) as kv:
            for key in KEYS:
                writes = [w for w in acknowledged if w.key == key]
                final = kv.get(key)
                if writes:
                    assert final in possible_final_values(writes), (name, key, final)
                else:
                    assert final is None
