"""Crash recovery on real processes: failpoints, lost disks, a restarted name server."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from rmi_kv.errors import OutcomeUnknown, ReplicaUnavailable, TransactionAborted
from support.checks import unsettled


#: the strict protocol: a coordinator's COMMIT stands until it is back (with failover on, an epoch
#: formed while it is down settles its transactions, ABORT unless a member holds the COMMIT: what
#: tests/integration/test_settle_faults.py shows), so these outcomes do not depend on how fast it restarts
STRICT = ["--failover", "off"]


def settled_statuses(cluster, timeout: float = 30.0) -> list[dict]:
    """Wait until every replica is reachable, serving, in doubt about nothing,
    and all hold the same data; returns their statuses."""
    def settled():
        with cluster.client() as kv:
            statuses = kv.status()
        why = unsettled(statuses, cluster.names)  # raised, so that a timeout says what was last wrong
        if why is not None:
            raise AssertionError(why)
        return statuses
    return cluster.wait_for(settled, timeout=timeout, what="all replicas settled and equal")


def read_everywhere(cluster, key: str) -> set:
    values = set()
    for name in cluster.names:
        with cluster.client(name) as kv:
            values.add(kv.get(key))
    return values


# failpoint -> (replica it is armed on, what the client must see, whether the write ends up committed)
CRASH_CASES = {
    "participant.before_prepare": ("replica2", TransactionAborted, False),
    "participant.after_prepare": ("replica2", TransactionAborted, False),
    "participant.before_commit": ("replica2", None, True),
    "participant.before_ack": ("replica2", None, True),
    "coordinator.before_decision": ("replica1", OutcomeUnknown, False),
    "coordinator.after_decision": ("replica1", OutcomeUnknown, True),
    "coordinator.mid_commit": ("replica1", OutcomeUnknown, True),
}


@pytest.mark.parametrize("failpoint", sorted(CRASH_CASES))
def test_crash_at_failpoint_is_recovered(make_cluster, failpoint):
    crashing, expected_error, committed = CRASH_CASES[failpoint]
    cluster = make_cluster(5, replica_args=STRICT)
    with cluster.client("replica3") as kv:
        kv.put("acknowledged", "before the crash")
        kv.put("target", "old")
    cluster.restart_replica(crashing, failpoints=[f"{failpoint}=crash"])

    with cluster.client("replica1", timeout=10.0) as kv:
        if expected_error is None:
            kv.put("target", "new")
        else:
            with pytest.raises(expected_error):
                kv.put("target", "new")
    assert cluster.replicas[crashing].wait_exit(10) is not None, "the failpoint did not crash the replica"

    cluster.start_replica(crashing)
    statuses = settled_statuses(cluster)
    assert read_everywhere(cluster, "target") == {"new" if committed else "old"}
    assert read_everywhere(cluster, "acknowledged") == {"before the crash"}
    assert {s["keys"] for s in statuses} == {2}


def test_crash_in_the_middle_of_recovery(make_cluster):
    cluster = make_cluster(5, replica_args=STRICT)
    cluster.restart_replica("replica1", failpoints=["coordinator.after_decision=crash"])
    with cluster.client("replica1") as kv:
        with pytest.raises(OutcomeUnknown):
            kv.put("k", "v")
    cluster.replicas["replica1"].wait_exit(10)
    cluster.kill_replica("replica2")  # it holds the PREPARED record of that write
    cluster.start_replica("replica1")  # commits it on the replicas that are up
    cluster.start_replica("replica2", failpoints=["recovery.mid_recovery=crash"], wait=False)
    assert cluster.replicas["replica2"].wait_exit(30) is not None
    cluster.start_replica("replica2")
    settled_statuses(cluster)
    assert read_everywhere(cluster, "k") == {"v"}


def test_coordinator_down_blocks_only_its_own_keys(make_cluster):
    cluster = make_cluster(5, replica_args=STRICT)
    with cluster.client("replica2") as kv:
        kv.put("blocked", "old")
        kv.put("free", "old")
    cluster.restart_replica("replica1", failpoints=["coordinator.after_decision=crash"])
    with cluster.client("replica1") as kv:
        with pytest.raises(OutcomeUnknown):
            kv.put("blocked", "new")
    cluster.replicas["replica1"].wait_exit(10)

    with cluster.client("replica3") as kv:
        statuses = {s["name"]: s for s in kv.status()}
        assert all(len(statuses[name]["in_doubt"]) == 1 for name in ("replica2", "replica3", "replica4", "replica5"))
        assert kv.get("free") == "old"  # other keys read fine
        with pytest.raises(TransactionAborted):  # writes still need every member
            kv.put("free", "new")

    cluster.start_replica("replica1")
    settled_statuses(cluster, timeout=10.0)
    assert read_everywhere(cluster, "blocked") == {"new"}


def test_replica_with_a_lost_disk_catches_up_while_writes_go_on(make_cluster):
    cluster = make_cluster(5)
    with cluster.client("replica1") as kv:
        for batch in range(5):
            kv.transaction({f"bulk:{batch}:{i}": f"value-{batch}-{i}" * 10 for i in range(1000)})
        kv.put("doomed", "present before the loss")
        kv.put("aaa:early", "sorts into the first chunk copied")

    cluster.kill_replica("replica4")
    shutil.rmtree(cluster.data_dir / "replica4")
    # a pause after each copied chunk (three chunks) leaves time to write while it copies, on a loaded machine too
    child = cluster.start_replica("replica4", failpoints=["recovery.catch_up_chunk=delay:2000"], wait=False)

    def catching_up():
        """Copying as a member of the current epoch: it takes part in every write, and keeps them aside."""
        with cluster.client("replica2") as kv:
            return any(s["name"] == "replica4" and s.get("catching_up") and s["failover"]["role"] == "catching up"
                       for s in kv.status())

    cluster.wait_for(catching_up, what="replica4 catching up")
    with cluster.client("replica2") as kv:  # first the writes, while the copy surely goes on
        assert kv.delete("doomed") is True
        kv.put("bulk:4:999", "rewritten while copying")
        kv.put("aaa:early", "rewritten after its chunk was copied")
        for number in range(10):
            kv.put(f"live:{number % 3}", f"v{number}")
    assert catching_up(), "the writes should have happened during the copy"
    with cluster.client("replica4", timeout=1.0) as kv:
        with pytest.raises(ReplicaUnavailable, match="catching up") as refused:  # no reads before it is complete
            kv.get("doomed")  # (the client waits for it within its timeout, then gives up)
        assert refused.value.starting
    child.wait_ready()
    # the first chunk was copied before these writes: they came from the buffer
    assert re.search(r"caught up from replica\d: \d+ entries copied, [1-9]\d* buffered writes applied",
                     child.log_path.read_text())

    statuses = settled_statuses(cluster)
    assert {s["keys"] for s in statuses} == {5004}
    with cluster.client("replica4") as kv:
        assert kv.get("doomed") is None  # deleted while it copied: must not come back
        assert kv.get("bulk:4:999") == "rewritten while copying"
        assert kv.get("aaa:early") == "rewritten after its chunk was copied"
        assert kv.get("bulk:2:123") == "value-2-123" * 10
        assert [kv.get(f"live:{n}") for n in range(3)] == ["v9", "v7", "v8"]


def test_name_server_restart(make_cluster):
    cluster = make_cluster(5)
    with cluster.client("replica1") as kv:
        kv.put("before", "1")
        cluster.nameserver.stop()
        kv.put("while-down", "2")  # replicas and this client use the addresses they know
        cluster.start_ns()
        # replicas register again by themselves
        cluster.wait_for(lambda: len(cluster.client().replicas(refresh=True)) == 5, what="re-registration")
    with cluster.client() as kv:
        kv.put("after", "3")
        assert [kv.get(k) for k in ("before", "while-down", "after")] == ["1", "2", "3"]
    settled_statuses(cluster)


def test_operator_removes_a_member_for_good_and_it_can_come_back(make_cluster):
    import subprocess
    import sys

    def remove(name: str) -> subprocess.CompletedProcess:
        script = Path(__file__).resolve().parents[2] / "run_server.py"
        return subprocess.run([sys.executable, str(script), "--ns-port", str(cluster.ns_port), "--remove", name],
                              capture_output=True, text=True, timeout=60)

    cluster = make_cluster(5)
    refused = remove("replica5")
    assert refused.returncode == 2 and "is running: stop it first" in refused.stderr
    cluster.stop_replica("replica5")

    def written() -> bool:
        try:
            with cluster.client("replica1") as kv:
                kv.put("k", "v")
            return True
        except TransactionAborted:
            return False

    # it said it leaves as it stopped: the others write on within a tick of their epoch keeping
    cluster.wait_for(written, timeout=5.0, what="a write without the stopped replica")
    removed = remove("replica5")
    assert removed.returncode == 0, removed.stderr
    assert "removed replica5" in removed.stdout
    with cluster.client("replica1") as kv:
        kv.put("k", "written without replica5")
        assert [s["name"] for s in kv.status()] == ["replica1", "replica2", "replica3", "replica4"]
    # started again, its old data is out of date: it starts over and catches up
    cluster.start_replica("replica5")
    statuses = settled_statuses(cluster)
    assert len(statuses) == 5
    assert read_everywhere(cluster, "k") == {"written without replica5"}
