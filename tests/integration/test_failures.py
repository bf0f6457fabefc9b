"""Strict two-phase commit when a replica is down; clean shutdown; restart."""
from __future__ import annotations

import signal

import pytest

from rmi_kv.errors import ReplicaUnavailable, TransactionAborted


def test_stopped_replica_makes_writes_abort_and_reads_keep_working(strict_cluster):
    cluster = strict_cluster  # the strict protocol; with failover on the others write on (test_failover_faults)
    with cluster.client("replica1") as kv:
        kv.put("colour", "blue")
    assert cluster.stop_replica("replica4") == 0  # SIGTERM: a clean exit
    assert "replica4 stopped" in cluster.replicas["replica4"].log_path.read_text()

    with cluster.client("replica1") as kv:
        with pytest.raises(TransactionAborted) as raised:
            kv.put("colour", "green")
        assert "replica4" in raised.value.replicas
        assert "replica4" in str(raised.value)
        assert "nothing was written" in str(raised.value)
    for name in ("replica1", "replica2", "replica3", "replica5"):
        with cluster.client(name) as kv:
            assert kv.get("colour") == "blue"
    with cluster.client() as kv:  # any replica: reads fail over past the stopped one
        for _ in range(10):
            assert kv.get("colour") == "blue"
        statuses = {status["name"]: status for status in kv.status()}
    assert statuses["replica4"]["reachable"] is False
    assert len({s["digest"] for s in statuses.values() if s["reachable"]}) == 1

    with cluster.client("replica4") as kv:
        with pytest.raises(ReplicaUnavailable) as raised:
            kv.get("colour")
        assert "run_server.py --name replica4" in str(raised.value)

    cluster.start_replica("replica4")  # back under its name, on a new port
    with cluster.client("replica2") as kv:
        kv.put("colour", "green")
    with cluster.client("replica4") as kv:
        assert kv.get("colour") == "green"
        assert len({s["digest"] for s in kv.status()}) == 1


def test_killed_replica_counts_as_member_until_it_returns(cluster):
    cluster.kill_replica("replica2")  # SIGKILL: no clean-up at all
    with cluster.client("replica5") as kv:
        with pytest.raises(TransactionAborted) as raised:
            kv.delete("anything") or kv.put("k", "v")
        assert set(raised.value.replicas) == {"replica2"}
    cluster.start_replica("replica2")
    with cluster.client("replica5") as kv:
        kv.put("k", "v")
    with cluster.client("replica2") as kv:
        assert kv.get("k") == "v"


def test_paused_replica_makes_writes_abort_within_the_vote_timeout(make_cluster):
    import time

    cluster = make_cluster(5, replica_args=["--vote-timeout", "0.5"])
    cluster.replicas["replica3"].signal(signal.SIGSTOP)
    try:
        with cluster.client("replica1") as kv:
            started = time.monotonic()
            with pytest.raises(TransactionAborted) as raised:
                kv.put("paused", "x")
            assert time.monotonic() - started < 0.5 + 2.0  # the configured timeout, not a hang
            assert "replica3" in raised.value.replicas
            assert "did not vote within 0.5 s" in raised.value.replicas["replica3"]
        with cluster.client("replica2") as kv:
            assert kv.get("paused") is None
    finally:
        cluster.replicas["replica3"].signal(signal.SIGCONT)
    with cluster.client("replica1") as kv:
        kv.put("paused", "y")
    def settled():
        with cluster.client() as kv:
            statuses = kv.status()
        return len({s["digest"] for s in statuses}) == 1 and not any(s["in_doubt"] for s in statuses)
    cluster.wait_for(settled, what="replicas converge after the pause")
    with cluster.client("replica3") as kv:
        assert kv.get("paused") == "y"
