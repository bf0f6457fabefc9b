"""Participant: votes, apply, abort, idempotence, peer answers, reads, recovery.

Txids are made after the participant's storage (see the new_txid fixture), in
age order: the first one made is the oldest (wait-die).
"""
import threading
import time

import pytest

from rmi_kv.errors import InjectedFault, InvalidRequest, KeyInDoubt, ReplicaUnavailable
from rmi_kv.core.failpoints import Failpoints, parse_specs
from rmi_kv.core.messages import ABORT, COMMIT, UNKNOWN

MEMBERS = ["c0", "p1", "p2"]


def test_yes_vote_then_do_commit_applies(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    assert participant.can_commit(t1, {"a": "1", "b": "2"}, "c0", MEMBERS) is True
    assert participant.locks.held() == {"a": t1, "b": t1}
    assert participant.in_doubt() == [t1]
    [record] = participant.storage.prepared()
    assert (record.txid, record.writes, record.coordinator, record.participants) == \
        (t1, {"a": "1", "b": "2"}, "c0", tuple(MEMBERS))
    assert participant.storage.get("a") is None  # nothing applied before the decision

    assert participant.do_commit(t1) is True
    assert participant.storage.get("a") == ("1", 1)
    assert participant.storage.get("b") == ("2", 1)
    assert participant.locks.held() == {}
    assert participant.in_doubt() == []
    assert participant.storage.prepared() == []
    assert participant.storage.outcome(t1) == COMMIT


def test_do_abort_drops_the_writes_and_frees_the_keys(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    assert participant.do_abort(t1) is True
    assert participant.storage.get("a") is None
    assert participant.locks.held() == {}
    assert participant.storage.prepared() == []
    assert participant.storage.outcome(t1) == ABORT


def test_vote_no_on_a_lock_conflict(make_participant, new_txid):
    participant = make_participant(lock_wait=5.0)
    older, younger, later = new_txid(), new_txid(), new_txid()
    assert participant.can_commit(older, {"a": "1"}, "c0", MEMBERS)
    started = time.monotonic()
    assert participant.can_commit(younger, {"b": "2", "a": "2"}, "c0", MEMBERS) is False
    assert time.monotonic() - started < 2.0  # wait-die: the younger one does not wait
    assert participant.locks.held() == {"a": older}  # b was not kept
    assert [record.txid for record in participant.storage.prepared()] == [older]
    assert participant.in_doubt() == [older]
    assert participant.storage.outcome(younger) is None  # a NO vote records nothing
    participant.do_commit(older)
    assert participant.can_commit(later, {"b": "2", "a": "2"}, "c0", MEMBERS) is True


def test_older_transaction_waits_for_a_younger_holder(make_participant, new_txid):
    participant = make_participant(lock_wait=10.0)
    older, younger = new_txid("c1"), new_txid("c0")
    assert participant.can_commit(younger, {"a": "young"}, "c0", MEMBERS)
    started, done = threading.Event(), threading.Event()
    votes = []

    def vote():
        started.set()
        votes.append(participant.can_commit(older, {"a": "old", "b": "old"}, "c1", MEMBERS))
        done.set()

    voter = threading.Thread(target=vote)
    voter.start()
    try:
        assert started.wait(5)
        assert not done.wait(0.05)  # the older one waits for the younger one's decision
        assert participant.locks.owner("b") is None
        participant.do_commit(younger)
        assert done.wait(5)
    finally:
        if younger in participant.prepared():
            participant.do_abort(younger)
        voter.join(5)
    assert votes == [True]
    assert participant.locks.held() == {"a": older, "b": older}


def test_a_vote_never_waits_for_a_holder_of_its_own_coordinator(make_participant, new_txid):
    # that coordinator's decision for the holder travels behind this vote, on the same connection
    participant = make_participant("p1", lock_wait=10.0)
    older, younger = new_txid("c0"), new_txid("c0")
    assert participant.can_commit(younger, {"a": "young"}, "c0", MEMBERS)
    started = time.monotonic()
    assert participant.can_commit(older, {"a": "old"}, "c0", MEMBERS) is False
    assert time.monotonic() - started < 5.0  # not the 10 s lock wait
    # the replica's own coordinator calls its participant directly: there the wait is worth it
    here = make_participant("c0", lock_wait=0.1)
    older, younger = new_txid("c0"), new_txid("c0")
    assert here.can_commit(younger, {"a": "young"}, "c0", MEMBERS)
    started = time.monotonic()
    assert here.can_commit(older, {"a": "old"}, "c0", MEMBERS) is False
    assert time.monotonic() - started >= 0.09  # it waited the lock wait out


def test_older_transaction_gives_up_after_lock_wait(make_participant, new_txid):
    participant = make_participant(lock_wait=0.1)
    older, younger = new_txid("c1"), new_txid("c0")
    assert participant.can_commit(younger, {"a": "young"}, "c0", MEMBERS)
    started = time.monotonic()
    assert participant.can_commit(older, {"a": "old"}, "c1", MEMBERS) is False
    assert time.monotonic() - started >= 0.09
    assert participant.locks.held() == {"a": younger}


def test_repeated_messages_are_idempotent(make_participant, new_txid):
    participant = make_participant()
    t1, t2 = new_txid(), new_txid()
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)  # repeated vote: still YES
    assert len(participant.storage.prepared()) == 1
    assert participant.do_commit(t1) is True
    assert participant.do_commit(t1) is True
    assert participant.storage.get("a") == ("1", 1)  # applied once
    assert participant.storage.committed_count == 1
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS) is True  # late: gets the decision
    assert participant.locks.held() == {}  # and takes no lock
    assert participant.do_abort(t1) is False  # refuses to abort what committed
    assert participant.storage.get("a") == ("1", 1)

    assert participant.can_commit(t2, {"b": "2"}, "c0", MEMBERS)
    assert participant.do_abort(t2) is True
    assert participant.do_abort(t2) is True
    assert participant.can_commit(t2, {"b": "2"}, "c0", MEMBERS) is False
    assert participant.storage.get("b") is None
    assert participant.storage.aborted_count == 1
    assert participant.locks.held() == {}


