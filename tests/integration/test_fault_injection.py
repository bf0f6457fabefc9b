"""A randomized fault test: clients write and read through different replicas
while replicas are killed, paused and restarted. Reproducible from the
printed seed (set RMI_KV_FAULT_SEED to replay one)."""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from rmi_kv.errors import KeyInDoubt, NameServerUnavailable, ReplicaUnavailable, TransactionAborted
from support.linearizability import History, check_history
from support.checks import recorded

KEYS = [f"reg:{index}" for index in range(4)]
CHAOS_SECONDS = float(os.environ.get("RMI_KV_FAULT_SECONDS", "12"))


def client_loop(cluster, replica: str, number: int, seed: int, history: History, stop: threading.Event,
                problems: list) -> None:
    rng = random.Random(seed * 100 + number)
    with cluster.client(replica, timeout=8.0) as kv:
        sequence = 0
        while not stop.is_set():
            sequence += 1
            key = rng.choice(KEYS)
            roll = rng.random()
            if roll < 0.45:
                kind, value = "put", f"c{number}-{sequence}"
            elif roll < 0.55:
                kind, value = "delete", None
            else:
                kind, value = "get", None
            try:
                recorded(history, kv, key, kind, value, client=f"client{number}@{replica}")
            except (TransactionAborted, ReplicaUnavailable, KeyInDoubt, NameServerUnavailable):
                stop.wait(0.05)  # nothing happened
            except Exception as error:  # anything else is a defect
                problems.append(f"client{number}: {type(error).__name__}: {error}")
                return


def nemesis(cluster, rng: random.Random, stop: threading.Event, log: list) -> None:
    while not stop.wait(rng.uniform(0.3, 1.2)):
        victim = rng.choice(cluster.names)
        action = rng.choice(["kill", "pause", "terminate"])
        log.append(f"{time.monotonic():.2f} {action} {victim}")
        child = cluster.replicas[victim]
        if action == "pause":
            child.signal(signal.SIGSTOP)
            stop.wait(rng.uniform(0.3, 2.5))
            child.signal(signal.SIGCONT)
            continue
        if action == "kill":
            child.kill()
        else:
            child.stop()
        stop.wait(rng.uniform(0.1, 1.5))
        cluster.start_replica(victim)


@pytest.mark.parametrize("replica_args", [[], ["--early-reply"]], ids=["answered-once-applied", "early-reply"])
def test_random_faults_keep_history_linearizable_and_replicas_equal(make_cluster, replica_args):
    seed = int(os.environ.get("RMI_KV_FAULT_SEED", random.randrange(1 << 30)))
    print(f"fault test seed: {seed} (replay with RMI_KV_FAULT_SEED={seed})")
    rng = random.Random(seed)
    cluster = make_cluster(5, replica_args=replica_args)
    history = History()
    stop_clients, stop_nemesis = threading.Event(), threading.Event()
    problems: list[str] = []
    faults: list[str] = []
    clients = [threading.Thread(target=client_loop, args=(cluster, cluster.names[n % 5], n, seed, history,
                                                           stop_clients, problems)) for n in range(5)]
    chaos = threading.Thread(target=nemesis, args=(cluster, rng, stop_nemesis, faults))
    for thread in clients:
        thread.start()
    chaos.start()
    try:
        stop_nemesis.wait(CHAOS_SECONDS)
    finally:
        stop_nemesis.set()
        chaos.join(timeout=60)
        stop_clients.wait(1.0)  # a last second of load on a healthy cluster
        stop_clients.set()
        for thread in clients:
            thread.join(timeout=60)
    print("faults:", "; ".join(faults))
    assert not chaos.is_alive() and not any(thread.is_alive() for thread in clients), "a thread hung"
    assert problems == []
    for name, child in cluster.replicas.items():
        child.signal(signal.SIGCONT)
        if not child.alive():
            cluster.start_replica(name)

    def settled():
        with cluster.client() as kv:
            statuses = kv.status()
        return (len(statuses) == 5 and all(s["reachable"] and not s["in_doubt"] and not s["catching_up"]
                                           for s in statuses)
                and len({s["digest"] for s in statuses}) == 1)

    cluster.wait_for(settled, timeout=40, what="replicas equal and nothing in doubt after the faults")
    for name in cluster.names:  # final reads, part of the history
        with cluster.client(name) as kv:
            for key in KEYS:
                token = history.invoke(key, "get", None, client=f"final@{name}")
                history.complete(token, kv.get(key))

    operations = history.operations()
    writes_done = sum(1 for op in operations if op.kind != "get" and op.completed is not None)
    print(f"{len(operations)} operations, {writes_done} acknowledged writes")
    assert writes_done >= 10, "too few writes got through to test anything"
    result = check_history(operations)
    assert result.ok, f"seed {seed}: {result.explanation}"
