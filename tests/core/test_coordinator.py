"""Coordinator: one 2PC round over fake participant handles (and over real participants)."""
import threading
import time

import pytest

from rmi_kv.core.coordinator import CONFLICT
from rmi_kv.core.handles import LocalHandle, timed
from rmi_kv.core.messages import UNKNOWN, Reply
from rmi_kv.core.replies import PendingReply
from rmi_kv.errors import MembershipChanged, ReplicaUnavailable, TransactionAborted
from rmi_kv.core.failpoints import Failpoints, parse_specs
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.core.validation import check_txid
from support.handles import ByMessage, SendsInBackground

from support.storage_helpers import entries, entry_of

WRITES = {"k": "v"}


class FakeParticipant(SendsInBackground):
    """Records every message; votes ``votes`` in turn (the last one repeats).

    A vote may be True/False, an exception to raise, or a callable run in
    canCommit's place. Under the coordinator's own name it is its local
    participant, and forces the decision in ``storage`` (the coordinator's).
    """

    def __init__(self, name, votes=(True,), commit=True, storage=None):
        self.name = name
        self.votes = list(votes)
        self.commit = commit
        self.storage = storage  # the coordinator's, to check the decision is forced first
        self.calls = []
        self.lock = threading.Lock()
        self.aborted = threading.Event()
        self.committed = threading.Event()
        self.decision_logged_at_commit = []

    def _record(self, *call):
        with self.lock:
            self.calls.append(call)

    def messages(self, kind):
        with self.lock:
            return [call[1] for call in self.calls if call[0] == kind]

    def canCommit(self, txid, writes, coordinator, participants):
        self._record("canCommit", txid, dict(writes), coordinator, list(participants))
        with self.lock:
            vote = self.votes.pop(0) if len(self.votes) > 1 else self.votes[0]
        if isinstance(vote, BaseException):
            raise vote
        if callable(vote):
            return vote(txid)
        return vote

    def doCommit(self, txid):
        if self.storage is not None:
            self.decision_logged_at_commit.append(self.storage.has_decision(txid))
        self._record("doCommit", txid)
        result = self.commit(txid) if callable(self.commit) else self.commit
        if isinstance(result, BaseException):
            raise result
        self.committed.set()
        return result

    def doAbort(self, txid):
        self._record("doAbort", txid)
        self.aborted.set()
        return True

    def commitWithDecision(self, txid, participants):
        self.storage.log_decision(txid, participants)  # with the local apply, in one write, on a replica
        return self.doCommit(txid)


def fakes(*names, **options):
    return {name: FakeParticipant(name, **options) for name in names}


