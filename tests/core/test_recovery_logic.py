"""Recovery of in-doubt participants: ask the coordinator, then the peers."""
import pytest

from rmi_kv.core.messages import UNKNOWN
from rmi_kv.errors import InjectedFault, ReplicaUnavailable
from rmi_kv.core.failpoints import Failpoints, parse_specs
from rmi_kv.core.recovery import ask_for_decision, resolve_in_doubt
from rmi_kv.core.messages import ABORT, COMMIT

MEMBERS = ["c0", "p1", "p2", "p3"]


class FakeReplica:
    """A remote replica as recovery sees it: getDecision and haveCommitted."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []
        self.acknowledged = []

    def getDecision(self, txid):
        self.asked.append(txid)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    def haveCommitted(self, txid, participant):
        self.acknowledged.append((txid, participant))


class PeerAdapter:
    """A real Participant answering getDecision as a peer does (replica.KeyValue.getDecision)."""

    def __init__(self, participant):
        self.participant = participant

    def getDecision(self, txid):
        return self.participant.decision_as_peer(txid)


@pytest.fixture
def peer(make_participant):
    """A real participant p2, whose data exists before the transaction starts."""
    return make_participant("p2")


@pytest.fixture
def in_doubt(make_participant, make_coordinator, peer, new_txid):
    """p1 voted YES on a transaction coordinated by c0 and waits for the decision."""
    participant = make_participant("p1", read_wait=0.05)
    coordinator = make_coordinator("p1", storage=participant.storage)
    txid = new_txid()
    assert participant.can_commit(txid, {"a": "1", "b": None}, "c0", MEMBERS)
    return participant, coordinator, txid


def lookup(replicas):
    return lambda name: replicas.get(name)


def test_commits_when_the_coordinator_says_commit(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(COMMIT), "p2": FakeReplica(ABORT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.get("a") == ("1", 1)
    assert participant.storage.outcome(txid) == COMMIT
    assert participant.locks.held() == {} and participant.in_doubt() == []
    assert replicas["c0"].acknowledged == [(txid, "p1")]  # haveCommitted
    assert replicas["p2"].asked == []  # the coordinator's word is enough


def test_aborts_when_the_coordinator_says_abort(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(ABORT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.get("a") is None
    assert participant.storage.outcome(txid) == ABORT
    assert participant.locks.held() == {} and participant.in_doubt() == []
    assert replicas["c0"].acknowledged == []


def test_a_presumed_abort_yields_to_a_participant_that_holds_the_commit(in_doubt):
    """The coordinator forgot the transaction (every participant acknowledged it), but this
    participant's disk lost the commit it had acknowledged: a peer's COMMIT is the truth."""
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(ABORT), "p2": FakeReplica(UNKNOWN), "p3": FakeReplica(COMMIT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.outcome(txid) == COMMIT
    assert participant.storage.get("a") == ("1", 1)
    assert replicas["p3"].asked == [txid]


def test_a_coordinator_that_does_not_know_leaves_it_to_the_participants(in_doubt):
    """A coordinator whose data was rebuilt answers unknown for what it decided before."""
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(UNKNOWN), "p2": FakeReplica(ABORT), "p3": FakeReplica(UNKNOWN)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.outcome(txid) == ABORT


def test_stays_in_doubt_while_the_coordinator_is_still_voting(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(UNKNOWN)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == [txid]
    assert participant.in_doubt() == [txid]
    assert participant.locks.held() == {"a": txid, "b": txid}


@pytest.mark.parametrize("peer_answer", [COMMIT, ABORT])
def test_asks_the_peers_when_the_coordinator_is_unreachable(in_doubt, peer_answer):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(ReplicaUnavailable("c0 is unreachable", replica="c0")),
                "p2": FakeReplica(UNKNOWN), "p3": FakeReplica(peer_answer)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert replicas["c0"].asked == [txid]
    assert replicas["p2"].asked == [txid] and replicas["p3"].asked == [txid]
    assert participant.storage.outcome(txid) == peer_answer
    assert participant.storage.get("a") == (("1", 1) if peer_answer == COMMIT else None)
    assert participant.locks.held() == {}


def test_asks_the_peers_when_the_coordinator_is_no_member(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"p2": FakeReplica(COMMIT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.outcome(txid) == COMMIT


def test_a_failing_peer_is_skipped(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(OSError("connection refused")),
                "p2": FakeReplica(ReplicaUnavailable("p2 is unreachable")), "p3": FakeReplica(ABORT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.outcome(txid) == ABORT


def test_stays_in_doubt_when_everyone_says_unknown(in_doubt):
    participant, coordinator, txid = in_doubt
    replicas = {"c0": FakeReplica(ReplicaUnavailable("c0 is unreachable")),
                "p2": FakeReplica(UNKNOWN), "p3": FakeReplica(UNKNOWN)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == [txid]
    assert participant.in_doubt() == [txid]
    assert participant.locks.held() == {"a": txid, "b": txid}
    assert participant.storage.outcome(txid) is None
    assert participant.storage.get("a") is None  # never decides alone


def test_a_peer_that_never_voted_answers_abort_and_then_refuses_to_vote(in_doubt, peer):
    participant, coordinator, txid = in_doubt  # the canCommit for txid has not reached the peer (yet)
    replicas = {"c0": FakeReplica(ReplicaUnavailable("c0 is unreachable")), "p2": PeerAdapter(peer)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert participant.storage.outcome(txid) == ABORT
    assert participant.locks.held() == {}
    assert peer.storage.outcome(txid) == ABORT
    # the late canCommit must not be a YES: the transaction can no longer commit anywhere
    assert peer.can_commit(txid, {"a": "1", "b": None}, "c0", MEMBERS) is False
    assert peer.locks.held() == {}


def test_a_prepared_peer_answers_unknown(in_doubt, peer):
    participant, coordinator, txid = in_doubt
    assert peer.can_commit(txid, {"a": "1", "b": None}, "c0", MEMBERS)
    replicas = {"c0": FakeReplica(ReplicaUnavailable("c0 is unreachable")), "p2": PeerAdapter(peer)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == [txid]
    assert peer.in_doubt() == [txid]  # asking did not change the peer


def test_own_transactions_ask_the_local_coordinator(make_participant, make_coordinator, new_txid):
    participant = make_participant("c0")
    coordinator = make_coordinator("c0", storage=participant.storage)
    committed, forgotten = new_txid("c0"), new_txid("c0")
    for txid in (committed, forgotten):
        assert participant.can_commit(txid, {txid: "v"}, "c0", ["c0", "p1"])
    participant.storage.log_decision(committed, ["c0", "p1"])  # crashed after the commit point
    assert sorted(coordinator.recover()) == [committed]
    assert resolve_in_doubt(participant, coordinator, lookup({}), [committed, forgotten]) == []
    assert participant.storage.get(committed) == ("v", 1)
    assert participant.storage.outcome(forgotten) == ABORT  # no COMMIT record: presumed abort
    assert coordinator.pending() == {committed: {"p1"}}  # its own haveCommitted was noted


def test_transactions_decided_meanwhile_are_skipped(in_doubt):
    participant, coordinator, txid = in_doubt
    participant.do_abort(txid)
    replicas = {"c0": FakeReplica(COMMIT)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == []
    assert replicas["c0"].asked == []
    assert participant.storage.outcome(txid) == ABORT


def test_ask_for_decision_ignores_a_malformed_answer(in_doubt):
    participant, coordinator, txid = in_doubt
    record = participant.prepared()[txid]
    replicas = {"c0": FakeReplica("maybe"), "p2": FakeReplica(ABORT)}
    assert ask_for_decision(record, "p1", coordinator, lookup(replicas)) == ABORT


def test_mid_recovery_failpoint_fires_after_each_decision(make_participant, make_coordinator, new_txid):
    participant = make_participant("p1")
    coordinator = make_coordinator("p1", storage=participant.storage)
    txid = new_txid()
    participant.can_commit(txid, {"a": "1"}, "c0", MEMBERS)
    failpoints = Failpoints(parse_specs(["recovery.mid_recovery=error"]))
    with pytest.raises(InjectedFault):
        resolve_in_doubt(participant, coordinator, lookup({"c0": FakeReplica(COMMIT)}), [txid], failpoints)
    assert participant.storage.outcome(txid) == COMMIT  # the decision was applied before the fault


def test_a_peer_with_newer_data_cannot_vouch_for_an_older_transaction(in_doubt, make_participant):
    """A replica whose data directory was created after the transaction started
    (a replaced disk) knows nothing of it: "never voted" is no proof of abort."""
    participant, coordinator, txid = in_doubt
    newcomer = make_participant("p3")
    replicas = {"c0": FakeReplica(ReplicaUnavailable("c0 is unreachable")), "p3": PeerAdapter(newcomer)}
    assert resolve_in_doubt(participant, coordinator, lookup(replicas), [txid]) == [txid]
    assert participant.in_doubt() == [txid]
    assert newcomer.storage.outcome(txid) is None
