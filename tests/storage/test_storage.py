"""The storage interfaces' contracts: committed data, versions, tombstones, digest,
the 2PC log, catch-up, the member list. Each test runs over both engines
(SQLite, plain dicts: see conftest.py), except the property tests, on SQLite."""
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.storage.interfaces import (
    CatchUp, Data, DecisionLog, DecisionRecord, ParticipantLog, ParticipantStorage, ReplicaStorage)
from rmi_kv.storage.sqlite import Storage

from support.storage_helpers import apply_commit, entries, entry_of, log_prepared, recompute_digest


def test_the_engine_implements_every_interface(make_storage):
    storage = make_storage()
    for interface in (Data, ParticipantLog, CatchUp, DecisionLog, ParticipantStorage, ReplicaStorage):
        assert isinstance(storage, interface), interface.__name__
    assert callable(storage.members) and callable(storage.save_members)  # wire.peers.MemberStore


# ------------------------------------------------------------------ data
def test_apply_commit_writes_values_and_bumps_versions(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {"a": "1", "b": "2"})
    assert storage.get("a") == ("1", 1)
    assert storage.get("b") == ("2", 1)
    apply_commit(storage, "t2", {"a": "one"})
    assert storage.get("a") == ("one", 2)
    assert storage.get("b") == ("2", 1)
    assert storage.get("missing") is None
    assert storage.outcome("t1") == COMMIT and storage.outcome("t2") == COMMIT
    assert storage.committed_count == 2


def test_repeated_apply_commit_changes_nothing(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {"a": "1"})
    digest = storage.digest
    apply_commit(storage, "t1", {"a": "1"})
    apply_commit(storage, "t1", {"a": "something else"})
    assert storage.get("a") == ("1", 1)
    assert storage.committed_count == 1
    assert storage.digest == digest


def test_a_commit_of_a_transaction_recorded_aborted_writes_nothing(make_storage):
    storage = make_storage()
    log_prepared(storage, "t1", {"a": "1"}, "c", ["c", "p"])
    storage.record_abort("t1", prepared=True)
    digest, aborted = storage.digest, storage.aborted_count
    apply_commit(storage, "t1", {"a": "1"})
    apply_commit(storage, "t1", {"a": "1"}, decision=["c", "p"])
    assert storage.get("a") is None and storage.outcome("t1") == ABORT
    assert storage.committed_count == 0 and storage.aborted_count == aborted and storage.digest == digest


def test_the_coordinators_commit_and_a_participants_commit_each_leave_one_commit_and_no_prepared_record(
        make_storage):
    storage = make_storage()
    apply_commit(storage, "c:1", {"a": "1"}, decision=["c", "p"])  # the coordinator's own: never prepared
    log_prepared(storage, "d:1", {"b": "2"}, "d", ["c", "d"])
    apply_commit(storage, "d:1", {"b": "2"})
    assert storage.prepared() == []
    assert storage.outcome("c:1") == COMMIT and storage.outcome("d:1") == COMMIT
    assert storage.committed_count == 2 and storage.live_keys == 2
    assert storage.digest == recompute_digest(storage)


def test_delete_leaves_a_tombstone_and_versions_keep_growing(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {"a": "1"})
    apply_commit(storage, "t2", {"a": None})
    assert storage.get("a") is None
    assert entry_of(storage, "a") == (None, 2)
    assert storage.keys() == []
    assert storage.live_keys == 0
    # deleting what is already deleted (or was never there) changes nothing
    apply_commit(storage, "t3", {"a": None, "never": None})
    assert entry_of(storage, "a") == (None, 2)
    assert entry_of(storage, "never") is None
    apply_commit(storage, "t4", {"a": "again"})
    assert storage.get("a") == ("again", 3)
    assert entries(storage) == [("a", "again", 3)]


def test_values_keep_any_unicode(make_storage):
    storage = make_storage()
    value = "ünïcödé \U0001F600 'quotes' \"double\" \\ \n\x00end"
    apply_commit(storage, "t1", {"clé \U0001F511": value})
    assert storage.get("clé \U0001F511") == (value, 1)


