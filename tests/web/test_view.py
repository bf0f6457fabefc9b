"""The web view's model of the cluster, over fake clients: protocol messages and answers are
passed on and kept for later pages, states and epochs become log lines, and the keys written
are read on every replica."""
from __future__ import annotations

import threading

from rmi_kv.errors import KeyInDoubt, ReplicaUnavailable
from rmi_kv.server.cluster import wait_for
from rmi_kv.web.view import ClusterView, node_state, node_summary

NAMES = ["replica1", "replica2"]


def serving(name: str, epoch: int = 0, **changes) -> dict:
    status = {"name": name, "reachable": True, "serving": True, "catching_up": False, "keys": 1,
              "digest": "ab" * 32, "in_doubt": [], "failpoints": {},
              "failover": {"failover": True, "role": "member", "lease": {"valid": True, "remaining": 0.5},
                           "epoch": {"number": epoch, "members": list(NAMES), "proposer": None, "settled": {}}}}
    status.update(changes)
    return status


class Cluster:
    """What the fake clients answer: each replica's status, its feed's answers, its values."""

    def __init__(self) -> None:
        self.statuses = {name: serving(name) for name in NAMES}
        self.feeds: dict[str, list[dict]] = {name: [] for name in NAMES}
        self.values = {"replica1": {"color": "blue"}, "replica2": {}}
        self.lock = threading.Lock()


class FakeClient:
    def __init__(self, cluster: Cluster, replica=None) -> None:
        self.cluster, self.replica = cluster, replica

    def protocol_events(self, name, cursor, wait):
        with self.cluster.lock:
            if self.cluster.feeds[name]:
                events = self.cluster.feeds[name]
                self.cluster.feeds[name] = []
                return {"events": events, "next": {"boot": "b", "seq": len(events)}}
        raise ReplicaUnavailable(f"{name}: nothing new (fake)")

    def status_of(self, name):
        with self.cluster.lock:
            return dict(self.cluster.statuses[name])

    def get(self, key):
        if self.replica == "replica2" and key == "color":
            raise KeyInDoubt("held by an undecided transaction")
        return self.cluster.values[self.replica].get(key)

    def close(self):
        pass


def event(message: str, **fields) -> dict:
    return {"seq": 1, "txid": "replica1:b:1:1", "message": message, "participant": "replica1", "result": "sent",
            "at_ms": 0.1, "time": 1.0, "writes": None, **fields}


def test_messages_states_epochs_and_values_reach_every_subscriber():
    cluster = Cluster()
    view = ClusterView(lambda timeout, replica=None: FakeClient(cluster, replica), lambda: list(NAMES), poll=0.05)
    seen: list[dict] = []
    view.subscribe(seen.append)
    view.start()
    try:
        wait_for(lambda: len(view.snapshot()["nodes"]) == 2, timeout=5.0, what="both replicas' state")
        with cluster.lock:
            cluster.feeds["replica1"] = [event("canCommit"), event("answer", result="committed", at_ms=None,
                                                                   writes={"color": "blue"})]
        wait_for(lambda: [u["message"] for u in seen if u["kind"] == "protocol"] == ["canCommit", "answer"],
                 timeout=5.0, what="the messages passed on")
        wait_for(lambda: view.snapshot()["values"].get("replica1") == {"color": {"value": "blue", "length": 4}}
                 and view.snapshot()["values"].get("replica2") == {"color": {"note": "in doubt"}},
                 timeout=5.0, what="the key written read on both replicas")
        with cluster.lock:
            cluster.statuses["replica2"] = {"name": "replica2", "reachable": False, "error": "connection refused"}
            cluster.statuses["replica1"] = serving("replica1", epoch=1, failover={
                **serving("replica1")["failover"], "epoch": {"number": 1, "members": ["replica1"],
                                                             "proposer": "replica1", "settled": {"t9": "abort"}}})
        logs = lambda: [u["text"] for u in seen if u["kind"] == "log"]  # noqa: E731
        wait_for(lambda: "replica2 is down" in logs(), timeout=5.0, what="replica2 said down")
        wait_for(lambda: "epoch 1: members replica1, proposed by replica1; t9 settled abort" in logs(),
                 timeout=5.0, what="the new epoch said")
        later = view.snapshot()
        assert [u["message"] for u in later["history"] if u["kind"] == "protocol"] == ["canCommit", "answer"]
        assert later["watched"] == ["color"]
    finally:
        view.stop()


def test_the_state_word_of_a_replica():
    assert node_state(serving("r")) == "serving"
    assert node_state(serving("r"), "paused") == "paused"
    assert node_state({"reachable": False, "error": "receiving: timeout"}) == "paused"
    assert node_state({"reachable": False, "error": "... it runs but may be paused (SIGSTOP, ...)"}) == "paused"
    assert node_state({"reachable": False, "error": "refused"}) == "down"
    assert node_state(serving("r", catching_up=True)) == "catching up"
    assert node_state(serving("r", serving=False)) == "not serving"
    outside = serving("r")
    outside["failover"] = {**outside["failover"], "role": "newcomer"}
    assert node_state(outside) == "outside the epoch"
    summary = node_summary("r", serving("r"))
    assert summary["digest"] == "ab" * 6 and summary["epoch"] == 0 and summary["lease_valid"] is True


def test_long_values_are_cut_a_slow_read_of_a_key_in_doubt_says_so_and_unchanged_values_are_not_sent_again():
    cluster = Cluster()
    cluster.values["replica1"]["color"] = "b" * 1_000_000
    cluster.statuses["replica2"] = serving("replica2", in_doubt=["replica1:b:2:2"])

    class SlowReads(FakeClient):
        def get(self, key):
            if self.replica == "replica2":  # a read waiting for an undecided transaction, past the view's timeout
                raise ReplicaUnavailable("replica2 did not answer within 1 s")
            return super().get(key)

    view = ClusterView(lambda timeout, replica=None: SlowReads(cluster, replica), lambda: list(NAMES), poll=0.02)
    seen: list[dict] = []
    view.subscribe(seen.append)
    view.watch_keys(["color"])
    view.start()
    try:
        wait_for(lambda: view.snapshot()["values"].get("replica2") == {"color": {"note": "in doubt"}},
                 timeout=5.0, what="the key in doubt at replica2")
        held = view.snapshot()["values"]["replica1"]["color"]
        assert held["length"] == 1_000_000 and len(held["value"]) <= 64
        polls = lambda: len([u for u in seen if u["kind"] == "node" and u["node"]["name"] == "replica1"])  # noqa: E731
        wait_for(lambda: polls() >= 5, timeout=5.0, what="five polls of replica1")
        sent = [u for u in seen if u["kind"] == "values" and u["replica"] == "replica1"]
        assert len(sent) == 1  # told once, not at every poll
    finally:
        view.stop()
