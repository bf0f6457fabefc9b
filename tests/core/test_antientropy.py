"""Anti-entropy's rules (``core.antientropy``): who may repair from whom (A1),
which ranges and keys differ (A2), and that a repair never overwrites a newer
write (A3, with a real participant over both engines)."""
from __future__ import annotations

import itertools

import pytest

from rmi_kv.core import antientropy
from rmi_kv.core.antientropy import DIVERGED, IN_STEP, NO_MAJORITY, UNKNOWN, verdict
from rmi_kv.storage.integrity import RangeSummary

FIVE = ["r1", "r2", "r3", "r4", "r5"]


# ------------------------------------------------------------------ A1 verdict
def test_in_step_when_a_majority_shares_this_replicas_digest():
    found = verdict("r1", "d", {"r2": "d", "r3": "d", "r4": "x"}, FIVE)
    assert found.state == IN_STEP and found.digest == "d" and found.differing == ("r4",)


def test_diverged_when_a_majority_holds_another_digest():
    found = verdict("r3", "bad", {"r1": "good", "r2": "good", "r4": "good"}, FIVE)
    assert found.state == DIVERGED and found.digest == "good" and found.holders == ("r1", "r2", "r4")


def test_never_from_a_minority():
    """Every way of splitting five digests that leaves no three equal repairs nobody."""
    for digests in itertools.product("ab", repeat=4):
        reports = dict(zip(["r2", "r3", "r4", "r5"], digests))
        found = verdict("r1", "c", reports, FIVE)
        holders_of = {d: sum(1 for v in digests if v == d) for d in "ab"}
        if max(holders_of.values()) >= 3:
            assert found.state == DIVERGED and holders_of[found.digest] >= 3
        else:
            assert found.state == NO_MAJORITY and found.digest is None


def test_two_of_five_answering_is_no_verdict():
    found = verdict("r1", "d", {"r2": "x"}, FIVE)
    assert found.state == UNKNOWN and found.holders == ()


def test_a_majority_counts_the_configured_replicas_not_the_ones_that_answered():
    # three answers out of five, two of them equal to each other but not to this one
    found = verdict("r1", "d", {"r2": "x", "r3": "x"}, FIVE)
    assert found.state == NO_MAJORITY


def test_a_report_in_this_replicas_own_name_is_not_a_vote():
    found = verdict("r1", "d", {"r1": "x", "r2": "x", "r3": "x"}, FIVE)
    assert found.state == NO_MAJORITY


# ----------------------------------------------------------- A2 ranges, keys
def summaries(*items):
    return [RangeSummary(*item) for item in items]


def test_only_the_ranges_whose_digest_or_count_differs():
    ours = summaries((None, "f", 3, "aa"), ("f", "m", 2, "bb"), ("m", None, 1, "cc"))
    theirs = summaries((None, "f", 3, "aa"), ("f", "m", 2, "b2"), ("m", None, 2, "cc"))
    assert [(r.after, r.upto) for r in antientropy.differing_ranges(ours, theirs)] == [("f", "m"), ("m", None)]


def test_summaries_of_other_ranges_cannot_be_compared():
    with pytest.raises(ValueError):
        antientropy.differing_ranges(summaries((None, "f", 1, "a")), summaries((None, "g", 1, "a")))


def test_a_small_range_is_a_leaf():
    assert antientropy.is_leaf(RangeSummary(None, None, antientropy.LEAF_ENTRIES, "x"))
    assert not antientropy.is_leaf(RangeSummary(None, None, antientropy.LEAF_ENTRIES + 1, "x"))


def test_repairs_take_the_peers_entry_or_its_absence():
    ours = [("a", "1", 1, "t1"), ("b", "2", 1, "t2"), ("c", "old", 1, "t3"), ("d", None, 2, "t4"), ("z", "9", 1, "t9")]
    theirs = [("a", "1", 1, "t1"), ("c", "new", 2, "t5"), ("d", None, 2, "t4"), ("e", "5", 1, "t6"),
              ("z", None, 2, "t8")]
    assert antientropy.repairs(ours, theirs) == [
        ("b", ("2", 1, "t2"), None),                    # absent at the peer: dropped here
        ("c", ("old", 1, "t3"), ("new", 2, "t5")),      # older here
        ("e", None, ("5", 1, "t6")),                    # missing here (a lost write)
        ("z", ("9", 1, "t9"), (None, 2, "t8")),         # deleted at the peer
    ]


def test_a_tombstone_and_no_row_are_the_same_data():
    assert antientropy.repairs([("a", None, 3, "t1")], []) == []
    assert antientropy.repairs([], [("a", None, 3, "t1")]) == []


# ------------------------------------------------------------ A3 under locks
def test_a_repair_skips_a_key_a_transaction_holds(make_participant, new_txid):
    participant = make_participant("p1")
    participant.storage.commit_and_prepare([("t-0", {"a": "1", "b": "1"}, None)], [])
    txid = new_txid()
    assert participant.can_commit(txid, {"a": "2"}, "c0", ["c0", "p1"])  # "a" is locked until decided
    entries = {e[0]: e[1:] for e in participant.storage.range_entries(None, None, 10)}
    done = participant.repair([("a", entries["a"], ("peer", 5, "t-p")), ("b", entries["b"], ("peer", 5, "t-p"))])
    assert done == 1
    assert participant.storage.get("a") == ("1", 1) and participant.storage.get("b") == ("peer", 5)
    participant.do_commit(txid)
    assert participant.storage.get("a") == ("2", 2)  # the transaction's write wins
    assert participant.locks.held() == {}


def test_a_repair_while_catching_up_does_nothing(make_participant):
    participant = make_participant("p1")
    participant.storage.set_catching_up(True)
    assert participant.repair([("a", None, ("v", 1, "t"))]) == 0
    assert participant.storage.get("a") is None


def test_quiet_means_nothing_prepared(make_participant, new_txid):
    participant = make_participant("p1")
    participant.storage.set_catching_up(False)
    assert participant.quiet()
    txid = new_txid()
    participant.can_commit(txid, {"a": "2"}, "c0", ["c0", "p1"])
    assert not participant.quiet()
    participant.do_abort(txid)
    assert participant.quiet()
