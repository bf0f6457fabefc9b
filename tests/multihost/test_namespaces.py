"""Replicas on separate hosts: one network namespace per replica, one for the
name server, one for the client, joined by a bridge in a "switch" namespace.
The course scenario across them, and a partition of one replica (its link
set down, or its traffic dropped by a firewall) survived.

Needs root and iproute2 (the firewall variant: iptables or nft); skipped with
the reason printed where they are missing.
"""
from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from rmi_kv.errors import ReplicaUnavailable, TransactionAborted
from support.checks import Ledger, settled, wait_until
from support.launchers import DECISION_PAUSE_MS, VOTE_TIMEOUT
from support.netns import PREFIX, firewall_tool, ip, list_namespaces, remove_stale, unavailable_reason
from support.skips import skip_reason

_keys = itertools.count(1)

LISTEN = ("import socket,sys; s=socket.create_server((sys.argv[1], 7000)); print('listening', flush=True);"
          "c, _ = s.accept(); c.sendall(b'hi from ' + sys.argv[1].encode()); c.close()")
DIAL = ("import socket,sys\n"
        "try:\n"
        "    c = socket.create_connection((sys.argv[1], 7000), timeout=float(sys.argv[2]))\n"
        "    print(c.recv(100).decode())\n"
        "except OSError as e:\n"
        "    print('failed:', type(e).__name__)\n")


def root_links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").stdout.splitlines()}