def test_do_abort_before_can_commit_makes_the_late_vote_no(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    assert participant.do_abort(t1) is True
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS) is False
    assert participant.locks.held() == {}
    assert participant.storage.prepared() == []
    assert participant.in_doubt() == []


def test_late_vote_in_a_batch_gets_its_outcome_and_sinks_nothing(make_participant, new_txid):
    """A late vote's PREPARED record is refused by the write itself (its
    transaction has an outcome): it gets that outcome, takes no lock, writes
    nothing, and the commit and the fresh vote sharing its forced write go
    through."""
    participant = make_participant()
    committed, aborted, prepared, fresh = new_txid(), new_txid(), new_txid(), new_txid()
    assert participant.can_commit(committed, {"a": "1"}, "c0", MEMBERS) is True
    assert participant.do_commit(committed) is True
    assert participant.do_abort(aborted) is True  # the abort came first
    assert participant.can_commit(prepared, {"c": "3"}, "c0", MEMBERS) is True

    commits, votes = participant.commit_and_vote([prepared], [
        (committed, {"a": "1"}, "c0", MEMBERS), (aborted, {"b": "2"}, "c0", MEMBERS),
        (fresh, {"d": "4"}, "c0", MEMBERS)])

    assert commits == [True]
    assert votes == [True, False, True]
    assert participant.in_doubt() == [fresh]
    assert participant.locks.held() == {"d": fresh}
    assert [record.txid for record in participant.storage.prepared()] == [fresh]
    assert participant.storage.get("c") == ("3", 1)
    assert participant.storage.get("b") is None
    assert participant.storage.get("a") == ("1", 1)
    assert participant.storage.committed_count == 2


def test_a_fresh_own_vote_looks_up_no_outcome(make_participant, new_txid, monkeypatch):
    """The coordinator's own vote on a txid nobody else has heard of needs no
    lookup; any other own vote (not fresh) looks, and gets the outcome."""
    participant = make_participant("c0")
    looked_up = []
    outcome = participant.storage.outcome
    monkeypatch.setattr(participant.storage, "outcome", lambda txid: (looked_up.append(txid), outcome(txid))[1])
    fresh, aborted = new_txid("c0"), new_txid("c0")
    assert participant.can_commit(fresh, {"a": "1"}, "c0", MEMBERS, fresh=True) is True
    assert looked_up == []
    assert participant.do_abort(fresh) is True
    participant.storage.record_abort(aborted)
    assert participant.can_commit(aborted, {"a": "1"}, "c0", MEMBERS) is False
    assert looked_up == [aborted]
    assert participant.locks.held() == {}