def test_digest_is_equal_for_equal_data_whatever_the_write_order(make_storage):
    first, second = make_storage("first"), make_storage("second")
    for txid, writes in [("t1", {"a": "1"}), ("t2", {"b": "2"}), ("t3", {"c": "3", "a": "1b"})]:
        apply_commit(first, txid, writes)
    for txid, writes in [("u1", {"c": "3"}), ("u2", {"a": "1"}), ("u3", {"b": "2"}), ("u4", {"a": "1b"})]:
        apply_commit(second, txid, writes)
    assert entries(first) == entries(second)
    assert first.digest == second.digest
    assert first.digest == recompute_digest(first) == recompute_digest(second)
    # different data (same values, other versions) gives another digest
    third = make_storage("third")
    apply_commit(third, "v1", {"a": "1b", "b": "2", "c": "3"})
    assert third.digest != first.digest


def test_digest_of_empty_store_and_after_deleting_everything(make_storage):
    storage = make_storage()
    empty = storage.digest
    assert empty == recompute_digest(storage) == "0" * 64
    apply_commit(storage, "t1", {"a": "1", "b": "2"})
    assert storage.digest != empty
    apply_commit(storage, "t2", {"a": None, "b": None})
    assert storage.digest == empty == recompute_digest(storage)


KEYS = st.sampled_from(["a", "b", "c", "d", "é", "\U0001F600"])
VALUES = st.one_of(st.none(), st.text(max_size=8))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.tuples(KEYS, VALUES), max_size=20), order=st.randoms(use_true_random=False))
def test_digest_property_any_interleaving_keeping_per_key_order(writes, order):
    """Replaying the same per-key histories interleaved differently gives equal data and digest."""
    priority = {key: order.random() for key, _ in writes}
    shuffled = sorted(writes, key=lambda item: priority[item[0]])  # stable: keeps each key's order
    with tempfile.TemporaryDirectory() as directory:
        first = Storage(Path(directory) / "first.sqlite3", durable=False)
        second = Storage(Path(directory) / "second.sqlite3", durable=False)
        try:
            for index, (key, value) in enumerate(writes):
                apply_commit(first, f"t{index}", {key: value})
            for index, (key, value) in enumerate(shuffled):
                apply_commit(second, f"t{index}", {key: value})
            assert entries(first) == entries(second)
            assert first.digest == second.digest == recompute_digest(first)
            assert first.live_keys == second.live_keys == len(first.keys())
        finally:
            first.close()
            second.close()


def test_digest_and_counts_survive_reopen(make_storage):
    storage = make_storage("s")
    apply_commit(storage, "t1", {"a": "1", "b": "2", "c": "3"})
    apply_commit(storage, "t2", {"b": None, "c": "3b"})
    log_prepared(storage, "t3", {"x": "1"}, "c0", ["c0"])
    storage.record_abort("t3")
    digest, live = storage.digest, storage.live_keys
    assert digest == recompute_digest(storage)
    storage.close()
    reopened = make_storage("s")
    assert reopened.digest == digest == recompute_digest(reopened)
    assert reopened.live_keys == live == 2
    assert reopened.committed_count == 2
    assert reopened.aborted_count == 1


def test_live_key_count(make_storage):
    storage = make_storage()
    assert storage.live_keys == 0
    apply_commit(storage, "t1", {"a": "1", "b": "2", "c": "3"})
    assert storage.live_keys == 3
    apply_commit(storage, "t2", {"a": "1b"})  # an update is not a new key
    assert storage.live_keys == 3
    apply_commit(storage, "t3", {"b": None, "nothing": None})
    assert storage.live_keys == 2
    apply_commit(storage, "t4", {"b": "back"})
    assert storage.live_keys == 3 == len(storage.keys())


def test_keys_with_prefix_and_limit(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {key: "v" for key in [
        "user:1", "user:2", "user:10", "user:3", "usr", "user_x", "userX", "a%b", "a%c", "ab",
        "ünï:1", "ünï:2", "\U0001F600:1", "z"]})
    apply_commit(storage, "t2", {"user:3": None})
    assert storage.keys() == sorted(storage.keys())
    assert "user:3" not in storage.keys()
    assert len(storage.keys()) == 13
    assert storage.keys("user:") == ["user:1", "user:10", "user:2"]
    assert storage.keys("user:", limit=2) == ["user:1", "user:10"]
    assert storage.keys("user_") == ["user_x"]  # '_' is no wildcard
    assert storage.keys("a%") == ["a%b", "a%c"]  # '%' is no wildcard
    assert storage.keys("ünï:") == ["ünï:1", "ünï:2"]
    assert storage.keys("\U0001F600") == ["\U0001F600:1"]
    assert storage.keys("nothing") == []
    assert storage.keys(limit=1) == ["a%b"]