def test_lab_connects_hosts_cuts_them_and_leaves_nothing_behind(lab):
    links_before = root_links()
    a = lab.add_host("a", 21)
    b = lab.add_host("b", 22)
    assert root_links() == links_before  # the root namespace's network is untouched
    assert "10.213." not in ip("-o", "addr", "show").stdout

    def dial(timeout: float = 2.0) -> str:
        return lab.run("a", sys.executable, "-c", DIAL, b.address, str(timeout)).stdout.strip()

    server = subprocess.Popen(lab.exec_prefix("b") + [sys.executable, "-c", LISTEN, b.address],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        assert dial() == f"hi from {b.address}"
        server.wait(5)
    finally:
        server.kill()
        server.wait()

    for method in ("link",) + (("firewall",) if firewall_tool() else ()):
        server = subprocess.Popen(lab.exec_prefix("b") + [sys.executable, "-c", LISTEN, b.address],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "listening"
            lab.cut("b", method)
            assert dial(0.5).startswith("failed:"), method
            lab.heal("b")
            assert wait_until(lambda: dial() == f"hi from {b.address}", 10.0, f"b reachable after {method} heals")
        finally:
            server.kill()
            server.wait()
    assert a.namespace in list_namespaces()

    lab.close()
    assert lab.leftovers() == []
    assert not [name for name in list_namespaces() if name.startswith(lab.tag)]


def test_namespaces_of_a_crashed_run_are_removed():
    reason = unavailable_reason()
    if reason:
        pytest.skip(skip_reason(reason))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid nobody uses now: the "crashed run"
    stale = f"{PREFIX}{gone.pid}-dead-sw"
    if ip("netns", "add", stale, check=False).returncode != 0:
        pytest.skip(skip_reason("cannot create a network namespace here"))
    try:
        removed = remove_stale()
        assert stale in removed
        assert stale not in list_namespaces()
    finally:
        ip("netns", "del", stale, check=False)


def test_course_scenario_across_hosts(lab_cluster):
    agent = lab_cluster.agent
    names = lab_cluster.names
    statuses = {status["name"]: status for status in agent.status()}
    for name in names:  # each replica really is on its own host, at its own address
        assert f"@{lab_cluster.address_of(name)}:" in statuses[name]["uri"], statuses[name]["uri"]

    for index in range(10):
        agent.put("replica1", f"course:{index}", f"initial-{index}")
    for index, name in enumerate(names):  # five PUTs, each through a different replica (host)
        agent.put(name, f"course:{index}", f"updated-by-{name}")
    for index, writer in enumerate(names):  # five GETs, each through another host than the PUT
        reader = names[(index + 2) % len(names)]
        assert agent.get(reader, f"course:{index}") == f"updated-by-{writer}"
    for index, name in enumerate(names):  # five DELETEs, each through a different replica
        assert agent.delete(name, f"course:{index + 5}") is True
    assert agent.delete("replica3", "course:5") is False

    expected = {f"course:{i}": f"updated-by-{names[i]}" for i in range(5)}
    expected.update({f"course:{i}": None for i in range(5, 10)})
    for name in names:
        assert {key: agent.get(name, key) for key in expected} == expected, name
    statuses = agent.status("replica2")
    assert [s["name"] for s in statuses] == names
    assert len({s["digest"] for s in statuses}) == 1
    assert all(s["in_doubt"] == [] for s in statuses)


@pytest.mark.parametrize("method, victim", [("link", "replica5"), ("firewall", "replica3")])
def test_partition_of_one_replica(lab_cluster, method, victim):
    if method == "firewall" and firewall_tool() is None:
        pytest.skip(skip_reason("the firewall partition needs iptables or nft (apt-get install -y iptables)"))
    lab, agent = lab_cluster.lab, lab_cluster.agent
    names = lab_cluster.names
    others = [name for name in names if name != victim]
    ledger = Ledger()

    def put(name: str, label: str, timeout: float = 5.0):
        key = f"{method}:{label}:{next(_keys)}"
        return key, ledger.put(lambda k, v: agent.put(name, k, v, timeout=timeout), key, f"v-{key}")

    for name in names:
        assert put(name, "before")[1] is None
    host = lab_cluster.host_of(victim)

    lab.cut(host, method)
    try:
        for coordinator in others[:2]:  # writes abort, naming the cut replica, within the vote timeout
            _, error = put(coordinator, "cut")
            assert isinstance(error, TransactionAborted), error
            assert set(error.replicas) == {victim}, error.replicas
            assert "nothing was written" in str(error)
            assert error.elapsed < VOTE_TIMEOUT + 1.5, error.elapsed
        for name in others:  # reads on the reachable replicas keep working
            for key, value in ledger.acknowledged.items():
                assert agent.get(name, key) == value
        for key, value in list(ledger.acknowledged.items())[:3]:
            # any replica: a client that tries the cut one first waits one connect timeout, then moves on
            assert agent.get(None, key, timeout=VOTE_TIMEOUT) == value
            assert agent.last_elapsed < 2 * VOTE_TIMEOUT + 1.0
        with pytest.raises(ReplicaUnavailable) as raised:  # the cut replica: a clear error, nothing sent
            agent.get(victim, "anything", timeout=VOTE_TIMEOUT)
        assert victim in str(raised.value)
        statuses = {s["name"]: s for s in agent.status("replica1" if victim != "replica1" else "replica2",
                                                       timeout=VOTE_TIMEOUT)}
        assert statuses[victim]["reachable"] is False
        assert len({statuses[name]["digest"] for name in others}) == 1
    finally:
        lab.heal(host)

    wait_until(lambda: put(others[0], "healed")[1] is None, 15.0, "a write commits after healing")
    assert put(victim, "healed-through-victim")[1] is None
    wait_until(lambda: settled(agent.status(timeout=2.0), names), 20.0, "every replica converges")
    assert ledger.problems(names, lambda name, key: agent.get(name, key)) == []
    assert ledger.not_written, "the partition aborted nothing: it was not a partition"


def test_replica_cut_after_its_vote_stays_in_doubt_and_commits_when_healed(lab_cluster):
    """replica5 votes YES, then its link goes down before doCommit: the write is acknowledged
    (replica5 holds the key prepared; nobody can read the old value there), replica5 cannot learn
    the outcome while cut off, and applies it once the network is back."""
    lab, agent, names = lab_cluster.lab, lab_cluster.agent, lab_cluster.names
    coordinator, victim = "replica4", "replica5"
    host = lab_cluster.host_of(victim)
    value = "committed-while-cut"
    # the coordinator pauses between its COMMIT decision and doCommit: the window to cut replica5 in
    lab_cluster.restart_replica(coordinator, ["--failpoint", f"coordinator.after_decision=delay:{DECISION_PAUSE_MS}"])
    try:
        def decided(timeout: float = 2.0) -> list:  # status() asks every member: a cut one costs a timeout
            return agent.status(coordinator, timeout=timeout)[names.index(coordinator)]["unacknowledged_commits"]

        for attempt in range(1, 4):
            key = f"in-doubt:across-partition:{attempt}"
            earlier = set(decided())
            writing = agent.submit("put", key, value, replica=coordinator, timeout=10.0)
            try:
                txids = wait_until(lambda: set(decided()) - earlier, 10.0, "the coordinator decides", interval=0.01)
                lab.cut(host, "link")
            finally:
                assert agent.result(writing) is None  # acknowledged: all voted YES, COMMIT is durable
            if txids <= set(decided(timeout=0.5)):
                break  # replica5 has not acknowledged: the cut came between its vote and doCommit
            print(f"attempt {attempt}: {sorted(txids)} acknowledged before the cut; again")
            lab.heal(host)  # a slow machine: doCommit got through before the cut
        else:
            pytest.fail("could not cut replica5 off between its vote and doCommit in 3 attempts")
        try:
            for name in names[:-1]:
                assert agent.get(name, key) == value
            with pytest.raises(TransactionAborted) as raised:  # writes abort while it is cut off
                agent.put("replica1", "in-doubt:meanwhile", "x")
            assert set(raised.value.replicas) == {victim}
            assert txids <= set(decided(timeout=0.5))  # still waiting for replica5
        finally:
            lab.heal(host)
        wait_until(lambda: agent.get(victim, key, timeout=2.0) == value, 15.0, "replica5 applies the commit")
        wait_until(lambda: not txids & set(decided()), 10.0, "the coordinator hears replica5 acknowledge")
        wait_until(lambda: settled(agent.status(timeout=2.0), names), 20.0, "every replica converges")
        assert agent.get("replica1", "in-doubt:meanwhile") is None
    finally:
        lab.heal_all()
        lab_cluster.restart_replica(coordinator)  # without the failpoint
