"""Settling a lost coordinator's transactions (rmi_kv.core.settle), with plain
objects: the rules, the participant's side, and the coordinator that defers."""
from __future__ import annotations

import pytest

from rmi_kv.core.handles import LocalHandle
from rmi_kv.core.messages import ABORT, COMMIT, UNKNOWN
from rmi_kv.core.recovery import confirm_decisions
from rmi_kv.core.settle import NOTHING, PREPARED, conflicting, settle
from rmi_kv.errors import EpochChanged, OutcomeUnknown
from support.handles import ByMessage, SendsInBackground


# ------------------------------------------------------------------ the rules
def test_a_commit_anywhere_settles_commit_and_nothing_but_prepared_settles_abort():
    reports = {"r1": {"t1": PREPARED, "t2": PREPARED}, "r2": {"t1": COMMIT, "t2": PREPARED},
               "r3": {"t1": PREPARED, "t2": NOTHING}}
    assert settle(reports, ["t1", "t2", "t3"]) == {"t1": COMMIT, "t2": ABORT, "t3": ABORT}


def test_an_acknowledged_write_is_never_settled_abort():
    """S1 and S3: acknowledged means a majority of five holds COMMIT; any new
    epoch's members are a majority of five, so at least one of them reports it."""
    five = ["r1", "r2", "r3", "r4", "r5"]
    import itertools
    for holders in itertools.combinations(five, 3):
        for members in itertools.combinations(five, 3):
            reports = {name: {"t": COMMIT if name in holders else PREPARED} for name in members}
            assert settle(reports, ["t"]) == {"t": COMMIT}


def test_commit_and_abort_held_at_once_is_reported_as_a_conflict():
    assert conflicting({"r1": {"t": COMMIT}, "r2": {"t": ABORT}, "r3": {"u": ABORT}}) == ["t"]


# ------------------------------------------------------ the participant's side
def prepare(participant, txid, writes, coordinator="c0", participants=("c0", "p1")):
    assert participant.can_commit(txid, writes, coordinator, list(participants)) is True


def test_a_participant_reports_what_it_holds(make_participant, new_txid):
    participant = make_participant("p1")
    prepared, committed, aborted, unknown = (new_txid() for _ in range(4))
    prepare(participant, prepared, {"a": "1"})
    prepare(participant, committed, {"b": "1"})
    participant.do_commit(committed)
    prepare(participant, aborted, {"c": "1"})
    participant.do_abort(aborted)
    assert participant.settle_state([prepared, committed, aborted, unknown]) == {
        prepared: PREPARED, committed: COMMIT, aborted: ABORT, unknown: NOTHING}
    assert participant.storage.outcome(unknown) is None  # asking records nothing
    assert participant.doubtful(["p1", "p2"]) == [prepared]  # c0 is left out
    assert participant.doubtful(["c0", "p1"]) == []


def test_settled_outcomes_free_the_keys_and_a_late_doCommit_of_an_abort_fails(make_participant, new_txid):
    participant = make_participant("p1")
    to_commit, to_abort = new_txid(), new_txid()
    prepare(participant, to_commit, {"a": "1"})
    prepare(participant, to_abort, {"b": "1"})
    participant.apply_settled({to_commit: COMMIT, to_abort: ABORT})
    assert participant.in_doubt() == []
    assert participant.read("a") == "1" and participant.read("b") is None
    with pytest.raises(Exception, match="aborted"):
        participant.do_commit(to_abort)  # the old coordinator's doCommit changes nothing
    assert participant.read("b") is None


def test_a_fenced_participant_applies_no_commit_of_the_coordinator_left_out(make_participant, new_txid):
    refusing = {"on": True}
    participant = make_participant("p1", commit_gate=lambda txid: "settling c0" if refusing["on"] else None)
    txid = new_txid()
    prepare(participant, txid, {"a": "1"})
    with pytest.raises(EpochChanged, match="settling c0"):
        participant.do_commit(txid)
    assert participant.settle_state([txid]) == {txid: PREPARED}  # what it reported stands
    participant.apply_settled({txid: COMMIT})  # the epoch change itself may
    assert participant.read("a") == "1"


def test_a_newcomer_empties_its_log_too_and_vouches_for_nothing_from_before(make_participant, new_txid):
    participant = make_participant("p1")
    held, applied = new_txid(), new_txid()
    prepare(participant, held, {"a": "1"})
    prepare(participant, applied, {"b": "1"})
    participant.do_commit(applied)
    participant.start_catch_up()
    assert participant.in_doubt() == [] and participant.locks.owner("a") is None
    assert participant.decision_as_peer(applied) == UNKNOWN  # it replaced what it held
    assert participant.do_commit(held) is True  # the copy brings it: acknowledged, nothing applied here


