"""MessageBatcher: messages queued while a call is on the wire share the next
call, each message keeps its own answer, and a failed call fails only its own
messages."""
import threading
import time

import pytest

from rmi_kv.core.batching import MESSAGE_OVERHEAD, MessageBatcher
from rmi_kv.errors import InvalidRequest, ReplicaUnavailable


class FakePeer:
    """Answers each message with its text reversed; can hold a call until released."""

    def __init__(self):
        self.calls = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Semaphore(0)
        self.fail_with = None

    def __call__(self, messages):
        self.calls.append(list(messages))
        self.entered.release()
        assert self.hold.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        return [[True, message[1][::-1]] if message[0] == "echo" else [False, InvalidRequest("no such message")]
                for message in messages]


@pytest.fixture
def peer():
    return FakePeer()


@pytest.fixture
def batcher(peer):
    made = MessageBatcher("p1", peer, senders=1)
    yield made
    peer.hold.set()
    made.close()


def test_one_message_is_sent_alone_and_answered(batcher, peer):
    value, error, elapsed_ms = batcher.submit(("echo", "abc")).result(timeout=10)
    assert (value, error) == ("cba", None)
    assert elapsed_ms >= 0
    assert peer.calls == [[("echo", "abc")]]


def test_messages_queued_during_a_call_share_the_next_one(batcher, peer):
    peer.hold.clear()
    first = batcher.submit(("echo", "first"))
    assert peer.entered.acquire(timeout=10)  # the first call is on the wire
    queued = [batcher.submit(("echo", f"m{index}")) for index in range(5)]
    peer.hold.set()
    assert first.result(timeout=10)[0] == "tsrif"
    assert [future.result(timeout=10)[0] for future in queued] == [f"{index}m" for index in range(5)]
    assert [len(call) for call in peer.calls] == [1, 5]
    assert (batcher.calls, batcher.messages) == (2, 6)


def test_each_message_gets_its_own_error(batcher, peer):
    peer.hold.clear()
    blocker = batcher.submit(("echo", "x"))
    assert peer.entered.acquire(timeout=10)
    good, bad = batcher.submit(("echo", "ok")), batcher.submit(("unknown", "?"))
    peer.hold.set()
    blocker.result(timeout=10)
    assert good.result(timeout=10)[:2] == ("ko", None)
    value, error, _ = bad.result(timeout=10)
    assert value is None and isinstance(error, InvalidRequest)


def test_a_failed_call_fails_every_message_it_carried(batcher, peer):
    peer.fail_with = ReplicaUnavailable("p1 is unreachable", replica="p1")
    futures = [batcher.submit(("echo", "a")), batcher.submit(("echo", "b"))]
    for future in futures:
        value, error, _ = future.result(timeout=10)
        assert value is None and isinstance(error, ReplicaUnavailable)
    peer.fail_with = None
    assert batcher.submit(("echo", "again")).result(timeout=10)[0] == "niaga"  # the sender lives on


def test_malformed_answers_become_errors():
    answers = iter([[["not a pair"], [False, "not an exception"]], [[True, 1]]])
    batcher = MessageBatcher("p1", lambda messages: next(answers)[:len(messages)] * len(messages), senders=1)
    try:
        first = batcher.submit(("echo", "a")).result(timeout=10)
        assert first[0] is None and "malformed" in str(first[1])
    finally:
        batcher.close()


def test_a_refusal_without_an_exception_still_reads_as_an_error():
    batcher = MessageBatcher("p1", lambda messages: [[False, "busy"]] * len(messages), senders=1)
    try:
        value, error, _ = batcher.submit(("echo", "a")).result(timeout=10)
        assert value is None and "busy" in str(error)
    finally:
        batcher.close()


def test_a_wrong_number_of_answers_fails_the_batch():
    batcher = MessageBatcher("p1", lambda messages: [], senders=1)
    try:
        value, error, _ = batcher.submit(("echo", "a")).result(timeout=10)
        assert value is None and "answered 0 of 1" in str(error)
    finally:
        batcher.close()


def test_batches_respect_the_message_and_byte_limits(peer):
    batcher = MessageBatcher("p1", peer, max_messages=3, max_bytes=3 * MESSAGE_OVERHEAD + 100, senders=1)
    try:
        peer.hold.clear()
        blocker = batcher.submit(("echo", "x"))
        assert peer.entered.acquire(timeout=10)
        small = [batcher.submit(("echo", f"s{index}")) for index in range(4)]
        big = [batcher.submit(("echo", f"b{index}"), size=100) for index in range(3)]
        peer.hold.set()
        for future in [blocker, *small, *big]:
            assert future.result(timeout=10)[1] is None
        # 3 small (message limit), then 1 small + 1 big (byte limit), then one big each
        assert [len(call) for call in peer.calls] == [1, 3, 2, 2]
    finally:
        batcher.close()