PREFIX_ALPHABET = st.sampled_from(["a", "b", "é", "\U0001F600", "%", "_", "[", "*"])


@settings(max_examples=30, deadline=None)
@given(keys=st.dictionaries(st.text(PREFIX_ALPHABET, min_size=1, max_size=4), st.booleans(), max_size=12),
       prefix=st.text(PREFIX_ALPHABET, max_size=2), limit=st.integers(1, 15),
       after=st.none() | st.text(PREFIX_ALPHABET, min_size=1, max_size=4))
def test_keys_property_matches_a_plain_filter(keys, prefix, limit, after):
    """keys(prefix, limit, after=A) == the first ``limit`` live keys starting with ``prefix``
    (and after A), sorted."""
    with tempfile.TemporaryDirectory() as directory:
        storage = Storage(Path(directory) / "s.sqlite3", durable=False)
        try:
            if keys:
                apply_commit(storage, "put", {key: "v" for key in keys})
                apply_commit(storage, "delete", {key: None for key, live in keys.items() if not live})
            live = sorted(key for key, alive in keys.items() if alive)
            assert storage.keys(prefix, limit=limit, after=after) == [
                key for key in live if key.startswith(prefix) and (after is None or key > after)][:limit]
        finally:
            storage.close()


def test_keys_after_a_cursor_walk_every_key_once(make_storage):
    """Pages of keys(prefix, limit, after=last key of the page before) cover the prefix exactly."""
    storage = make_storage()
    apply_commit(storage, "t1", {f"k{number:03d}": "v" for number in range(172)} | {"j": "v", "l": "v"})
    pages, after = [], None
    while True:
        page = storage.keys("k", limit=50, after=after)
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(page) for page in pages] == [50, 50, 50, 22]
    assert sum(pages, []) == [f"k{number:03d}" for number in range(172)]
    assert storage.keys("k", limit=5, after="a") == storage.keys("k", limit=5), \
        "a cursor before the prefix starts at it"


def test_keys_prefix_with_a_nul_character(make_storage):
    """Keys may hold U+0000 (validation allows it); a prefix holding it must still match."""
    storage = make_storage()
    apply_commit(storage, "t1", {"a\x00b": "1", "a\x00c": "2", "ab": "3"})
    assert storage.get("a\x00b") == ("1", 1)
    assert storage.keys("a") == ["a\x00b", "a\x00c", "ab"]
    assert storage.keys("a\x00") == ["a\x00b", "a\x00c"]


def test_read_chunk_pages_cover_every_entry_tombstones_too(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {f"k{number}": "v" for number in range(5)})
    apply_commit(storage, "t2", {"k1": None})
    first = storage.read_chunk(None, 2)
    assert first == [("k0", "v", 1, "t1"), ("k1", None, 2, "t2")]
    assert storage.read_chunk("k1", 10) == [(f"k{number}", "v", 1, "t1") for number in range(2, 5)]
    assert storage.read_chunk("k4", 10) == []
    assert entries(storage, page=2) == entries(storage) and len(entries(storage)) == 5


# ----------------------------------------------------------- participant log
def test_one_forced_write_for_commits_and_prepares_each_answered(make_storage):
    storage = make_storage()
    log_prepared(storage, "t1", {"a": "1"}, "c0", ["c0", "p1"])
    forced = storage.forced_commits
    commit_errors, prepare_errors = storage.commit_and_prepare(
        [("t1", {"a": "1"}, None), ("t2", {"b": "2"}, ["c0", "p1"])], [("t3", {"c": "3"}, "c0", ("c0", "p1"))])
    assert (commit_errors, prepare_errors) == ([None, None], [None])
    assert storage.forced_commits == forced + 1
    assert storage.get("a") == ("1", 1) and storage.get("b") == ("2", 1) and storage.get("c") is None
    assert [record.txid for record in storage.prepared()] == ["t3"]
    assert storage.has_decision("t2") and not storage.has_decision("t1")  # a decision goes with its commit
    assert storage.committed_count == 2


