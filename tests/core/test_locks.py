"""LockTable: all-or-nothing acquisition, deadlines, waiting, release."""
import threading
import time

from rmi_kv.core.locks import LockTable, SharedLock


def blocks_until(call, release, while_blocked=lambda: None):
    """Run ``call`` in a thread: it must still be blocked a moment later (when
    ``while_blocked`` runs), then return once ``release`` ran; its result."""
    started, done = threading.Event(), threading.Event()
    result = {}

    def body():
        started.set()
        result["value"] = call()
        done.set()

    thread = threading.Thread(target=body)
    thread.start()
    try:
        assert started.wait(5)
        assert not done.wait(0.05)  # still blocked
        while_blocked()
        release()
        assert done.wait(5)
    finally:
        release()
        thread.join(5)
    return result["value"]


def test_acquire_takes_every_key():
    locks = LockTable()
    assert locks.acquire("t1", ["a", "b", "c"], 0) is None
    assert locks.held() == {"a": "t1", "b": "t1", "c": "t1"}
    assert locks.owner("b") == "t1"
    assert locks.owner("z") is None


def test_acquire_is_reentrant_for_the_same_txid():
    locks = LockTable()
    assert locks.acquire("t1", ["a"], 0) is None
    assert locks.acquire("t1", ["a", "b"], 0) is None
    assert locks.held() == {"a": "t1", "b": "t1"}


def test_acquisition_is_all_or_nothing():
    locks = LockTable()
    assert locks.acquire("t1", ["b"], 0) is None
    assert locks.acquire("t2", ["a", "b", "c"], 0) == "t1"
    assert locks.held() == {"b": "t1"}  # neither a nor c was taken
    assert locks.acquire("t3", ["a", "c"], 0) is None


def test_conflict_returns_the_blocker_after_the_deadline():
    locks = LockTable()
    locks.acquire("t1", ["k"], 0)
    started = time.monotonic()
    assert locks.acquire("t2", ["x", "k"], 0.1) == "t1"
    elapsed = time.monotonic() - started
    assert 0.09 <= elapsed < 2.0
    assert locks.held() == {"k": "t1"}


def test_waiting_acquirer_gets_the_lock_after_release():
    locks = LockTable()
    locks.acquire("t1", ["a", "b"], 0)

    def took_nothing_meanwhile():
        assert locks.owner("c") is None  # still waiting for b, held by t1

    assert blocks_until(lambda: locks.acquire("t2", ["b", "c"], 10), lambda: locks.release("t1", ["a", "b"]),
                        took_nothing_meanwhile) is None
    assert locks.held() == {"b": "t2", "c": "t2"}


def test_release_frees_only_the_callers_keys():
    locks = LockTable()
    locks.acquire("t1", ["a"], 0)
    locks.acquire("t2", ["b"], 0)
    locks.release("t2", ["a", "b", "never-locked"])
    assert locks.held() == {"a": "t1"}
    locks.release("t1", ["a"])
    assert locks.held() == {}


def test_wait_unlocked_returns_at_once_for_a_free_key():
    locks = LockTable()
    started = time.monotonic()
    assert locks.wait_unlocked("free", 10) is None
    assert time.monotonic() - started < 1.0


def test_wait_unlocked_returns_the_holder_after_the_deadline():
    locks = LockTable()
    locks.acquire("t1", ["k"], 0)
    started = time.monotonic()
    assert locks.wait_unlocked("k", 0.1) == "t1"
    assert time.monotonic() - started >= 0.09
    assert locks.owner("k") == "t1"


def test_wait_unlocked_wakes_on_release():
    locks = LockTable()
    locks.acquire("t1", ["k"], 0)
    assert blocks_until(lambda: locks.wait_unlocked("k", 10), lambda: locks.release("t1", ["k"])) is None


def test_wait_unlocked_ignores_releases_of_other_keys():
    locks = LockTable()
    locks.acquire("t1", ["k"], 0)
    locks.acquire("t2", ["other"], 0)
    started, done = threading.Event(), threading.Event()
    result = {}

    def wait():
        started.set()
        result["holder"] = locks.wait_unlocked("k", 0.3)
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert started.wait(5)
    locks.release("t2", ["other"])
    assert done.wait(5)
    thread.join(5)
    assert result["holder"] == "t1"


def test_may_wait_false_returns_the_blocker_at_once():
    locks = LockTable()
    locks.acquire("old", ["k"], 0)
    asked = []

    def may_wait(holder):
        asked.append(holder)
        return False

    started = time.monotonic()
    assert locks.acquire("young", ["free", "k"], 10, may_wait=may_wait) == "old"
    assert time.monotonic() - started < 2.0  # did not wait for the 10 s deadline
    assert asked == ["old"]
    assert locks.held() == {"k": "old"}


def test_may_wait_true_waits_for_the_release():
    locks = LockTable()
    locks.acquire("young", ["k"], 0)
    assert blocks_until(lambda: locks.acquire("old", ["k"], 10, may_wait=lambda holder: True),
                        lambda: locks.release("young", ["k"])) is None
    assert locks.owner("k") == "old"


def test_shared_lock_lets_commits_overlap_and_exclusive_waits_for_them():
    lock = SharedLock()
    inside = threading.Barrier(3, timeout=10)  # two shared holders at once, and this thread

    def commit():
        with lock.shared():
            inside.wait()
            inside.wait()  # held until the exclusive attempt below has started

    holders = [threading.Thread(target=commit) for _ in range(2)]
    for holder in holders:
        holder.start()
    inside.wait()
    got_exclusive = threading.Event()

    def finish_catch_up():
        with lock.exclusive():
            got_exclusive.set()

    finisher = threading.Thread(target=finish_catch_up)
    finisher.start()
    assert not got_exclusive.wait(0.05)  # both commits still hold it shared
    inside.wait()
    assert got_exclusive.wait(10)
    for thread in (*holders, finisher):
        thread.join(10)