# ------------------------------------------------------------------ commit
def test_all_yes_commits_everywhere_after_forcing_the_decision(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", "p2", storage=coordinator.storage)
    outcome = coordinator.execute({"a": "1", "b": None}, handles)
    assert outcome.committed is True
    assert outcome.attempts == 1
    assert outcome.unacknowledged == []
    assert outcome.refusals == {}
    check_txid(outcome.txid)  # txids pass the remote boundary's check
    for fake in handles.values():
        [(kind, txid, writes, coordinator_name, participants)] = [c for c in fake.calls if c[0] == "canCommit"]
        assert (txid, writes, coordinator_name, participants) == \
            (outcome.txid, {"a": "1", "b": None}, "c0", ["c0", "p1", "p2"])
        assert fake.messages("doCommit") == [outcome.txid]
        assert fake.decision_logged_at_commit == [True]  # COMMIT forced before any doCommit
        assert fake.messages("doAbort") == []
    assert coordinator.storage.decisions()[0].participants == ("c0", "p1", "p2")
    assert coordinator.decision(outcome.txid) == COMMIT
    assert coordinator.pending() == {}  # everyone acknowledged
    assert coordinator.committed == 1 and coordinator.aborted == 0
    messages = [(event.message, event.participant) for event in outcome.trace]
    assert ("decision", "c0") in messages and ("haveCommitted", "p2") in messages


def test_coordinator_need_not_be_a_participant(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("p1", "p2")
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.committed
    assert all(fake.messages("doCommit") == [outcome.txid] for fake in handles.values())


def test_observe_runs_after_the_votes_and_its_result_is_returned(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", storage=coordinator.storage)
    seen = []

    def observe(writes):
        seen.append((dict(writes), [len(fake.messages("canCommit")) for fake in handles.values()],
                     [len(fake.messages("doCommit")) for fake in handles.values()]))
        return "observed"

    outcome = coordinator.execute(WRITES, handles, observe)
    assert outcome.observed == "observed"
    assert seen == [(WRITES, [1, 1], [0, 0])]


# ------------------------------------------------------------------ abort
def test_one_no_vote_aborts_and_names_the_participant(make_coordinator, wait_until):
    coordinator = make_coordinator("c0", conflict_retries=0)
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", votes=[False])
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    error = caught.value
    assert error.replicas == {"p2": CONFLICT}
    assert "p2" in str(error)
    txid = handles["p2"].messages("canCommit")[0]
    assert error.txid == txid
    assert wait_until(lambda: handles["p1"].messages("doAbort") == [txid])
    assert handles["c0"].messages("doAbort") == [txid]
    assert all(fake.messages("doCommit") == [] for fake in handles.values())
    assert coordinator.storage.decisions() == []  # presumed abort: nothing forced
    assert coordinator.decision(txid) == ABORT
    assert coordinator.aborted == 1 and coordinator.committed == 0


def test_a_participant_that_raises_aborts_with_its_reason(make_coordinator, wait_until):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p2", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[RuntimeError("disk full")])
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    error = caught.value
    assert error.attempts == 1  # a failure is not a lost conflict: no retry
    assert "disk full" in error.replicas["p1"]
    assert "RuntimeError" in error.replicas["p1"]
    assert "disk full" in str(error) and "p1" in str(error)
    assert set(error.replicas) == {"p1"}
    assert wait_until(lambda: handles["p2"].aborted.is_set())
    assert handles["c0"].aborted.is_set()
    assert all(fake.messages("doCommit") == [] for fake in handles.values())


def test_a_participant_unavailable_error_is_reported_as_is(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[ReplicaUnavailable("p1 is unreachable (refused)", replica="p1")])
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert caught.value.replicas == {"p1": "p1 is unreachable (refused)"}


def test_a_participant_that_fails_to_vote_also_hears_the_abort(make_coordinator, wait_until):
    """A failed canCommit call (e.g. a Pyro5 timeout turned into ReplicaUnavailable)
    may have prepared on the far side; the design says "Any NO: doAbort to all",
    so it must be told, or it keeps the keys locked until its recovery runs."""
    coordinator = make_coordinator("c0")
    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[ReplicaUnavailable("p1 did not answer canCommit within 2 s")])
    with pytest.raises(TransactionAborted):
        coordinator.execute(WRITES, handles)
    txid = handles["p1"].messages("canCommit")[0]
    assert wait_until(lambda: handles["p1"].messages("doAbort") == [txid], timeout=1.0)


def test_a_participant_that_does_not_vote_in_time_aborts(make_coordinator, wait_until):
    coordinator = make_coordinator("c0", vote_timeout=0.2)
    release = threading.Event()
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", votes=[lambda txid: release.wait(10)])
    try:
        with pytest.raises(TransactionAborted) as caught:
            coordinator.execute(WRITES, handles)
        error = caught.value
        assert "did not vote" in error.replicas["p2"]
        assert "did not vote" in str(error)
        assert error.attempts == 1
        txid = handles["p2"].messages("canCommit")[0]
        # the late voter may still prepare: it hears the abort as well as the YES voters
        assert wait_until(lambda: handles["p2"].messages("doAbort") == [txid])
        assert wait_until(lambda: handles["p1"].messages("doAbort") == [txid])
        assert coordinator.decision(txid) == ABORT
    finally:
        release.set()


def test_a_participant_whose_call_timed_out_at_the_deadline_did_not_vote_in_time(make_coordinator, wait_until):
    """The call carrying a vote has a timeout of its own, as long as the vote's
    and started a moment later; when the coordinator sees that failure first,
    the participant still did not vote in time, and says so."""
    coordinator = make_coordinator("c0", vote_timeout=0.2)
    handles = fakes("c0", "p1", storage=coordinator.storage)

    class CallTimedOut(FakeParticipant):
        def send(self, message, *args, expires=None, lazy=False):
            if message == "canCommit":
                return _answered(Reply(None, ReplicaUnavailable("p2 did not answer batch within 0.2 s"), 201.0))
            return _answered(timed(getattr(self, message), *args))

    handles["p2"] = CallTimedOut("p2")
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert caught.value.replicas == {"p2": "did not vote within 0.2 s"}
    assert wait_until(lambda: handles["p1"].messages("doAbort") != [])

    handles["p2"].send = lambda message, *args, **options: _answered(
        Reply(None, ReplicaUnavailable("p2 is unreachable"), 3.0))
    with pytest.raises(TransactionAborted) as caught:  # before the deadline, the failure is told as it is
        coordinator.execute(WRITES, handles)
    assert caught.value.replicas == {"p2": "p2 is unreachable"}


def _answered(reply):
    return PendingReply.answered(reply)


def test_a_large_transaction_is_given_longer_to_vote(make_coordinator):
    coordinator = make_coordinator("c0", vote_timeout=0.2)
    assert coordinator.vote_allowance({"k": "v"}) == 0.2  # small writes: the timeout alone
    two_mib = {"a": "x" * (1024 * 1024), "b": "y" * (1024 * 1024)}
    assert coordinator.vote_allowance(two_mib) > 0.2 + 3.9  # 2 s per MiB on top
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[lambda txid: threading.Event().wait(0.4) or True])  # slower than the plain timeout
    assert coordinator.execute(two_mib, handles).committed  # a slow vote past the plain timeout still counts


def test_observe_failure_aborts(make_coordinator, wait_until):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", storage=coordinator.storage)

    def observe(writes):
        raise RuntimeError("cannot read")

    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles, observe)
    assert "cannot read" in caught.value.replicas["c0"]
    assert wait_until(lambda: handles["p1"].aborted.is_set())
    assert coordinator.storage.decisions() == []


