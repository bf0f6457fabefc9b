"""Guards (compare-and-set) through two-phase commit, with real participants over
both engines: every participant checks them at its vote under the keys' locks,
a failed compare is its own answer (not retried), and a guarded key that is
not written stays locked until the transaction ends."""
from __future__ import annotations

import pytest

from rmi_kv.core import guards
from rmi_kv.core.handles import LocalHandle
from rmi_kv.errors import CompareFailed, TransactionAborted
from support.handles import ByMessage

NAMES = ["c0", "p1", "p2"]


@pytest.fixture
def cluster(make_participant, make_coordinator):
    """A coordinator c0 with its own participant, and participants p1 and p2, all in step."""
    participants = {name: make_participant(name) for name in NAMES}
    coordinator = make_coordinator("c0", storage=participants["c0"].storage)
    handles = {name: ByMessage(participant) for name, participant in participants.items() if name != "c0"}
    handles["c0"] = LocalHandle(participants["c0"])
    coordinator.execute({"a": "1", "b": "x"}, handles)
    return coordinator, participants, handles


def values(participants, key):
    return {name: (None if p.storage.get(key) is None else p.storage.get(key)[0]) for name, p in participants.items()}


def test_a_guard_that_holds_lets_the_writes_commit_everywhere(cluster):
    coordinator, participants, handles = cluster
    outcome = coordinator.execute({"a": "2"}, handles, guards=[("a", "==", "1")])
    assert outcome.committed and outcome.attempts == 1
    assert values(participants, "a") == {name: "2" for name in NAMES}


def test_a_failed_compare_writes_nothing_is_not_retried_and_says_what_the_key_holds(cluster):
    coordinator, participants, handles = cluster
    with pytest.raises(CompareFailed) as raised:
        coordinator.execute({"a": "3", "b": None}, handles, guards=[("a", "==", "9")])
    error = raised.value
    assert (error.key, error.expected, error.actual) == ("a", "9", "1")
    assert "nothing was written" in str(error) and error.txid
    assert not isinstance(error, TransactionAborted)
    assert coordinator.retries == 0
    assert values(participants, "a") == {name: "1" for name in NAMES}
    assert values(participants, "b") == {name: "x" for name in NAMES}
    assert all(p.locks.held() == {} and p.in_doubt() == [] for p in participants.values())


@pytest.mark.parametrize("guard, commits", [
    (("new", "==", None), True),     # absent: may be created
    (("a", "==", None), False),      # it has a value
    (("a", "!=", None), True),       # it has a value
    (("a", "!=", "1"), False),
    (("b", "!=", "y"), True),
])
def test_absent_and_not_equal(cluster, guard, commits):
    coordinator, participants, handles = cluster
    if commits:
        assert coordinator.execute({"new": "v"}, handles, guards=[guard]).committed
        assert values(participants, "new") == {name: "v" for name in NAMES}
    else:
        with pytest.raises(CompareFailed):
            coordinator.execute({"new": "v"}, handles, guards=[guard])
        assert values(participants, "new") == {name: None for name in NAMES}


def test_a_guarded_key_that_is_not_written_is_locked_until_the_transaction_ends(make_participant, new_txid):
    participant = make_participant("p1")
    participant.storage.commit_and_prepare([("t-0", {"a": "1"}, None)], [])
    txid = new_txid()
    assert participant.can_commit(txid, {"b": "2"}, "c0", ["c0", "p1"], None, [("a", "==", "1")])
    assert participant.locks.held() == {"a": txid, "b": txid}
    other = new_txid()
    assert participant.can_commit(other, {"a": "5"}, "c0", ["c0", "p1"]) is False  # held for the guard
    participant.do_commit(txid)
    assert participant.locks.held() == {}
    assert participant.storage.get("a") == ("1", 1) and participant.storage.get("b") == ("2", 1)


def test_a_failed_compare_frees_the_keys_it_locked(make_participant, new_txid):
    participant = make_participant("p1")
    with pytest.raises(CompareFailed):
        participant.can_commit(new_txid(), {"a": "2"}, "c0", ["c0", "p1"], None, [("a", "==", "1")])
    assert participant.locks.held() == {} and participant.in_doubt() == []


def test_the_rules_of_a_guard():
    assert guards.holds(("k", "==", None), None) and not guards.holds(("k", "==", None), "v")
    assert guards.holds(("k", "!=", "v"), None) and not guards.holds(("k", "!=", "v"), "v")
    assert guards.first_failed([("a", "==", "1"), ("b", "==", "2")], {"a": "1", "b": "3"}.get) == \
        (("b", "==", "2"), "3")
    error = guards.compare_failed(("k", "==", None), "v", "r1")
    assert "'k' holds 'v', and the guard was that it has no value" in str(error)


def test_a_guarded_key_stays_locked_across_a_restart_of_the_participant(make_participant, new_txid):
    """The keys a PREPARED transaction's guards read are forced with its record: a restarted
    participant locks them again, so no write slips in before the transaction is decided."""
    participant = make_participant("p1")
    participant.storage.commit_and_prepare([("t-0", {"a": "1"}, None)], [])
    txid = new_txid()
    assert participant.can_commit(txid, {"b": "2"}, "c0", ["c0", "p1"], None, [("a", "==", "1")])
    again = make_participant("p1", storage=participant.storage)  # the same log, a new process
    assert again.recover() == [txid]
    assert again.locks.held() == {"a": txid, "b": txid}
