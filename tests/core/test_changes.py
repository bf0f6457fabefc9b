"""The change feed: cursors, filters, the bounded ring, waiting and waking."""
from __future__ import annotations

import threading

import pytest

from rmi_kv.core.changes import ChangeFeed, Cursor, matcher
from rmi_kv.errors import InvalidRequest

EVERYTHING = matcher("", True)


def feed(capacity: int = 100) -> ChangeFeed:
    return ChangeFeed(capacity, clock=lambda: 1000.0, boot="boot-a")


def test_a_watcher_from_now_sees_only_later_changes_with_their_txid_and_time():
    changes = feed()
    changes.append_commit("t1", {"a": "1"})
    start = changes.cursor()
    changes.append_commit("t2", {"a": "2", "b": None})
    batch = changes.since(start, EVERYTHING)
    assert [(c.key, c.value, c.txid, c.committed_at) for c in batch.changes] == [
        ("a", "2", "t2", 1000.0), ("b", None, "t2", 1000.0)]
    assert batch.changes[1].as_dict()["deleted"] is True
    assert batch.next == Cursor("boot-a", 3) and not batch.missed and batch.resumed_from == start
    assert changes.since(batch.next, EVERYTHING).changes == []


def test_no_cursor_starts_at_the_end():
    changes = feed()
    changes.append_commit("t1", {"a": "1"})
    batch = changes.since(None, EVERYTHING)
    assert batch.changes == [] and batch.next == Cursor("boot-a", 1) and not batch.missed


def test_a_key_or_a_prefix_filters_and_the_cursor_moves_past_what_was_skipped():
    changes = feed()
    start = changes.cursor()
    changes.append_commit("t1", {"user:1": "x", "users": "y", "other": "z"})
    assert [c.key for c in changes.since(start, matcher("user:", True)).changes] == ["user:1"]
    only = changes.since(start, matcher("users", False))
    assert [c.key for c in only.changes] == ["users"]
    nothing = changes.since(start, matcher("absent", False))
    assert nothing.changes == [] and nothing.next.seq == 3


def test_limit_cuts_a_batch_and_the_next_one_goes_on():
    changes = feed()
    start = changes.cursor()
    changes.append_commit("t1", {f"k{i}": str(i) for i in range(5)})
    first = changes.since(start, EVERYTHING, limit=2)
    second = changes.since(first.next, EVERYTHING, limit=10)
    assert [c.key for c in first.changes + second.changes] == [f"k{i}" for i in range(5)]


def test_a_cursor_older_than_the_ring_says_missed_and_resumes_from_the_oldest_kept():
    changes = feed(capacity=3)
    start = changes.cursor()
    for i in range(5):
        changes.append_commit(f"t{i}", {"k": str(i)})
    batch = changes.since(start, EVERYTHING)
    assert batch.missed and batch.resumed_from == Cursor("boot-a", 2)
    assert [c.value for c in batch.changes] == ["2", "3", "4"]


def test_a_cursor_of_another_boot_says_missed_and_resumes_from_now():
    changes = feed()
    changes.append_commit("t1", {"k": "1"})
    batch = changes.since(Cursor("boot-old", 7), EVERYTHING)
    assert batch.missed and batch.changes == [] and batch.resumed_from == Cursor("boot-a", 1)


def test_reset_changes_the_boot_so_held_cursors_say_missed():
    changes = feed()
    held = changes.cursor()
    changes.append_commit("t1", {"k": "1"})
    changes.reset()
    assert changes.boot != "boot-a"
    assert changes.since(held, EVERYTHING).missed


def test_a_cursor_ahead_of_the_feed_is_refused():
    with pytest.raises(InvalidRequest):
        feed().since(Cursor("boot-a", 5), EVERYTHING)


def test_a_waiting_watcher_wakes_on_a_matching_commit_and_is_counted_while_it_waits():
    changes = feed()
    start = changes.cursor()
    answers = []
    watcher = threading.Thread(target=lambda: answers.append(changes.since(start, matcher("k", False),
                                                                           timeout=30)))
    watcher.start()
    with changes._changed:  # the watcher holds the condition until it waits: then it is counted
        while changes.waiting == 0:
            changes._changed.wait(0.05)
    changes.append_commit("t1", {"other": "x"})  # not watched: it keeps waiting
    changes.append_commit("t2", {"k": "v"})
    watcher.join(timeout=10)
    assert not watcher.is_alive()
    assert [(c.key, c.txid) for c in answers[0].changes] == [("k", "t2")]
    assert changes.waiting == 0


def test_a_watcher_whose_caller_left_stops_waiting():
    changes = feed()
    batch = changes.since(changes.cursor(), EVERYTHING, timeout=30, gone=lambda: True)
    assert batch.changes == [] and changes.waiting == 0


def test_appending_with_nobody_watching_only_fills_the_ring():
    changes = feed(capacity=2)
    for i in range(10):
        changes.append_commit(f"t{i}", {"k": str(i)})
    assert changes.describe() == {"boot": "boot-a", "last_seq": 10, "kept": 2, "waiting": 0}


def test_the_participant_feeds_each_applied_commit_and_not_a_buffered_one(make_participant, new_txid):
    changes = feed()
    participant = make_participant(on_commit=changes.append_commit)
    start = changes.cursor()
    t1, t2, t3 = new_txid(), new_txid(), new_txid()
    participant.can_commit(t1, {"a": "1", "b": None}, "c0", ["c0", "p1"])
    assert changes.since(start, EVERYTHING).changes == []  # prepared is not committed
    participant.do_commit(t1)
    participant.do_commit(t1)  # repeated: not a second change
    participant.can_commit(t2, {"a": "2"}, "c0", ["c0", "p1"])
    participant.do_abort(t2)
    assert [(c.key, c.value, c.txid) for c in changes.since(start, EVERYTHING).changes] == [
        ("a", "1", t1), ("b", None, t1)]
    participant.storage.set_catching_up(True)
    participant.can_commit(t3, {"c": "3"}, "c0", ["c0", "p1"])
    participant.do_commit(t3)
    assert [c.txid for c in changes.since(start, EVERYTHING).changes] == [t1, t1]


def test_a_failing_hook_does_not_undo_the_commit(make_participant, new_txid):
    def broken(txid, writes):
        raise RuntimeError("hook failed")

    participant = make_participant(on_commit=broken)
    t1 = new_txid()
    participant.can_commit(t1, {"a": "1"}, "c0", ["c0", "p1"])
    assert participant.do_commit(t1) is True
    assert participant.storage.get("a") == ("1", 1)
