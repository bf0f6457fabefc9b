"""The protocol feed: it records only while a viewer asks, keeps the round's order and the answer."""
from __future__ import annotations

import threading

from rmi_kv.core.coordinator import Coordinator, TraceEvent
from rmi_kv.core.feed import Cursor
from rmi_kv.core.protocol_feed import VALUE_SHOWN, ProtocolFeed
from rmi_kv.errors import InvalidRequest, TransactionAborted
from rmi_kv.server.cluster import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(clock: Clock) -> ProtocolFeed:
    return ProtocolFeed(50, listen_for=30.0, clock=clock, wall=lambda: 5000.0, boot="boot-p")


def test_nothing_is_recorded_until_a_viewer_asks_and_after_it_stops_asking():
    clock = Clock()
    protocol = feed(clock)
    protocol.note("t1", TraceEvent(0.1, "canCommit", "replica2", "sent"))
    assert protocol.describe()["last_seq"] == 0 and not protocol.listening
    start = protocol.since(None).next
    protocol.note("t2", TraceEvent(0.2, "vote", "replica2", "YES after 0.1 ms"))
    batch = protocol.since(start)
    assert [(e.txid, e.message, e.participant, e.result, e.at_ms, e.time) for e in batch.changes] == [
        ("t2", "vote", "replica2", "YES after 0.1 ms", 0.2, 5000.0)]
    clock.now += 31.0
    protocol.note("t3", TraceEvent(0.3, "decision", "replica1", "COMMIT forced to the log"))
    assert protocol.since(batch.next).changes == []


def test_the_answer_carries_the_writes_cut_short_and_the_error():
    clock = Clock()
    protocol = feed(clock)
    start = protocol.since(None).next
    protocol.answered("t1", "replica1", {"a": "x" * 200, "b": None})
    protocol.answered("t2", "replica1", {"a": "1"}, TransactionAborted("replica3: did not vote"))
    protocol.answered(None, "replica1", {"a": "1"}, TransactionAborted("no round ran"))
    first, second = protocol.since(start).changes
    assert first.message == "answer" and first.result == "committed" and first.at_ms is None
    assert len(first.writes["a"]) == VALUE_SHOWN and first.writes["b"] is None
    assert second.result == "TransactionAborted: replica3: did not vote"
    assert second.as_dict()["writes"] == {"a": "1"} and second.as_dict()["at_ms"] is None


def test_a_waiting_viewer_is_woken_by_the_next_note():
    protocol = ProtocolFeed(10, boot="boot-p")  # the real clocks: the viewer waits
    start = protocol.since(None).next
    found = []
    viewer = threading.Thread(target=lambda: found.extend(protocol.since(start, timeout=5.0).changes))
    viewer.start()
    wait_for(lambda: protocol.waiting, timeout=5.0, interval=0.001, what="the viewer waiting")
    protocol.note("t1", TraceEvent(1.0, "doCommit", "replica4", "sent"))
    viewer.join(5.0)
    assert [e.message for e in found] == ["doCommit"]


def test_a_cursor_of_another_boot_or_beyond_the_end_is_said_so():
    clock = Clock()
    protocol = feed(clock)
    protocol.since(None)
    protocol.note("t1", TraceEvent(0.1, "canCommit", "replica2", "sent"))
    other = protocol.since(Cursor("other-boot", 0))
    assert other.missed and other.next == Cursor("boot-p", 1)
    try:
        protocol.since(Cursor("boot-p", 9))
    except InvalidRequest as error:
        assert "protocol events cursor 9" in str(error)
    else:
        raise AssertionError("a cursor beyond the end was taken")


class Participant:
    """A participant handle that votes YES and applies at once (no network)."""

    def canCommit(self, *args):
        return True

    def doCommit(self, txid):
        return True

    def doAbort(self, txid):
        return True

    def commitWithDecision(self, txid, participants):
        pass


def test_a_listening_coordinator_tells_the_feed_every_message_of_its_round_in_order(tmp_path):
    from rmi_kv.storage.sqlite import Storage

    storage = Storage(tmp_path / "db.sqlite3")
    coordinator = Coordinator("replica1", storage)
    clock = Clock()
    protocol = feed(clock)
    start = protocol.since(None).next
    coordinator.execute({"a": "1"}, {"replica1": Participant()})
    assert protocol.since(start).changes == []  # no listener attached: nothing told
    coordinator.listener = protocol.note
    outcome = coordinator.execute({"a": "2"}, {"replica1": Participant()})
    events = protocol.since(start).changes
    assert [(e.message, e.participant) for e in events] == [(t.message, t.participant) for t in outcome.trace]
    assert {e.txid for e in events} == {outcome.txid}
    assert [e.message for e in events] == ["canCommit", "vote", "decision"]
    storage.close()