def test_decision_as_peer(make_participant, new_txid):
    participant = make_participant()
    t1, t2 = new_txid(), new_txid()
    participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    assert participant.decision_as_peer(t1) == UNKNOWN
    assert participant.in_doubt() == [t1]  # asking does not decide
    participant.do_commit(t1)
    assert participant.decision_as_peer(t1) == COMMIT

    participant.can_commit(t2, {"b": "2"}, "c0", MEMBERS)
    participant.do_abort(t2)
    assert participant.decision_as_peer(t2) == ABORT


def test_decision_as_peer_for_a_transaction_never_voted_records_abort(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    assert participant.decision_as_peer(t1) == ABORT
    assert participant.storage.outcome(t1) == ABORT
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS) is False
    assert participant.locks.held() == {}
    assert participant.decision_as_peer(t1) == ABORT


def test_read_of_a_free_key(make_participant, new_txid):
    participant = make_participant(read_wait=5.0)
    t1 = new_txid()
    assert participant.read("a") is None
    participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    participant.do_commit(t1)
    started = time.monotonic()
    assert participant.read("a") == "1"
    assert time.monotonic() - started < 2.0


def test_read_waits_for_a_prepared_key_and_sees_the_commit(make_participant, new_txid):
    participant = make_participant(read_wait=10.0)
    t1, t2 = new_txid(), new_txid()
    participant.can_commit(t1, {"k": "old"}, "c0", MEMBERS)
    participant.do_commit(t1)
    participant.can_commit(t2, {"k": "new"}, "c0", MEMBERS)
    started, done = threading.Event(), threading.Event()
    result = {}

    def read():
        started.set()
        try:
            result["value"] = participant.read("k")
        except Exception as error:
            result["error"] = error
        done.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert started.wait(5)
        assert not done.wait(0.05)  # waiting: the key is PREPARED by t2
        committer = threading.Thread(target=participant.do_commit, args=(t2,))
        committer.start()
        assert done.wait(5)
        committer.join(5)
    finally:
        if t2 in participant.prepared():
            participant.do_abort(t2)
        reader.join(5)
    assert result == {"value": "new"}


def test_read_raises_key_in_doubt_when_never_decided(make_participant, new_txid):
    participant = make_participant(read_wait=0.05)
    t1 = new_txid()
    participant.can_commit(t1, {"k": "v"}, "c0", MEMBERS)
    with pytest.raises(KeyInDoubt) as caught:
        participant.read("k")
    assert caught.value.txid == t1
    assert caught.value.replica == "p1"
    assert "'k'" in str(caught.value) and t1 in str(caught.value)
    assert participant.read("other") is None  # other keys are not affected


def test_recover_relocks_prepared_keys(make_storage, make_participant, new_txid):
    first = make_participant("p1", read_wait=0.05)
    t1, t2, t3 = new_txid(), new_txid(), new_txid()
    first.can_commit(t1, {"a": "1", "b": None}, "c0", MEMBERS)
    first.can_commit(t2, {"c": "3"}, "c0", MEMBERS)
    first.do_commit(t2)
    first.storage.close()  # crash: t1 undecided

    participant = make_participant("p1", storage=make_storage("p1"), read_wait=0.05)
    assert participant.in_doubt() == []
    assert participant.recover() == [t1]
    assert participant.in_doubt() == [t1]
    assert participant.locks.held() == {"a": t1, "b": t1}
    assert participant.prepared()[t1].writes == {"a": "1", "b": None}
    assert participant.can_commit(t3, {"a": "x"}, "c0", MEMBERS) is False
    with pytest.raises(KeyInDoubt):
        participant.read("a")
    assert participant.read("c") == "3"
    assert participant.decision_as_peer(t1) == UNKNOWN
    assert participant.do_commit(t1) is True
    assert participant.storage.get("a") == ("1", 1)
    assert participant.locks.held() == {}


