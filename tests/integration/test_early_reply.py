"""--early-reply: a write is answered at its commit point, and the store stays
linearizable: a read on a replica that has not applied it yet waits for it."""
from __future__ import annotations

import random
import threading

from rmi_kv.errors import TransactionAborted
from support.linearizability import History, check_history
from support.checks import recorded

KEYS = [f"early:{index}" for index in range(5)]


def test_every_replica_reads_an_early_answered_write_at_once(make_cluster):
    cluster = make_cluster(5, replica_args=["--early-reply"])
    readers = {name: cluster.client(name) for name in cluster.names}
    try:
        with cluster.client("replica1") as writer:
            for number in range(30):
                writer.put("early:seen", f"v{number}")
                for name, reader in readers.items():  # straight after the answer, on every replica
                    assert reader.get("early:seen") == f"v{number}", name
            trace = writer.traced({"early:traced": "x"})["trace"]
        assert any(event["message"] == "reply" for event in trace)
    finally:
        for reader in readers.values():
            reader.close()

    def settled():
        with cluster.client() as kv:
            statuses = kv.status()
        return (len({status["digest"] for status in statuses}) == 1
                and all(not status["unacknowledged_commits"] and not status["in_doubt"] for status in statuses))

    cluster.wait_for(settled, timeout=20, what="every replica applied every write")


def test_concurrent_clients_stay_linearizable(make_cluster):
    cluster = make_cluster(5, replica_args=["--early-reply"])
    history, problems = History(), []
    stop = threading.Event()

    def client(number: int) -> None:
        rng = random.Random(number)
        replica = cluster.names[number % len(cluster.names)]
        with cluster.client(replica) as kv:
            for sequence in range(60):
                key = rng.choice(KEYS)
                kind = rng.choice(["put", "put", "delete", "get", "get"])
                value = f"c{number}-{sequence}" if kind == "put" else None
                try:
                    recorded(history, kv, key, kind, value, client=f"client{number}@{replica}")
                except TransactionAborted:
                    pass  # nothing happened
                except Exception as error:  # anything else is a defect
                    problems.append(f"client{number}: {type(error).__name__}: {error}")
                    stop.set()
                    return

    threads = [threading.Thread(target=client, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    assert problems == []
    operations = history.operations()
    assert sum(1 for op in operations if op.kind != "get" and op.completed is not None) >= 100
    result = check_history(operations)
    assert result.ok, result.explanation
    with cluster.client() as kv:
        cluster.wait_for(lambda: len({status["digest"] for status in kv.status()}) == 1, timeout=20,
                         what="equal digests")
