"""Group commit in the SQLite engine: queued forced writes share one commit, and
an operation that fails (or a commit that fails) is rolled back alone, its
counters too."""
import threading

import pytest

from rmi_kv.core.messages import COMMIT
from rmi_kv.storage.group_commit import PendingWrite

from support.storage_helpers import apply_commit, log_prepared, recompute_digest

pytestmark = pytest.mark.parametrize("make_storage", ["sqlite"], indirect=True)


def test_failed_apply_commit_leaves_no_trace(make_storage):
    """A commit that fails half-way (here: its second key cannot be stored) leaves
    neither data, nor counters, nor an outcome behind."""
    storage = make_storage()
    apply_commit(storage, "t0", {"keep": "1"})
    writes = {"a": "1", "keep": None, "bad\ud800": "x"}
    log_prepared(storage, "t1", {"a": "1", "keep": None}, "c0", ["c0"])
    digest, live, committed = storage.digest, storage.live_keys, storage.committed_count
    with pytest.raises(UnicodeEncodeError):
        apply_commit(storage, "t1", writes)
    assert storage.get("a") is None and storage.get("keep") == ("1", 1)
    assert (storage.digest, storage.live_keys, storage.committed_count) == (digest, live, committed)
    assert storage.digest == recompute_digest(storage)
    assert storage.outcome("t1") is None
    assert [record.txid for record in storage.prepared()] == ["t1"]


class _BatchRecorder:
    """Wraps a storage's _commit_batch to record the size of every batch."""

    def __init__(self, storage):
        self.sizes = []
        original = storage._group_commit._commit_batch

        def commit_batch(batch):
            self.sizes.append(len(batch))
            return original(batch)

        storage._group_commit._commit_batch = commit_batch


def _queue_behind_blocked_commit(storage, wait_until, calls):
    """Start a write that blocks inside its commit, run each of ``calls`` (each
    makes exactly one storage write) in its own thread so they queue up behind
    it, then let the commit go. Returns label -> (result, error)."""
    entered, release = threading.Event(), threading.Event()
    results = {}

    def blocking(connection):
        entered.set()
        assert release.wait(10), "the test never released the blocked commit"
        connection.execute("INSERT INTO meta(name, value) VALUES ('blocker', 'done')")
        return "blocker"

    def run(label, call):
        try:
            results[label] = (call(), None)
        except Exception as error:
            results[label] = (None, error)

    blocker = threading.Thread(target=run, args=("blocker", lambda: storage._group_commit.write(blocking)))
    blocker.start()
    threads = []
    try:
        assert entered.wait(5)
        for label, call in calls.items():
            thread = threading.Thread(target=run, args=(label, call))
            thread.start()
            threads.append(thread)
        assert wait_until(lambda: len(storage._group_commit._queue) == len(calls)), "writes did not queue up"
    finally:
        release.set()
        blocker.join(10)
        for thread in threads:
            thread.join(10)
    assert not blocker.is_alive() and not any(thread.is_alive() for thread in threads)
    return results


def _insert_meta(storage, name, value):
    return lambda: storage._group_commit.write(lambda connection: connection.execute(
        "INSERT INTO meta(name, value) VALUES (?, ?)", (name, value)).rowcount)


def test_queued_writes_share_one_commit(make_storage, wait_until):
    storage = make_storage()
    recorder = _BatchRecorder(storage)
    calls = {f"good{index}": _insert_meta(storage, f"n{index}", str(index)) for index in range(10)}
    results = _queue_behind_blocked_commit(storage, wait_until, calls)
    assert results["blocker"] == ("blocker", None)
    assert all(results[f"good{index}"] == (1, None) for index in range(10))
    assert recorder.sizes == [1, 10]
    stored = dict(storage._read_all("SELECT name, value FROM meta WHERE name LIKE 'n%'"))
    assert stored == {f"n{index}": str(index) for index in range(10)}


