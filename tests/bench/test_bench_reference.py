"""The benchmark's reference two-phase commit: the yardstick must really
replicate every write with forced log lines, and leave no process behind."""
from __future__ import annotations

import os
import threading

import pytest

from rmi_kv.bench.reference import ReferenceClient, ReferenceCluster


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_put_reaches_every_node_through_both_phases(tmp_path):
    with ReferenceCluster(3, tmp_path) as cluster:
        pids = list(cluster.pids.values())
        cluster.preload([{"a": "1", "b": "2"}])
        client = ReferenceClient(cluster.uris["reference2"], timeout=10.0)
        try:
            client.put("a", "changed")
            client.put("c", "new")
            assert client.ping() == "reference2"
        finally:
            client.close()
        for uri in cluster.uris.values():
            reader = ReferenceClient(uri, timeout=10.0)
            try:
                assert (reader.get("a"), reader.get("b"), reader.get("c"), reader.get("x")) == \
                       ("changed", "2", "new", None)
            finally:
                reader.close()
        assert cluster.check_digests().equal
    logs = {name: (tmp_path / f"{name}.log").read_text().splitlines() for name in cluster.names}
    assert [line.split()[0] for line in logs["reference2"]] == ["DECISION", "DECISION"]
    for name in ("reference1", "reference3"):
        assert [line.split()[0] for line in logs[name]] == ["PREPARED", "COMMIT", "PREPARED", "COMMIT"]
    assert not any(alive(pid) for pid in pids)


def test_concurrent_writes_of_one_key_through_every_node_leave_the_nodes_equal(tmp_path):
    with ReferenceCluster(3, tmp_path) as cluster:
        errors = []

        def writer(name: str) -> None:
            client = ReferenceClient(cluster.uris[name], timeout=30.0)
            try:
                for number in range(100):
                    client.put("hot", f"{name}.{number}")
            except Exception as error:
                errors.append(error)
            finally:
                client.close()

        threads = [threading.Thread(target=writer, args=(name,)) for name in cluster.names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == [] and not any(thread.is_alive() for thread in threads)
        check = cluster.check_digests()
        assert check.equal and len(check.digests) == 3
    applied = {name: applied_order(tmp_path / f"{name}.log") for name in cluster.names}
    assert len(applied["reference1"]) == 300
    assert applied["reference1"] == applied["reference2"] == applied["reference3"]  # one order of the writes


def applied_order(log) -> list[str]:
    """The txids a node applied, in order: its own decisions and the commits it was sent."""
    lines = [line.split() for line in log.read_text().splitlines()]
    return [fields[1] for fields in lines if fields[0] in ("DECISION", "COMMIT")]


def processes_using(directory) -> list[int]:
    """Pids of the processes whose command line names ``directory``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if str(directory).encode() in cmdline.read() and alive(int(entry)):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_a_node_that_cannot_start_is_reported_and_the_others_are_stopped(tmp_path):
    (tmp_path / "reference2.log").mkdir()  # node 2 cannot open its log
    with pytest.raises(RuntimeError, match="reference node reference2 did not start.*reference2.log"):
        with ReferenceCluster(3, tmp_path):
            pass
    assert processes_using(tmp_path) == []