def test_failpoint_before_decision_aborts(make_coordinator, wait_until):
    coordinator = make_coordinator(
        "c0", failpoints=Failpoints(parse_specs(["coordinator.before_decision=once:error"])))
    handles = fakes("c0", "p1", storage=coordinator.storage)
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert "coordinator.before_decision" in caught.value.replicas["c0"]
    assert wait_until(lambda: handles["p1"].aborted.is_set())
    assert coordinator.storage.decisions() == []
    assert coordinator.execute(WRITES, handles).committed  # once: the next one commits


# ---------------------------------------------------------------- retries
def test_the_own_vote_comes_first_and_a_no_there_sends_nothing(make_coordinator):
    """No other replica hears of a txid before the coordinator's own participant
    voted on it (so that vote has no outcome to look up), and a NO there ends
    the attempt without a message: nobody else prepared anything."""
    coordinator = make_coordinator("c0", conflict_retries=0)
    handles = fakes("c0", "p1", "p2", storage=coordinator.storage)
    local_voted = []
    for name in ("p1", "p2"):
        send = handles[name].send
        handles[name].send = lambda *message, send=send, **options: (
            local_voted.append(bool(handles["c0"].messages("canCommit"))), send(*message, **options))[1]
    assert coordinator.execute(WRITES, handles).committed
    assert local_voted and all(local_voted)  # every message went after the own vote

    handles["c0"].votes = [False]
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert caught.value.replicas == {"c0": CONFLICT}
    assert len(handles["p1"].calls) == len(handles["p2"].calls) == 2  # the first write's canCommit and doCommit
    assert handles["c0"].messages("doAbort") == []  # it voted NO: nothing held there either


def test_lost_conflicts_are_retried_with_new_txids(make_coordinator, wait_until):
    coordinator = make_coordinator("c0", conflict_retries=5)
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", votes=[False, False, True])
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.committed
    assert outcome.attempts == 3
    txids = handles["p2"].messages("canCommit")
    assert len(txids) == 3 and len(set(txids)) == 3
    # every retry keeps the write's start time, so it grows older and wins conflicts (wait-die)
    assert len({txid.split(":")[3] for txid in txids}) == 1
    assert [int(txid.split(":")[2]) for txid in txids] == sorted(int(txid.split(":")[2]) for txid in txids)
    assert txids[-1] == outcome.txid
    for fake in handles.values():
        assert fake.messages("doCommit") == [outcome.txid]
    # the lost attempts were aborted where they had voted YES
    assert wait_until(lambda: sorted(handles["p1"].messages("doAbort")) == sorted(txids[:2]))
    assert coordinator.storage.has_decision(outcome.txid)
    assert not any(coordinator.storage.has_decision(txid) for txid in txids[:2])


