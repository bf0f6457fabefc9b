"""Members are kept by the replicas, not by the name server; one process per name and data directory.

On real processes: a name server killed and started again (empty, or from
its storage) while writes go on loses none of them; a second process on a
running replica's data directory or name exits at once and harms nothing.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from support.checks import Ledger, settled, wait_until

WRITE_SECONDS = 3.0


def restart_nameserver(cluster) -> None:
    """kill -9 the name server, then start it again on the same port."""
    cluster.nameserver.kill()
    cluster.start_ns()


def settled_everywhere(cluster) -> None:
    with cluster.client() as kv:
        wait_until(lambda: settled(kv.status(), cluster.names), 30, "every replica registered again, equal digests")


def values_everywhere(cluster, keys) -> dict[str, dict[str, str]]:
    """key -> {replica: value}, read through each replica."""
    seen: dict[str, dict[str, str]] = {key: {} for key in keys}
    for name in cluster.names:
        with cluster.client(replica=name) as kv:
            for key in keys:
                seen[key][name] = kv.get(key)
    return seen


@pytest.mark.parametrize("nameserver_storage", [False, True], ids=["empty-nameserver", "stored-nameserver"])
def test_a_name_server_restart_loses_no_acknowledged_write(make_cluster, nameserver_storage):
    cluster = make_cluster(5, nameserver_storage=nameserver_storage)
    ledger = Ledger()
    with cluster.client(replica="replica2", timeout=5.0) as kv:
        kv.put("before", "restart")
        restart_nameserver(cluster)
        deadline, count = time.monotonic() + WRITE_SECONDS, 0
        while time.monotonic() < deadline:
            ledger.put(kv.put, f"after-{count:05d}", f"value-{count}")
            count += 1
    assert len(ledger.acknowledged) > 20, f"too few writes went through: {len(ledger.acknowledged)} of {count}"
    settled_everywhere(cluster)
    seen = values_everywhere(cluster, [*ledger.acknowledged, *ledger.not_written, *ledger.unknown])
    problems = ledger.problems(cluster.names, lambda name, key: seen[key][name])
    assert problems == []


def test_a_name_server_restart_under_shared_writers_leaves_equal_versions(make_cluster):
    cluster = make_cluster(5, nameserver_storage=False)
    keys = [f"shared-{index}" for index in range(8)]
    acknowledged: list[int] = []
    failures: list[str] = []
    with cluster.client(replica="replica2", timeout=5.0) as kv:
        restart_nameserver(cluster)
        deadline = time.monotonic() + WRITE_SECONDS

        def writer(number: int) -> None:
            count = 0
            while time.monotonic() < deadline:
                try:
                    kv.put(keys[count % len(keys)], f"writer{number}-{count}")
                    acknowledged.append(1)
                except Exception as error:  # aborts are fine here; what matters is what ends up stored
                    failures.append(type(error).__name__)
                count += 1

        writers = [threading.Thread(target=writer, args=(number,)) for number in range(5)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
    assert len(acknowledged) > 20, f"too few writes went through ({len(acknowledged)}; failures {failures[:5]})"
    settled_everywhere(cluster)  # equal digests: the digest covers every key's version
    seen = values_everywhere(cluster, keys)
    assert all(len(set(by_replica.values())) == 1 for by_replica in seen.values()), seen


def replica_command(cluster, name: str, data_dir) -> list[str]:
    return [sys.executable, "run_server.py", "--name", name, "--ns-port", str(cluster.ns_port),
            "--data-dir", str(data_dir)]


def run_second_process(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def registered_uri(cluster, name: str) -> str:
    with cluster.client() as kv:
        return kv.replicas(refresh=True)[name]


@pytest.mark.parametrize("same_directory", [True, False], ids=["same-data-dir", "fresh-data-dir"])
def test_a_second_process_for_a_running_replica_exits_and_harms_nothing(cluster, tmp_path, same_directory):
    with cluster.client() as kv:
        kv.put("k", "v")
    uri = registered_uri(cluster, "replica3")
    data_dir = cluster.data_dir / "replica3" if same_directory else tmp_path / "other-replica3"
    second = run_second_process(replica_command(cluster, "replica3", data_dir))
    assert second.returncode == 7, second.stderr
    if same_directory:
        pid = cluster.replicas["replica3"].pid
        assert f"data directory {data_dir} is in use by another replica process (PID {pid})" in second.stderr
    else:
        assert f"a replica named replica3 is already running at {uri}" in second.stderr
        assert not (data_dir / "rmi_kv.sqlite3").exists(), "a refused replica creates no data"
    assert "Traceback" not in second.stderr
    assert registered_uri(cluster, "replica3") == uri
    with cluster.client() as kv:
        kv.put("k", "after")
        settled(kv.status(), cluster.names)
    assert set(values_everywhere(cluster, ["k"])["k"].values()) == {"after"}
    log = cluster.replicas["replica3"].log_path.read_text()
    assert "registering again" not in log


def test_a_killed_replica_leaves_no_lock_behind(cluster):
    cluster.replicas["replica4"].kill()
    cluster.start_replica("replica4")  # same name, same data directory: accepted
    with cluster.client(replica="replica4") as kv:
        kv.put("k", "v")
        assert kv.get("k") == "v"


def test_a_replica_that_is_catching_up_is_waited_for(make_cluster):
    """A client pinned to a replica that is still catching up waits for it
    (within its timeout) instead of failing as if it were down."""
    cluster = make_cluster(5)
    with cluster.client() as kv:
        kv.transaction({f"k{index}": "v" for index in range(50)})
    old_uri = registered_uri(cluster, "replica4")
    cluster.stop_replica("replica4")
    for path in (cluster.data_dir / "replica4").glob("rmi_kv.sqlite3*"):
        path.unlink()  # a lost disk: it copies the data from a member before it serves
    child = cluster.start_replica("replica4", failpoints=["recovery.catch_up_chunk=once:delay:1500"], wait=False)
    with cluster.client(replica="replica4", timeout=10.0) as kv:
        wait_until(lambda: kv.replicas(refresh=True)["replica4"] != old_uri, 20, "replica4 registered again")
        assert child.address is None, "the copy should still be under way"
        kv.put("during", "catch-up")
        assert kv.get("k7") == "v" and kv.get("during") == "catch-up"
    child.wait_ready()


def test_a_fresh_cluster_is_not_taken_for_one_with_data(cluster):
    for child in cluster.replicas.values():
        log = child.log_path.read_text()
        for line in log.splitlines():
            if "caught up from" in line:
                assert ": 0 entries copied" in line, line
        assert "Traceback" not in log
    with cluster.client() as kv:
        settled(kv.status(), cluster.names)