def test_a_copy_waits_for_transactions_of_an_earlier_epoch_and_nothing_is_kept_once_they_end(
        make_participant, new_txid):
    """A newcomer emptied what it held of the earlier epoch's transactions: a
    member hands out a copy only once none of them is in progress there."""
    participant = make_participant("p1")
    old, current = new_txid(), new_txid()
    assert participant.can_commit(old, {"a": "1"}, "c0", ["c0", "p1", "p2"], 3) is True
    assert participant.can_commit(current, {"b": "1"}, "c0", ["c0", "p1", "p2"], 4) is True
    assert participant.unfinished_without("p2", epoch=4) == [old]  # p2 is in both: only the epoch counts
    assert participant.unfinished_without("p2") == []
    participant.do_commit(old)
    participant.do_abort(current)
    assert participant.unfinished_without("p2", epoch=4) == []
    assert participant._vote_epochs == {}  # nothing kept for transactions that ended


# ---------------------------------------------------------- the coordinator
class Silent(SendsInBackground):
    """A participant that votes YES and never acknowledges a doCommit in time."""

    def __init__(self, name):
        self.name = name

    def canCommit(self, *args):
        return True

    def doCommit(self, txid):
        raise ConnectionError(f"{self.name} is unreachable")

    def doAbort(self, txid):
        return True


def cluster(make_participant, make_coordinator, quorum, silent=()):
    names = ["c0", "p1", "p2", "p3", "p4"]
    participants = {name: make_participant(name) for name in names if name not in silent}
    coordinator = make_coordinator("c0", storage=participants["c0"].storage, quorum=lambda: quorum,
                                   decision_timeout=0.2)
    handles = {name: LocalHandle(participants[name]) if name == "c0" else
               (Silent(name) if name in silent else ByMessage(participants[name])) for name in names}
    return coordinator, handles


def test_with_a_quorum_rule_the_client_hears_of_a_commit_only_once_a_majority_holds_it(
        make_participant, make_coordinator):
    coordinator, handles = cluster(make_participant, make_coordinator, quorum=3, silent=("p2", "p3"))
    outcome = coordinator.execute({"k": "v"}, handles)  # c0, p1, p4: three of five
    assert outcome.committed and any(event.message == "reply" for event in outcome.trace)
    coordinator, handles = cluster(make_participant, make_coordinator, quorum=3, silent=("p1", "p2", "p3"))
    with pytest.raises(OutcomeUnknown, match="only 2 of the 3"):
        coordinator.execute({"k": "v"}, handles)


def test_a_deferred_coordinator_answers_unknown_until_a_participant_says_how_it_ended(
        make_participant, make_coordinator, new_txid):
    storage = make_participant("c0").storage
    txid = new_txid("c0")
    storage.log_decision(txid, ["c0", "p1", "p2"])
    coordinator = make_coordinator("c0", storage=storage, defer_to_epoch=True)
    coordinator.recover()
    assert coordinator.decision(txid) == UNKNOWN

    class Peer:
        def __init__(self, answer):
            self.answer = answer

        def getDecision(self, asked):
            return self.answer

    assert confirm_decisions(coordinator, lambda name: Peer(UNKNOWN), in_epoch=False) == [txid]
    assert coordinator.decision(txid) == UNKNOWN  # not a member now: it cannot tell nobody settled it
    assert confirm_decisions(coordinator, {"p1": Peer(UNKNOWN), "p2": Peer(ABORT)}.get, in_epoch=True) == []
    assert coordinator.decision(txid) == ABORT and not storage.has_decision(txid)  # the epoch's outcome wins


def test_a_coordinator_still_in_its_epoch_resumes_its_own_commits(make_participant, make_coordinator, new_txid):
    storage = make_participant("c0").storage
    txid = new_txid("c0")
    storage.log_decision(txid, ["c0", "p1"])
    coordinator = make_coordinator("c0", storage=storage, defer_to_epoch=True)
    coordinator.recover()

    class Prepared:
        def getDecision(self, asked):
            return UNKNOWN

    assert confirm_decisions(coordinator, lambda name: Prepared(), in_epoch=True) == []
    assert coordinator.decision(txid) == COMMIT


def test_a_reply_waiting_for_its_quorum_is_not_acknowledged_once_its_record_is_overruled(
        make_participant, make_coordinator):
    """S1 and S4: the coordinator waits for a majority's COMMIT; meanwhile an
    epoch without it settled the transaction ABORT and it dropped its record
    (``confirm``). A record gone is not one every participant acknowledged:
    the client hears OutcomeUnknown, never of a commit."""
    coordinator, handles = cluster(make_participant, make_coordinator, quorum=3, silent=("p2", "p3", "p4"))

    class SettledAbort(Silent):
        """p1: it voted YES; an epoch change settled the transaction ABORT before the doCommit came."""

        def doCommit(self, txid):
            coordinator.defer()  # the coordinator installs the epoch that left it out...
            assert confirm_decisions(coordinator, lambda name: Peer(ABORT), in_epoch=False) == []  # ...and defers
            raise ConnectionError(f"{self.name} aborted transaction {txid}; it cannot commit")

    class Peer:
        def __init__(self, answer):
            self.answer = answer

        def getDecision(self, asked):
            return self.answer

    handles["p1"] = SettledAbort("p1")
    with pytest.raises(OutcomeUnknown, match="settled it ABORT"):
        coordinator.execute({"k": "v"}, handles)
    assert coordinator.pending() == {}