def test_conflicts_beyond_the_retry_limit_abort(make_coordinator):
    coordinator = make_coordinator("c0", conflict_retries=2)
    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[False])
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert caught.value.attempts == 3
    assert len(handles["p1"].messages("canCommit")) == 3
    assert caught.value.replicas == {"p1": CONFLICT}
    assert coordinator.storage.decisions() == []


def test_membership_changed_reloads_the_members_and_retries(make_coordinator):
    coordinator = make_coordinator("c0")
    old = fakes("c0", storage=coordinator.storage)
    old["p1"] = FakeParticipant("p1", votes=[MembershipChanged("p1 votes no: left out p3", replica="p1"), True])
    new = dict(old, p3=FakeParticipant("p3"))
    calls = []

    def handles(reload_members):
        calls.append(reload_members)
        return new if reload_members else old

    outcome = coordinator.execute(WRITES, handles)
    assert calls == [False, True]
    assert outcome.committed and outcome.attempts == 2
    assert new["p3"].messages("doCommit") == [outcome.txid]
    [(_, _, _, _, participants)] = [c for c in new["p3"].calls if c[0] == "canCommit"]
    assert participants == ["c0", "p1", "p3"]


# --------------------------------------------------------------- decisions
def test_get_decision_is_unknown_while_voting(make_coordinator):
    coordinator = make_coordinator("c0")
    seen = {}

    def vote(txid):
        seen["during"] = coordinator.decision(txid)
        return True

    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[vote])
    outcome = coordinator.execute(WRITES, handles)
    assert seen["during"] == UNKNOWN
    assert coordinator.decision(outcome.txid) == COMMIT
    later = time.time_ns() // 1000 + 1
    assert coordinator.decision(f"c0:00000000:999:{later}") == ABORT  # never heard of: presumed abort
    # started before this coordinator's log existed: no record says nothing
    assert coordinator.decision("c0:00000000:999:1") == UNKNOWN


def test_get_decision_is_abort_after_an_abort(make_coordinator):
    coordinator = make_coordinator("c0", conflict_retries=0)
    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", votes=[False])
    with pytest.raises(TransactionAborted) as caught:
        coordinator.execute(WRITES, handles)
    assert coordinator.decision(caught.value.txid) == ABORT


