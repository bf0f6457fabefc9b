"""The course scenario on a real five-replica cluster."""
from __future__ import annotations

import pytest

from rmi_kv.errors import InvalidRequest


def digests(cluster) -> set:
    with cluster.client() as kv:
        statuses = kv.status()
    assert all(status["reachable"] for status in statuses), statuses
    return {status["digest"] for status in statuses}


def test_course_scenario_every_replica_agrees(cluster):
    names = cluster.names
    clients = {name: cluster.client(name) for name in names}
    try:
        # pre-populate through one replica
        for index in range(10):
            clients["replica1"].put(f"course:{index}", f"initial-{index}")
        # five PUTs, each through a different replica
        for index, name in enumerate(names):
            clients[name].put(f"course:{index}", f"updated-by-{name}")
        # five GETs, each through a different replica, each seeing the PUT made through another one
        for index, name in enumerate(names):
            writer = names[index]
            reader = names[(index + 2) % len(names)]
            assert clients[reader].get(f"course:{index}") == f"updated-by-{writer}"
        # five DELETEs, each through a different replica
        for index, name in enumerate(names):
            assert clients[name].delete(f"course:{index + 5}") is True
        assert clients["replica3"].delete("course:5") is False  # already gone
        # every replica answers every key the same way
        expected = {f"course:{i}": f"updated-by-{names[i]}" for i in range(5)}
        expected.update({f"course:{i}": None for i in range(5, 10)})
        for name in names:
            seen = {key: clients[name].get(key) for key in expected}
            assert seen == expected, name
        statuses = clients["replica2"].status()
        assert [s["name"] for s in statuses] == names
        assert len({s["digest"] for s in statuses}) == 1
        assert {s["keys"] for s in statuses} == {5}
        assert all(s["in_doubt"] == [] for s in statuses)
    finally:
        for client in clients.values():
            client.close()


def test_transaction_is_atomic_and_visible_everywhere(shared_cluster):
    cluster = shared_cluster
    with cluster.client("replica4") as kv:
        kv.put("account:a", "100")
        kv.transaction({"account:a": "70", "account:b": "30", "missing": None})
    for name in cluster.names:
        with cluster.client(name) as kv:
            assert (kv.get("account:a"), kv.get("account:b")) == ("70", "30")
    assert len(digests(cluster)) == 1


@pytest.mark.parametrize("call, args, fragment", [
    ("put", (42, "v"), "key must be a string"),
    ("put", ("k", None), "value must be a string"),
    ("put", ("", "v"), "must not be empty"),
    ("put", ("k" * 2000, "v"), "limit is 1024 bytes"),
    ("put", ("k", "v" * (1024 * 1024 + 1)), "limit is 1048576 bytes"),
    ("get", (["list"],), "key must be a string"),
    ("transaction", ({},), "at least one write"),
    ("transaction", ({"k": 5},), "value must be a string"),
])
def test_bad_input_gets_a_clear_error_and_changes_nothing(shared_cluster, call, args, fragment):
    cluster = shared_cluster
    before = digests(cluster)
    with cluster.client("replica2") as kv:
        with pytest.raises(InvalidRequest) as raised:
            getattr(kv, call)(*args)
        assert fragment in str(raised.value)
        assert kv.ping() == "replica2"  # still answering
    assert digests(cluster) == before


def test_a_client_shared_by_short_lived_threads_does_not_leak_connections(shared_cluster):
    import gc
    import threading

    def open_connections() -> int:
        with shared_cluster.client("replica2") as probe:
            return next(s for s in probe.status() if s["name"] == "replica1")["connections"]["open"]

    before = open_connections()
    with shared_cluster.client("replica1") as kv:
        kv.put("threads", "ok")
        for _ in range(20):
            thread = threading.Thread(target=lambda: kv.get("threads"))
            thread.start()
            thread.join()
        gc.collect()
        shared_cluster.wait_for(lambda: open_connections() <= before + 3,
                                what="connections of finished threads closed")


def test_the_largest_legal_write_of_control_characters_reaches_every_replica(shared_cluster):
    # JSON spells each of these characters in six, more than one batch call may carry
    value = "\x01" * (1024 * 1024)
    with shared_cluster.client("replica3") as kv:
        kv.transaction({"control:a": value, "control:b": "\x02" * (1024 * 1024 - 32)})
    for name in shared_cluster.names:
        with shared_cluster.client(name) as kv:
            assert kv.get("control:a") == value, name
    assert len(digests(shared_cluster)) == 1