def test_a_second_sender_carries_messages_while_the_first_call_hangs():
    release, slow_sent = threading.Event(), threading.Event()

    def send(messages):
        if any(message[1] == "slow" for message in messages):
            slow_sent.set()
            assert release.wait(10)
        return [[True, message[1]] for message in messages]

    batcher = MessageBatcher("p1", send, senders=2)
    try:
        slow = batcher.submit(("echo", "slow"))
        assert slow_sent.wait(10)
        assert batcher.submit(("echo", "fast")).result(timeout=10)[0] == "fast"
        assert not slow.done()
        release.set()
        assert slow.result(timeout=10)[0] == "slow"
    finally:
        release.set()
        batcher.close()


def test_close_fails_queued_and_later_messages(peer):
    batcher = MessageBatcher("p1", peer, senders=1)
    peer.hold.clear()
    in_flight = batcher.submit(("echo", "x"))
    assert peer.entered.acquire(timeout=10)
    queued = batcher.submit(("echo", "y"))
    batcher.close()
    assert "closed" in str(queued.result(timeout=10)[1])
    assert "closed" in str(batcher.submit(("echo", "z")).result(timeout=10)[1])
    peer.hold.set()
    assert in_flight.result(timeout=10)[0] == "x"


def test_a_message_still_queued_when_it_expires_is_never_sent(batcher, peer):
    peer.hold.clear()
    blocker = batcher.submit(("echo", "x"))
    assert peer.entered.acquire(timeout=10)
    late = batcher.submit(("echo", "late vote"), expires=time.monotonic())
    on_time = batcher.submit(("echo", "decision"))
    peer.hold.set()
    value, error, _ = late.result(timeout=10)
    assert value is None and "not sent in time" in str(error)
    assert on_time.result(timeout=10)[0] == "noisiced"
    blocker.result(timeout=10)
    assert [message for call in peer.calls for message in call] == [("echo", "x"), ("echo", "decision")]


def test_a_lazy_message_waits_for_company_then_goes_alone(peer):
    batcher = MessageBatcher("p1", peer, senders=1, lazy_linger=30.0)
    try:
        lazy = batcher.submit(("echo", "decision"), lazy=True)
        assert not peer.entered.acquire(timeout=0.05)  # nothing sent yet: it waits for company
        urgent = batcher.submit(("echo", "vote"))
        assert urgent.result(timeout=10)[0] == "etov" and lazy.result(timeout=10)[0] == "noisiced"
        assert peer.calls == [[("echo", "decision"), ("echo", "vote")]]  # one call carried both
    finally:
        batcher.close()
    alone = MessageBatcher("p1", peer, senders=1, linger=30.0, lazy_linger=0.01, company=lambda: 16)
    try:  # a lazy message alone waits lazy_linger, not the linger that urgent ones wait for company
        assert alone.submit(("echo", "late"), lazy=True).result(timeout=10)[0] == "etal"
    finally:
        alone.close()


def test_one_call_at_a_time_until_the_call_in_flight_stalls(peer):
    batcher = MessageBatcher("p1", peer, senders=2, stall=30.0)
    try:
        peer.hold.clear()
        first = batcher.submit(("echo", "first"))
        assert peer.entered.acquire(timeout=10)
        queued = [batcher.submit(("echo", f"m{index}")) for index in range(3)]
        assert not peer.entered.acquire(timeout=0.05)  # B1: no second call while the first is out
        peer.hold.set()
        assert [future.result(timeout=10)[0] for future in [first, *queued]] == ["tsrif", "0m", "1m", "2m"]
        assert [len(call) for call in peer.calls] == [1, 3]
    finally:
        peer.hold.set()
        batcher.close()


def test_a_stalled_call_lets_a_second_sender_carry_the_queue():
    release, slow_sent = threading.Event(), threading.Event()

    def send(messages):
        if any(message[1] == "vote waiting for a key" for message in messages):
            slow_sent.set()
            assert release.wait(10)
        return [[True, message[1]] for message in messages]

    batcher = MessageBatcher("p1", send, senders=2, stall=0.01)
    try:
        waiting = batcher.submit(("echo", "vote waiting for a key"))
        assert slow_sent.wait(10)
        # B2: the decision that frees the key goes on the rescue sender
        assert batcher.submit(("echo", "decision")).result(timeout=10)[0] == "decision"
        assert not waiting.done()
    finally:
        release.set()
        batcher.close()


def test_queued_messages_wait_for_the_company_that_is_coming(peer):
    company = [3]
    batcher = MessageBatcher("p1", peer, senders=1, linger=30.0, company=lambda: company[0])
    try:
        first = batcher.submit(("echo", "a"))
        assert not peer.entered.acquire(timeout=0.05)  # B3: two more transactions are in progress
        second = batcher.submit(("echo", "b"))
        assert not peer.entered.acquire(timeout=0.05)
        third = batcher.submit(("echo", "c"))
        assert [future.result(timeout=10)[0] for future in (first, second, third)] == ["a", "b", "c"]
        assert peer.calls == [[("echo", "a"), ("echo", "b"), ("echo", "c")]]  # all the company in one call
        company[0] = 1
        assert batcher.submit(("echo", "alone")).result(timeout=10)[0] == "enola"  # one transaction: at once
    finally:
        batcher.close()