def test_refusal_makes_can_commit_raise(make_participant, new_txid):
    participant = make_participant()
    t1, t2 = new_txid(), new_txid()
    participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    participant.refusal = "shutting down"
    with pytest.raises(ReplicaUnavailable, match="shutting down") as caught:
        participant.can_commit(t2, {"b": "2"}, "c0", MEMBERS)
    assert caught.value.replica == "p1"
    assert participant.locks.owner("b") is None
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS) is True  # already voted: same answer
    assert participant.do_commit(t1) is True  # finishing what was started is still allowed


def test_do_commit_of_an_unknown_txid_raises(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    with pytest.raises(InvalidRequest, match="no prepared transaction"):
        participant.do_commit(t1)
    assert participant.storage.outcome(t1) is None


def test_a_copy_vouches_for_a_commit_it_dropped_even_after_old_outcomes_are_forgotten(make_participant, new_txid):
    """A newcomer empties its log for a copy (start_catch_up) while a
    coordinator still owes it a doCommit for a transaction it had prepared; the
    copy holds that commit, so the doCommit re-sent later is acknowledged, also
    after the periodic pruning of old outcomes."""
    participant = make_participant()
    t1 = new_txid()
    assert participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS) is True
    participant.start_catch_up()
    participant.storage.install_entries([("a", "1", 1, t1)])
    participant.finish_catch_up()
    participant.storage.forget_outcomes(time.time() - 3600)
    assert participant.do_commit(t1) is True
    assert participant.locks.held() == {}


def test_do_commit_of_an_aborted_txid_raises(make_participant, new_txid):
    participant = make_participant()
    t1 = new_txid()
    participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    participant.do_abort(t1)
    with pytest.raises(InvalidRequest, match="aborted"):
        participant.do_commit(t1)
    assert participant.storage.get("a") is None


def test_failpoint_error_before_prepare_leaves_no_lock(make_participant, new_txid):
    participant = make_participant(failpoints=Failpoints(parse_specs(["participant.before_prepare=once:error"])))
    t1, t2 = new_txid(), new_txid()
    with pytest.raises(InjectedFault, match="participant.before_prepare"):
        participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    assert participant.locks.held() == {}
    assert participant.storage.prepared() == []
    assert participant.in_doubt() == []
    assert participant.can_commit(t2, {"a": "2"}, "c0", MEMBERS) is True  # once: fired already


def test_a_batch_frees_every_transaction_guard_it_took(make_participant, new_txid):
    """The guards that serialize one transaction's messages are taken for a
    whole batch, in txid order, and all freed after it, whatever each vote
    answered: a later message of any of those transactions gets in at once."""
    participant = make_participant(failpoints=Failpoints(parse_specs(["participant.before_prepare=once:error"])))
    failing, held, younger, fine = new_txid(), new_txid(), new_txid(), new_txid()
    assert participant.locks.acquire(held, ["busy"], 0) is None  # an older transaction holds "busy"
    commits, votes = participant.commit_and_vote([], [(failing, {"x": "1"}, "c0", MEMBERS),
                                                      (younger, {"busy": "1"}, "c0", MEMBERS),
                                                      (fine, {"y": "1"}, "c0", MEMBERS)])
    assert commits == []
    assert isinstance(votes[0], InjectedFault) and votes[1] is False and votes[2] is True
    assert participant._guards == {}
    done = []
    aborter = threading.Thread(target=lambda: done.extend(participant.do_abort(txid)
                                                          for txid in (failing, younger, fine)))
    aborter.start()
    aborter.join(5)
    assert done == [True, True, True]
    assert participant.locks.held() == {"busy": held}


def test_failpoint_error_after_prepare_keeps_the_prepared_state(make_participant, new_txid):
    participant = make_participant(failpoints=Failpoints(parse_specs(["participant.after_prepare=error"])))
    t1 = new_txid()
    with pytest.raises(InjectedFault):
        participant.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    # the PREPARED record was forced before the failure: the keys stay locked until decided
    assert participant.in_doubt() == [t1]
    assert participant.locks.held() == {"a": t1}
    assert participant.do_abort(t1) is True
    assert participant.locks.held() == {}