def test_acknowledged_decisions_are_forgotten(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", commit=ReplicaUnavailable("p2 is unreachable"))
    outcome = coordinator.execute(WRITES, handles)
    txid = outcome.txid
    assert outcome.committed and outcome.unacknowledged == ["p2"]
    assert coordinator.pending() == {txid: {"p2"}}
    assert coordinator.forget_acknowledged() == 0
    assert coordinator.storage.has_decision(txid)
    coordinator.acknowledge(txid, "p2")
    coordinator.acknowledge(txid, "p2")  # repeated: harmless
    assert coordinator.pending() == {}
    assert coordinator.decision(txid) == COMMIT  # still in the log
    assert coordinator.forget_acknowledged() == 1
    assert not coordinator.storage.has_decision(txid)
    assert coordinator.decision(txid) == ABORT  # forgotten: every participant applied it already
    assert coordinator.forget_acknowledged() == 0


def test_dropping_a_member_stops_waiting_for_its_acknowledgement(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", commit=ReplicaUnavailable("p2 is unreachable"))
    first = coordinator.execute(WRITES, handles)
    second = coordinator.execute(WRITES, handles)
    assert coordinator.pending() == {first.txid: {"p2"}, second.txid: {"p2"}}
    coordinator.drop_participant("p1")  # acknowledged everything already: no change
    assert coordinator.pending() == {first.txid: {"p2"}, second.txid: {"p2"}}
    coordinator.drop_participant("p2")
    assert coordinator.pending() == {}
    assert coordinator.forget_acknowledged() == 2


def test_fully_acknowledged_commit_is_forgettable_at_once(make_coordinator):
    coordinator = make_coordinator("c0")
    outcome = coordinator.execute(WRITES, fakes("c0", "p1", storage=coordinator.storage))
    assert coordinator.storage.has_decision(outcome.txid)
    assert coordinator.forget_acknowledged() == 1
    assert coordinator.storage.decisions() == []


def test_recover_reloads_unacknowledged_decisions_and_resends_them(make_storage, make_coordinator):
    coordinator = make_coordinator("c0", storage=make_storage("c0"))
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", commit=ReplicaUnavailable("p2 is unreachable"))
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.unacknowledged == ["p2"]
    coordinator.close()
    coordinator.storage.close()  # crash and restart

    restarted = make_coordinator("c0", storage=make_storage("c0"))
    assert restarted.recover() == [outcome.txid]
    # nothing says who acknowledged before the crash: all of them are asked again
    assert restarted.pending() == {outcome.txid: {"c0", "p1", "p2"}}
    assert restarted.decision(outcome.txid) == COMMIT
    after = fakes("c0", "p1", "p2", storage=coordinator.storage)
    restarted.resend_commits(after)
    for fake in after.values():
        assert fake.messages("doCommit") == [outcome.txid]
    assert restarted.pending() == {}
    assert restarted.forget_acknowledged() == 1
    assert restarted.storage.decisions() == []


def test_resend_commits_skips_members_without_a_handle(make_coordinator):
    coordinator = make_coordinator("c0")
    handles = fakes("c0", storage=coordinator.storage)
    handles["p1"] = FakeParticipant("p1", commit=ReplicaUnavailable("p1 is unreachable"))
    outcome = coordinator.execute(WRITES, handles)
    coordinator.resend_commits({})  # p1 is not a member now
    assert coordinator.pending() == {outcome.txid: {"p1"}}
    p1 = FakeParticipant("p1")
    coordinator.resend_commits({"p1": p1})
    assert p1.messages("doCommit") == [outcome.txid]
    assert coordinator.pending() == {}


def test_slow_do_commit_is_reported_unacknowledged_and_still_committed(make_coordinator, wait_until):
    coordinator = make_coordinator("c0", decision_timeout=0.2)
    release = threading.Event()
    handles = fakes("c0", "p1", storage=coordinator.storage)
    handles["p2"] = FakeParticipant("p2", commit=lambda txid: release.wait(10))
    try:
        outcome = coordinator.execute(WRITES, handles)
        assert outcome.committed is True
        assert outcome.unacknowledged == ["p2"]
        assert coordinator.pending() == {outcome.txid: {"p2"}}
        assert coordinator.decision(outcome.txid) == COMMIT
        assert handles["p1"].messages("doCommit") == [outcome.txid]
    finally:
        release.set()
    assert wait_until(lambda: handles["p2"].committed.is_set())
    coordinator.resend_commits(handles)
    assert coordinator.pending() == {}


# --------------------------------------------------- with real participants
def _cluster(make_participant, names, **options):
    participants = {name: make_participant(name, **options) for name in names}
    coordinator = names[0]  # the first one coordinates: its own participant is called directly
    return participants, {name: (LocalHandle if name == coordinator else ByMessage)(participant)
                          for name, participant in participants.items()}


def test_real_participants_end_up_identical(make_participant, make_coordinator):
    participants, handles = _cluster(make_participant, ["c0", "p1", "p2"])
    coordinator = make_coordinator("c0", storage=participants["c0"].storage)
    coordinator.execute({"a": "1", "b": "2"}, handles)
    coordinator.execute({"a": None, "c": "3"}, handles)
    digests = {participant.storage.digest for participant in participants.values()}
    assert len(digests) == 1
    for participant in participants.values():
        assert entry_of(participant.storage, "a") == (None, 2)
        assert participant.storage.get("c") == ("3", 1)
        assert participant.locks.held() == {}
        assert participant.in_doubt() == []


def test_concurrent_writes_to_one_key_all_commit_in_the_same_order(make_participant, make_coordinator):
    participants, handles = _cluster(make_participant, ["c0", "p1", "p2"], lock_wait=0.01)
    coordinator = make_coordinator("c0", storage=participants["c0"].storage, conflict_retries=500)
    errors = []

    def writer(index):
        try:
            for round_ in range(4):
                coordinator.execute({"hot": f"{index}-{round_}", f"own{index}": str(round_)}, handles)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    copies = {name: entries(p.storage) for name, p in participants.items()}
    assert copies["c0"] == copies["p1"] == copies["p2"]
    assert participants["c0"].storage.get("hot")[1] == 16
    assert all(p.locks.held() == {} and p.in_doubt() == [] for p in participants.values())


class BatchingFake(FakeParticipant):
    """A participant reached through a batcher: messages go through ``send``."""

    def __init__(self, name, **options):
        super().__init__(name, **options)
        self.sent = []

    def send(self, message, *args, expires=None, lazy=False):
        self.sent.append((message, expires))
        assert not lazy  # only an early reply leaves doCommit lazy
        future = PendingReply()
        if message == "canCommit" and expires is not None and expires <= time.monotonic():
            future.set_result(Reply(None, TimeoutError("not sent in time"), 0.0))
        else:
            future.set_result(timed(getattr(self, message), *args))
        return future


def test_participants_that_batch_get_every_message_through_send_with_a_vote_deadline(make_coordinator):
    coordinator = make_coordinator("c0", vote_timeout=5.0)
    handles = {"c0": FakeParticipant("c0", storage=coordinator.storage), "p1": BatchingFake("p1"), "p2": BatchingFake("p2")}
    before = time.monotonic()
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.committed and outcome.unacknowledged == []
    for name in ("p1", "p2"):
        (vote, expires), (commit, no_deadline) = handles[name].sent
        assert (vote, commit, no_deadline) == ("canCommit", "doCommit", None)
        assert before + 4.0 < expires <= time.monotonic() + 5.0  # the vote's own deadline


def test_early_reply_answers_at_the_commit_point_and_records_the_acknowledgements_later(make_coordinator,
                                                                                       wait_until):
    coordinator = make_coordinator("c0", early_reply=True)
    release = threading.Event()
    slow = FakeParticipant("p1", commit=lambda txid: release.wait(10))
    handles = {"c0": FakeParticipant("c0", storage=coordinator.storage), "p1": slow, "p2": FakeParticipant("p2")}
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.committed
    assert "p1" in outcome.unacknowledged  # answered before p1 applied
    assert coordinator.storage.has_decision(outcome.txid)  # ... but after the decision was forced
    assert ("reply", "c0") in [(event.message, event.participant) for event in outcome.trace]
    assert "p1" in coordinator.pending()[outcome.txid]  # its doCommit is still running
    release.set()
    assert wait_until(lambda: coordinator.pending() == {})  # p1's acknowledgement arrived afterwards


class Timed(FakeParticipant):
    """A participant reached by message whose votes take ``vote_ms`` (as the
    coordinator measures them), and that records which doCommits came lazy."""

    def __init__(self, name, vote_ms, commit=True):
        super().__init__(name, commit=commit)
        self.vote_ms = vote_ms
        self.lazy = []

    def send(self, message, *args, expires=None, lazy=False):
        future = PendingReply()
        if message == "doCommit":
            self.lazy.append(lazy)
        value, error, _ = timed(getattr(self, message), *args)
        if message != "doCommit" or self.commit is not None:
            future.set_result(Reply(value, error, self.vote_ms if message == "canCommit" else 0.0))
        return future  # commit=None: a doCommit never answered


def timed_cluster(make_coordinator, quorum, vote_ms, **options):
    coordinator = make_coordinator("c0", early_reply=True, quorum=lambda: quorum, decision_timeout=5.0)
    handles = {"c0": FakeParticipant("c0", storage=coordinator.storage)}
    handles.update({name: Timed(name, ms, **options.get(name, {})) for name, ms in vote_ms.items()})
    return coordinator, handles


def test_an_early_reply_waiting_for_a_majority_hurries_the_fastest_voters_and_lets_the_others_wait_for_company(
        make_coordinator):
    coordinator, handles = timed_cluster(make_coordinator, 3, {"p1": 9.0, "p2": 1.0, "p3": 2.0, "p4": 8.0})
    assert coordinator.execute({"k": "v"}, handles).committed
    # c0 holds the COMMIT with its decision: the answer waits for two more, the two fastest voters
    assert {name: handles[name].lazy for name in ("p1", "p2", "p3", "p4")} == {
        "p1": [True], "p2": [False], "p3": [False], "p4": [True]}


def test_an_early_reply_without_a_quorum_rule_lets_every_doCommit_wait_for_company(make_coordinator):
    coordinator, handles = timed_cluster(make_coordinator, None, {"p1": 9.0, "p2": 1.0})
    assert coordinator.execute({"k": "v"}, handles).committed
    assert handles["p1"].lazy == handles["p2"].lazy == [True]


def test_a_hurried_voter_that_never_applies_does_not_hold_the_answer_once_a_lazy_one_does(make_coordinator):
    coordinator, handles = timed_cluster(make_coordinator, 3, {"p1": 1.0, "p2": 2.0, "p3": 5.0, "p4": 6.0},
                                         p1={"commit": None})
    outcome = coordinator.execute({"k": "v"}, handles)
    assert outcome.committed
    assert handles["p1"].lazy == [False] and handles["p3"].lazy == [True]
    assert "p1" in outcome.unacknowledged and "p3" not in outcome.unacknowledged


def test_resend_skips_decisions_younger_than_min_age(make_coordinator):
    coordinator = make_coordinator("c0", decision_timeout=0.2)
    never = FakeParticipant("p1", commit=ReplicaUnavailable("p1 is down", replica="p1"))
    outcome = coordinator.execute(WRITES, {"c0": FakeParticipant("c0", storage=coordinator.storage), "p1": never})
    assert coordinator.pending() == {outcome.txid: {"p1"}}
    sent = len(never.messages("doCommit"))
    coordinator.resend_commits({"p1": never}, min_age=3600)
    assert len(never.messages("doCommit")) == sent  # still on its way: not sent again
    coordinator.resend_commits({"p1": never}, min_age=0)
    assert len(never.messages("doCommit")) == sent + 1


def test_each_acknowledgement_is_traced_when_it_arrived(make_coordinator):
    """An acknowledgement is noted at its doCommit's send time plus the time it took, not when the
    coordinator got round to it (after the slowest one): the trace's times add up."""
    coordinator = make_coordinator("c0")
    handles = fakes("c0", "p1", storage=coordinator.storage)

    def slow_commit(txid):
        handles["p1"].committed.wait(10)
        started = time.perf_counter()
        while time.perf_counter() - started < 0.005:  # 5 ms of work, after p1 has answered
            pass
        return True

    handles["p2"] = FakeParticipant("p2", commit=slow_commit)
    outcome = coordinator.execute(WRITES, handles)
    assert outcome.committed is True and outcome.unacknowledged == []
    sent = {event.participant: event.at_ms for event in outcome.trace if event.message == "doCommit"}
    acknowledged = {event.participant: event for event in outcome.trace if event.message == "haveCommitted"}
    assert set(sent) == {"p1", "p2"} <= set(acknowledged)
    for name in ("p1", "p2"):
        took = float(acknowledged[name].result.split("after ")[1].split(" ms")[0])
        assert acknowledged[name].at_ms == pytest.approx(sent[name] + took, abs=0.01), name
    # p2 answered only after p1 had: noted in that order (by how much depends on how busy the machine is)
    assert acknowledged["p2"].at_ms > acknowledged["p1"].at_ms, "p1 is not noted when p2 answers"
    times = [event.at_ms for event in outcome.trace]
    assert times == sorted(times)


def test_a_round_nobody_reads_keeps_no_trace_and_a_listener_still_hears_every_message(make_coordinator):
    """``trace=False`` (every client write but ``traced``): nothing kept; a listener (the web view's
    protocol feed) is told the same messages, in the same order, as a kept trace shows."""
    coordinator = make_coordinator("c0")
    quiet = coordinator.execute({"a": "1"}, fakes("c0", "p1", "p2", storage=coordinator.storage), trace=False)
    assert quiet.committed is True and quiet.trace == []
    heard = []
    coordinator.listener = lambda txid, event: heard.append((txid, event))
    untraced = coordinator.execute({"a": "2"}, fakes("c0", "p1", "p2", storage=coordinator.storage), trace=False)
    assert untraced.trace == []
    assert {txid for txid, _ in heard} == {untraced.txid}
    messages = sorted((event.message, event.participant) for _, event in heard)
    coordinator.listener = None
    traced = coordinator.execute({"a": "3"}, fakes("c0", "p1", "p2", storage=coordinator.storage))
    assert messages == sorted((event.message, event.participant) for event in traced.trace)
    assert ("haveCommitted", "p2") in messages and ("vote", "p1") in messages


def test_the_batchers_hear_of_every_transaction_that_ends(make_coordinator):
    """``company_left`` after each write, committed or not: a batch waiting for that transaction's
    company stops waiting (``core.batching`` B3)."""
    coordinator = make_coordinator("c0")
    seen = []
    coordinator.company_left = lambda: seen.append(coordinator.in_progress())
    coordinator.execute({"a": "1"}, fakes("c0", "p1", storage=coordinator.storage))
    with pytest.raises(TransactionAborted):
        coordinator.execute({"a": "2"}, {**fakes("c0", storage=coordinator.storage),
                                         "p1": FakeParticipant("p1", votes=(RuntimeError("disk full"),))})
    assert seen == [0, 0]  # told once each, after it stopped counting as company
