"""PendingReply and wait_all (core.replies): rules R1-R3, on plain threads."""
import concurrent.futures
import threading

import pytest

from rmi_kv.core.messages import Reply
from rmi_kv.core.replies import PendingReply, wait_all

YES = Reply(True, None, 1.0)


def test_an_answer_is_given_once():
    pending = PendingReply()
    assert not pending.done()
    pending.set_result(YES)
    assert pending.done() and pending.result() == YES
    with pytest.raises(RuntimeError, match="has its answer already"):
        pending.set_result(Reply(False, None, 2.0))
    assert pending.result() == YES  # R1: the first answer stands


def test_a_callback_runs_once_in_the_thread_that_answers_or_at_once_when_answered():
    pending = PendingReply()
    ran = []
    pending.add_done_callback(lambda done: ran.append((done.result(), threading.current_thread().name)))
    answering = threading.Thread(target=pending.set_result, args=(YES,), name="carrier")
    answering.start()
    answering.join(10)
    assert ran == [(YES, "carrier")]
    pending.add_done_callback(lambda done: ran.append((done.result(), threading.current_thread().name)))
    assert ran == [(YES, "carrier"), (YES, threading.current_thread().name)]  # R2: added late, runs at once


def test_wait_all_returns_once_the_last_answer_is_in():
    pending = [PendingReply() for _ in range(3)]
    pending[0].set_result(YES)
    returned = []
    waiter = threading.Thread(target=lambda: returned.append(wait_all(pending)))
    waiter.start()
    pending[2].set_result(YES)
    assert wait_all(pending, timeout=0) == ([pending[0], pending[2]], [pending[1]])
    pending[1].set_result(Reply(False, None, 3.0))
    waiter.join(10)
    assert not waiter.is_alive()
    assert returned == [(pending, [])]  # no limit: it returned with every answer in


def test_wait_all_gives_up_at_its_timeout_and_a_late_answer_changes_nothing_for_it():
    early, late = PendingReply(), PendingReply()
    early.set_result(YES)
    answered, unanswered = wait_all([early, late], timeout=0.01)
    assert (answered, unanswered) == ([early], [late])
    late.set_result(YES)  # the gate nobody waits on any more opens harmlessly
    assert late.result() == YES
    with pytest.raises(TimeoutError):
        PendingReply().result(timeout=0.01)


def test_wait_all_takes_futures_too():
    future: concurrent.futures.Future = concurrent.futures.Future()
    pending = PendingReply.answered(YES)
    setter = threading.Thread(target=future.set_result, args=(YES,))
    setter.start()
    answered, unanswered = wait_all([future, pending], timeout=10)
    setter.join(10)
    assert (answered, unanswered) == ([future, pending], [])
    assert wait_all([]) == ([], [])


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog):
    pending = PendingReply()
    ran = []

    def broken(done):
        raise ValueError("a listener's bug")

    pending.add_done_callback(broken)
    pending.add_done_callback(lambda done: ran.append(done.result()))
    pending.set_result(YES)  # the carrier goes on: it has other answers to give
    pending.add_done_callback(broken)  # added late, run at once: logged too
    assert ran == [YES]
    assert [record.getMessage() for record in caplog.records].count("a callback on a protocol answer failed") == 2