def test_abort_racing_the_vote_never_leaves_locks(make_participant, new_txid):
    """doAbort and canCommit of one txid arriving together: whatever the order,
    no key stays locked and a later vote agrees with the abort."""
    for round_ in range(10):
        participant = make_participant(f"p{round_}")
        txid = new_txid()
        barrier = threading.Barrier(2)
        votes = []
        voter = threading.Thread(target=lambda: (barrier.wait(5), votes.append(
            participant.can_commit(txid, {"k": "v"}, "c0", MEMBERS))))
        aborter = threading.Thread(target=lambda: (barrier.wait(5), participant.do_abort(txid)))
        voter.start()
        aborter.start()
        voter.join(5)
        aborter.join(5)
        assert len(votes) == 1  # YES (then released by the abort) or NO (the abort came first)
        assert participant.locks.held() == {}
        assert participant.in_doubt() == []
        assert participant.storage.outcome(txid) == ABORT
        assert participant.can_commit(txid, {"k": "v"}, "c0", MEMBERS) is False


def test_votes_of_one_batch_share_one_forced_write(make_participant, new_txid):
    participant = make_participant(members=lambda: MEMBERS)
    t1, t2, t3, held = new_txid(), new_txid(), new_txid(), new_txid()
    assert participant.can_commit(held, {"busy": "0"}, "c0", MEMBERS)
    forced = participant.storage.forced_commits
    answers = participant.can_commit_many([
        (t1, {"a": "1"}, "c0", MEMBERS),
        (t2, {"busy": "2"}, "c0", MEMBERS),       # younger than the holder: votes NO at once
        (t3, {"b": "3"}, "c0", ["c0", "p1"]),     # leaves p2 out
        (t1, {"a": "1"}, "c0", MEMBERS),           # the same transaction twice in one batch
    ])
    assert answers[0] is True and answers[1] is False
    assert "p2" in str(answers[2]) and "twice" in str(answers[3])
    assert participant.storage.forced_commits == forced + 1
    assert sorted(record.txid for record in participant.storage.prepared()) == sorted([held, t1])
    assert participant.locks.held() == {"busy": held, "a": t1}


def test_commits_of_one_batch_share_one_forced_write(make_participant, new_txid):
    participant = make_participant()
    t1, t2, never = new_txid(), new_txid(), new_txid()
    for txid, key in ((t1, "a"), (t2, "b")):
        assert participant.can_commit(txid, {key: txid}, "c0", MEMBERS)
    forced = participant.storage.forced_commits
    answers = participant.do_commit_many([t1, never, t2])
    assert answers[0] is True and answers[2] is True
    assert isinstance(answers[1], InvalidRequest)
    assert participant.storage.forced_commits == forced + 1
    assert participant.storage.get("a") == (t1, 1) and participant.storage.get("b") == (t2, 1)
    assert participant.locks.held() == {} and participant.in_doubt() == []


def test_the_coordinators_own_vote_is_not_forced_until_its_decision(make_storage, make_participant, new_txid):
    storage = make_storage("c0")
    participant = make_participant("c0", storage=storage)
    txid = new_txid("c0")
    forced = storage.forced_commits
    assert participant.can_commit(txid, {"a": "1"}, "c0", MEMBERS) is True
    assert storage.forced_commits == forced  # presumed abort: nothing to recover if it crashes now
    assert storage.prepared() == [] and participant.locks.held() == {"a": txid}
    assert participant.do_commit(txid, decision=MEMBERS) is True
    assert storage.forced_commits == forced + 1  # the decision and the local apply, in one write
    assert storage.has_decision(txid) and storage.get("a") == ("1", 1)


def test_a_crash_before_the_coordinators_decision_leaves_nothing_in_doubt(make_storage, make_participant,
                                                                          new_txid):
    storage = make_storage("c0")
    participant = make_participant("c0", storage=storage)
    assert participant.can_commit(new_txid("c0"), {"a": "1"}, "c0", MEMBERS)
    storage.close()  # the process dies here
    again = make_participant("c0", storage=make_storage("c0"))
    assert again.recover() == []
    assert again.locks.held() == {}