def test_company_that_ends_is_not_waited_for(peer):
    company = [2]
    batcher = MessageBatcher("p1", peer, senders=1, linger=30.0, company=lambda: company[0])
    try:
        waiting = batcher.submit(("echo", "a"))
        assert not peer.entered.acquire(timeout=0.05)  # B3: the other transaction may still send
        company[0] = 1  # it ended without sending anything here
        batcher.recheck()
        assert waiting.result(timeout=10)[0] == "a"
        assert peer.calls == [[("echo", "a")]]
    finally:
        batcher.close()


def test_the_next_write_of_a_client_whose_transaction_ended_joins_the_waiting_call(peer):
    company = [2]
    batcher = MessageBatcher("p1", peer, senders=1, linger=30.0, lazy_linger=30.0, company=lambda: company[0])
    try:
        waiting = batcher.submit(("echo", "a"))
        assert not peer.entered.acquire(timeout=0.05)
        company[0] = 1  # a transaction ended ...
        batcher.recheck()
        assert not peer.entered.acquire(timeout=0.05)  # ... "a" still waits a moment for its successor
        company[0] = 2  # ... whose client writes again
        successor = batcher.submit(("echo", "b"))
        assert (waiting.result(timeout=10)[0], successor.result(timeout=10)[0]) == ("a", "b")
        assert peer.calls == [[("echo", "a"), ("echo", "b")]]
    finally:
        batcher.close()


def test_a_message_queued_after_the_company_ended_goes_at_once(peer):
    """One client: its previous write just ended, and its next one must not wait for company."""
    batcher = MessageBatcher("p1", peer, senders=1, linger=30.0, lazy_linger=30.0, company=lambda: 1)
    try:
        batcher.recheck()  # the previous transaction ended
        assert batcher.submit(("echo", "next")).result(timeout=10)[0] == "txen"
    finally:
        batcher.close()


def test_company_that_does_not_come_is_waited_for_linger_seconds_only(peer):
    batcher = MessageBatcher("p1", peer, senders=1, linger=0.02, company=lambda: 16)
    try:
        assert batcher.submit(("echo", "x")).result(timeout=10)[0] == "x"
    finally:
        batcher.close()


def test_the_linger_counts_from_the_last_answer(peer):
    company = [1]
    batcher = MessageBatcher("p1", peer, senders=1, linger=30.0, company=lambda: company[0])
    try:
        peer.hold.clear()
        first = batcher.submit(("echo", "a"))  # one transaction in progress: at once
        assert peer.entered.acquire(timeout=10)
        queued = batcher.submit(("echo", "b"))
        company[0] = 2
        peer.hold.set()
        assert first.result(timeout=10)[0] == "a"
        # queued long before the answer, it still waits for the transaction the answer set going
        assert not peer.entered.acquire(timeout=0.05)
        third = batcher.submit(("echo", "c"))
        assert (queued.result(timeout=10)[0], third.result(timeout=10)[0]) == ("b", "c")
        assert peer.calls == [[("echo", "a")], [("echo", "b"), ("echo", "c")]]
    finally:
        peer.hold.set()
        batcher.close()


def test_a_message_queued_while_a_call_is_in_flight_wakes_no_sender(peer, monkeypatch, wait_until):
    """Each wake-up is two thread switches: a sender that sleeps until the call
    in flight stalls (B2), or until the company may be complete (B3), is woken
    only when the rules let a call go sooner than that."""
    company = [1]
    batcher = MessageBatcher("p1", peer, senders=2, stall=30.0, linger=30.0, company=lambda: company[0])
    woken = []
    notify = batcher._ready.notify
    monkeypatch.setattr(batcher._ready, "notify", lambda *args: (woken.append(1), notify(*args)))
    try:
        peer.hold.clear()
        first = batcher.submit(("echo", "first"))
        assert peer.entered.acquire(timeout=10)
        queued = [batcher.submit(("echo", f"m{index}")) for index in range(4)]  # the second sender starts
        assert woken == []  # B1: nothing can go before the answer, or before the stall, 30 s away
        peer.hold.set()
        assert [future.result(timeout=10)[0] for future in [first, *queued]] == ["tsrif", "0m", "1m", "2m", "3m"]
        assert [len(call) for call in peer.calls] == [1, 4]

        company[0] = 3
        lingering = batcher.submit(("echo", "a"))  # B3: two more transactions may still send here
        # the sender woken for it goes back to sleep until the linger ends
        assert wait_until(lambda: any(deadline != float("inf") for deadline in list(batcher._sleepers.values())))
        woken.clear()
        batcher.submit(("echo", "b"))
        assert woken == []  # two of three: the sender's wait is unchanged
        batcher.submit(("echo", "c"))
        assert woken == [1]  # all the company: the call goes now
        assert lingering.result(timeout=10)[0] == "a"
        assert peer.calls[-1] == [("echo", "a"), ("echo", "b"), ("echo", "c")]
    finally:
        peer.hold.set()
        batcher.close()