def test_prepared_records_survive_close_and_reopen(make_storage):
    storage = make_storage("s")
    log_prepared(storage, "c0:00000000:1", {"a": "1", "gone": None, "ü": "\U0001F600"}, "c0", ["c0", "p1", "p2"])
    log_prepared(storage, "c0:00000000:2", {"b": "2"}, "c0", ("c0", "p1"))
    storage.close()
    reopened = make_storage("s")
    records = {record.txid: record for record in reopened.prepared()}
    assert set(records) == {"c0:00000000:1", "c0:00000000:2"}
    first = records["c0:00000000:1"]
    assert first.writes == {"a": "1", "gone": None, "ü": "\U0001F600"}
    assert first.coordinator == "c0"
    assert first.participants == ("c0", "p1", "p2")
    assert records["c0:00000000:2"].participants == ("c0", "p1")
    # PREPARED is not committed data
    assert reopened.get("a") is None and reopened.outcome("c0:00000000:1") is None


def test_apply_commit_drops_the_prepared_record(make_storage):
    storage = make_storage()
    log_prepared(storage, "t1", {"a": "1"}, "c0", ["c0"])
    log_prepared(storage, "t2", {"b": "2"}, "c0", ["c0"])
    apply_commit(storage, "t1", {"a": "1"})
    assert [record.txid for record in storage.prepared()] == ["t2"]
    assert storage.get("a") == ("1", 1)


def test_record_abort_drops_the_prepared_record(make_storage):
    storage = make_storage()
    log_prepared(storage, "t1", {"a": "1"}, "c0", ["c0"])
    storage.record_abort("t1")
    assert storage.prepared() == []
    assert storage.outcome("t1") == ABORT
    assert storage.get("a") is None
    assert storage.aborted_count == 1
    storage.record_abort("t1")  # repeated: nothing changes
    assert storage.aborted_count == 1
    storage.record_abort("never-prepared")  # remembered, but nothing was aborted here
    assert storage.outcome("never-prepared") == ABORT
    assert storage.aborted_count == 1


def test_record_abort_after_commit_keeps_the_commit(make_storage):
    storage = make_storage()
    apply_commit(storage, "t1", {"a": "1"})
    storage.record_abort("t1")
    assert storage.outcome("t1") == COMMIT
    assert storage.get("a") == ("1", 1)
    assert storage.aborted_count == 0


def test_outcomes_and_forgetting_them(make_storage):
    storage = make_storage()
    assert storage.outcome("t1") is None
    apply_commit(storage, "t1", {"a": "1"})
    storage.record_abort("t2")
    assert (storage.outcome("t1"), storage.outcome("t2"), storage.outcome("t3")) == (COMMIT, ABORT, None)
    assert storage.forget_outcomes(time.time() - 3600) == 0
    assert storage.outcome("t1") == COMMIT
    assert storage.forget_outcomes(time.time() + 1) == 2
    assert storage.outcome("t1") is None and storage.outcome("t2") is None
    assert storage.get("a") == ("1", 1)  # data stays


def test_forgetting_outcomes_moves_what_the_replica_can_vouch_for(make_storage):
    storage = make_storage()
    born = storage.knows_nothing_before_us
    assert storage.forgotten_before_us == 0 and born > 0
    horizon = time.time() + 1
    storage.forget_outcomes(horizon)
    assert storage.forgotten_before_us == int(horizon * 1_000_000) == storage.knows_nothing_before_us


def test_forgetting_old_outcomes_never_moves_the_horizon_back(make_storage):
    """A catch-up empties the outcomes and vouches for everything started before
    it; pruning afterwards (the horizon an hour ago) must not take that back."""
    storage = make_storage()
    apply_commit(storage, "t1", {"a": "1"})
    before_reset = time.time_ns() // 1000
    storage.reset_for_catch_up()
    horizon = storage.forgotten_before_us
    assert horizon >= before_reset
    storage.forget_outcomes(time.time() - 3600)
    assert storage.forgotten_before_us == horizon == storage.knows_nothing_before_us