def test_an_abort_of_the_coordinators_own_vote_counts_like_any_other(make_storage, make_participant, new_txid):
    participant = make_participant("c0", storage=make_storage("c0"))
    txid = new_txid("c0")
    assert participant.can_commit(txid, {"a": "1"}, "c0", MEMBERS)
    assert participant.do_abort(txid) is True
    assert participant.storage.aborted_count == 1
    assert participant.storage.outcome(txid) == ABORT and participant.locks.held() == {}


def test_commits_and_votes_of_one_batch_share_one_forced_write(make_participant, new_txid):
    participant = make_participant()
    first, second, third = new_txid(), new_txid(), new_txid()
    assert participant.can_commit(first, {"a": "1"}, "c0", MEMBERS)
    forced = participant.storage.forced_commits
    commits, votes = participant.commit_and_vote([first], [(second, {"b": "2"}, "c0", MEMBERS)])
    assert commits == [True] and votes == [True]
    assert participant.storage.forced_commits == forced + 1
    assert participant.storage.get("a") == ("1", 1) and participant.in_doubt() == [second]
    # a vote on a key the commit still holds: the commit is written and frees it first
    commits, votes = participant.commit_and_vote([second], [(third, {"b": "3"}, "c0", MEMBERS)])
    assert commits == [True] and votes == [True]
    assert participant.storage.forced_commits == forced + 3
    assert participant.locks.held() == {"b": third}


def test_a_storage_failure_frees_the_votes_keys_and_keeps_the_commits_prepared(make_participant, new_txid):
    participant = make_participant()
    prepared, voting = new_txid(), new_txid()
    assert participant.can_commit(prepared, {"a": "1"}, "c0", MEMBERS)
    participant.storage.close()  # every write fails from now on
    commits, votes = participant.commit_and_vote([prepared], [(voting, {"b": "2"}, "c0", MEMBERS)])
    assert isinstance(commits[0], RuntimeError) and isinstance(votes[0], RuntimeError)
    assert participant.locks.held() == {"a": prepared}  # still in doubt; b is free again
    assert participant.in_doubt() == [prepared]


def test_in_doubt_ages_start_at_the_prepared_record_and_follow_the_monotonic_clock(make_storage, make_participant,
                                                                                   new_txid, monkeypatch):
    import types

    import rmi_kv.core.participant as participant_module

    first = make_participant("p1")
    t1 = new_txid()
    first.can_commit(t1, {"a": "1"}, "c0", MEMBERS)
    [record] = first.storage.prepared()
    first.storage.close()  # crash: t1 undecided

    clock = {"wall": record.created + 12.0, "monotonic": 50.0}  # restarted 12 s later
    monkeypatch.setattr(participant_module, "time", types.SimpleNamespace(
        time=lambda: clock["wall"], monotonic=lambda: clock["monotonic"]))
    participant = make_participant("p1", storage=make_storage("p1"))
    participant.recover()
    assert participant.in_doubt_ages() == {t1: 12.0}, "the age counts from the PREPARED record"
    clock["wall"] -= 3600.0  # the wall clock steps back an hour...
    clock["monotonic"] += 2.5
    assert participant.in_doubt_ages() == {t1: 14.5}, "...and the age still grows as time passes"
    participant.do_abort(t1)
    assert participant.in_doubt_ages() == {}


def test_a_wait_for_the_transactions_that_leave_a_member_out_ends_as_the_last_one_is_decided(
        make_participant, new_txid, wait_until):
    """A copy waits for the transactions that leave its requester out (``snapshotChunk``); it is
    woken by the decision itself, not by its timeout."""
    participant = make_participant()
    t1 = new_txid()
    assert participant.can_commit(t1, {"a": "1"}, "c0", ["c0", "p1"]) is True  # leaves p2 out
    assert participant.wait_unfinished_without("p2", 0.0) == [t1]
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(
        (participant.wait_unfinished_without("p2", 60.0), time.monotonic())))
    waiter.start()
    try:
        # the waiter is in its wait: from now on only the decision can wake it before 60 s
        assert wait_until(lambda: participant._progress_waiters == 1, timeout=10)
        decided = time.monotonic()
        assert participant.do_commit(t1) is True
    finally:
        waiter.join(30)
    [(left, woken)] = waited
    assert left == [] and woken - decided < 30  # long before its 60 s timeout
    assert participant._progress_waiters == 0