def test_a_failing_operation_does_not_sink_its_batch(make_storage, wait_until):
    storage = make_storage()
    apply_commit(storage, "seed", {"counted": "1"})
    recorder = _BatchRecorder(storage)

    def bad(index):
        def operation(connection):
            connection.execute("INSERT INTO meta(name, value) VALUES (?, 'partial')", (f"bad{index}",))
            raise ValueError(f"bad operation {index}")
        return lambda: storage._group_commit.write(operation)

    calls = {}
    for index in range(4):
        calls[f"good{index}"] = _insert_meta(storage, f"good{index}", "ok")
        calls[f"bad{index}"] = bad(index)
    # a commit that changes data and counters, then fails on a key SQLite cannot store
    calls["bad_commit"] = lambda: apply_commit(storage, "t-bad", {"counted": None, "phantom": "x", "\udc80": "y"})
    calls["good_commit"] = lambda: apply_commit(storage, "t-good", {"real": "1"})
    calls["good_prepare"] = lambda: log_prepared(storage, "t-next", {"n": "1"}, "c0", ["c0"])
    digest_before_batch = storage.digest

    results = _queue_behind_blocked_commit(storage, wait_until, calls)

    assert recorder.sizes == [1, len(calls)]  # they really shared one commit
    for index in range(4):
        assert results[f"good{index}"] == (1, None)
        value, error = results[f"bad{index}"]
        assert isinstance(error, ValueError) and str(error) == f"bad operation {index}"
    assert isinstance(results["bad_commit"][1], UnicodeEncodeError)
    assert results["good_commit"] == (None, None)
    assert results["good_prepare"] == (None, None)
    names = {row[0] for row in storage._read_all("SELECT name FROM meta")}
    assert {f"good{index}" for index in range(4)} <= names
    assert not any(name.startswith("bad") for name in names)  # partial writes rolled back
    assert storage.get("counted") == ("1", 1)
    assert storage.get("phantom") is None
    assert storage.outcome("t-bad") is None
    assert storage.get("real") == ("1", 1)
    assert storage.outcome("t-good") == COMMIT
    assert [record.txid for record in storage.prepared()] == ["t-next"]
    assert storage.digest != digest_before_batch
    assert storage.digest == recompute_digest(storage)
    assert storage.live_keys == 2
    assert storage.committed_count == 2
    storage.close()  # and all of it is durable
    reopened = make_storage()
    assert reopened.get("real") == ("1", 1) and reopened.get("phantom") is None
    assert reopened.digest == recompute_digest(reopened) == storage.digest
    assert reopened.committed_count == 2


def _counted_insert(storage, name, runs, repeatable=True):
    """A call that inserts one meta entry and counts how often its operation ran."""
    def operation(connection):
        runs[name] = runs.get(name, 0) + 1
        return connection.execute("INSERT INTO meta(name, value) VALUES (?, 'ok')", (name,)).rowcount
    return lambda: storage._group_commit.write(operation, repeatable=repeatable)


def test_a_shared_commit_where_nothing_fails_runs_each_operation_once(make_storage, wait_until):
    storage = make_storage()
    runs = {}
    calls = {f"good{index}": _counted_insert(storage, f"good{index}", runs) for index in range(5)}
    results = _queue_behind_blocked_commit(storage, wait_until, calls)
    assert all(results[label] == (1, None) for label in calls)
    assert runs == {f"good{index}": 1 for index in range(5)}


def test_an_operation_that_must_not_run_twice_runs_once_beside_a_failing_one(make_storage, wait_until):
    """A failing operation makes its batch run again in savepoints; an operation
    queued as not repeatable (a restore consuming a stream) is run once all the same."""
    storage = make_storage()
    runs = {}

    def bad(connection):
        runs["bad"] = runs.get("bad", 0) + 1
        raise ValueError("bad operation")

    calls = {"once": _counted_insert(storage, "once", runs, repeatable=False),
             "bad": lambda: storage._group_commit.write(bad),
             "again": _counted_insert(storage, "again", runs)}
    results = _queue_behind_blocked_commit(storage, wait_until, calls)
    assert results["once"] == (1, None) and results["again"] == (1, None)
    assert isinstance(results["bad"][1], ValueError)
    assert runs == {"once": 1, "bad": 1, "again": 1}  # savepoints at once: nothing ran twice
    names = {row[0] for row in storage._read_all("SELECT name FROM meta")}
    assert {"once", "again"} <= names


def test_after_a_failure_the_others_of_a_plain_batch_run_again_and_commit_once(make_storage):
    storage = make_storage()
    runs = {}

    def insert(name):
        def operation(connection):
            runs[name] = runs.get(name, 0) + 1
            return connection.execute("INSERT INTO meta(name, value) VALUES (?, 'ok')", (name,)).rowcount
        return operation

    def bad(connection):
        raise ValueError("bad operation")

    batch = [PendingWrite(insert("first")), PendingWrite(bad), PendingWrite(insert("last"))]
    storage._group_commit._commit_batch(batch)
    assert [pending.result() for pending in (batch[0], batch[2])] == [1, 1]
    with pytest.raises(ValueError):
        batch[1].result()
    assert runs == {"first": 2, "last": 1}  # run plainly until the failure, rolled back, run again in savepoints
    rows = storage._read_all("SELECT name FROM meta WHERE name IN ('first', 'last')")
    assert sorted(row[0] for row in rows) == ["first", "last"]  # each committed once