# ---------------------------------------------------------------- catch-up
def test_catch_up_buffers_commits_then_applies_only_what_the_copy_lacks(make_storage):
    storage = make_storage("s")
    assert storage.created_now and not storage.catching_up
    storage.set_catching_up(True)
    assert storage.catching_up and not storage.created_now
    log_prepared(storage, "t1", {"a": "1", "b": "1"}, "c0", ["c0", "p1"])
    storage.buffer_commit("t1", {"a": "1", "b": "1"})
    storage.buffer_commit("t1", {"a": "1", "b": "1"})  # repeated: kept once
    storage.buffer_commit("t2", {"a": "2"}, decision=["p1", "c0"])
    assert storage.outcome("t1") == COMMIT and storage.prepared() == [] and storage.has_decision("t2")
    assert storage.get("a") is None  # buffered, not applied
    # the copy holds a as t1 left it (not t2's write yet), and b from before t1
    storage.install_entries([("a", "1", 1, "t1"), ("b", "0", 1, "old"), ("gone", None, 3, "old")])
    assert storage.get("b") == ("0", 1) and entry_of(storage, "gone") == (None, 3) and storage.live_keys == 2
    assert storage.finish_catch_up() == 2  # t2 on a, t1 on b
    assert not storage.catching_up
    assert storage.get("a") == ("2", 2) and storage.get("b") == ("1", 2)
    assert storage.digest == recompute_digest(storage) and storage.committed_count == 2
    storage.close()
    reopened = make_storage("s")
    assert not reopened.catching_up and not reopened.created_now
    assert reopened.finish_catch_up() == 0 and reopened.get("a") == ("2", 2)


# ---------------------------------------------------------------- members
def test_members_are_kept_and_a_missing_uri_keeps_the_stored_one(make_storage):
    storage = make_storage("s")
    assert storage.members() == {}
    storage.save_members({"r1": ("PYRO:a@h:1", False), "r2": ("PYRO:b@h:2", False)})
    storage.save_members({"r2": (None, True)})
    storage.save_members({})
    storage.close()
    assert make_storage("s").members() == {"r1": ("PYRO:a@h:1", False), "r2": ("PYRO:b@h:2", True)}


# ---------------------------------------------------------- coordinator log
def test_decisions_log_and_forget(make_storage):
    storage = make_storage("s")
    storage.log_decision("t1", ["c0", "p1"])
    storage.log_decision("t2", ["c0", "p1", "p2"])
    storage.log_decision("t1", ["ignored"])  # repeated: the first record stays
    assert storage.has_decision("t1") and storage.has_decision("t2")
    assert not storage.has_decision("t3")
    storage.close()
    reopened = make_storage("s")
    decisions = reopened.decisions()
    assert [(d.txid, d.participants) for d in decisions] == [("t1", ("c0", "p1")), ("t2", ("c0", "p1", "p2"))]
    assert all(isinstance(d, DecisionRecord) for d in decisions)
    reopened.forget_decisions(["t1", "unknown"])
    reopened.forget_decisions([])
    assert not reopened.has_decision("t1")
    assert [d.txid for d in reopened.decisions()] == ["t2"]


def test_closed_storage_refuses_writes(make_storage):
    storage = make_storage()
    storage.close()
    with pytest.raises(RuntimeError, match="closed"):
        log_prepared(storage, "t1", {"a": "1"}, "c0", ["c0"])


# ---------------------------------------------------------- concurrency
def test_concurrent_log_prepared_all_succeed_and_are_durable(make_storage):
    storage = make_storage("s")
    threads_count = 32
    barrier = threading.Barrier(threads_count)
    errors = []

    def prepare(index):
        try:
            barrier.wait(timeout=5)
            for round_ in range(3):
                log_prepared(storage, f"t{index}-{round_}", {f"k{index}": f"v{round_}", "shared": None},
                                     "c0", ["c0", "p1"])
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=prepare, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    storage.close()
    reopened = make_storage("s")
    records = {record.txid: record for record in reopened.prepared()}
    assert set(records) == {f"t{i}-{r}" for i in range(threads_count) for r in range(3)}
    assert records["t7-2"].writes == {"k7": "v2", "shared": None}
