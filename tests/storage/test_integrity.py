"""Integrity of a replica's data: the start-up check of a database file (SQLite
only: it reads the file), the range summaries anti-entropy compares, and the
repair that puts a peer's entries in place (both engines)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from rmi_kv.core import ops
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.storage import integrity
from rmi_kv.storage.sqlite import Storage
from support.hostile_disk import change_behind_the_engine, scramble_pages


def fill(storage, count: int = 100, prefix: str = "key") -> dict:
    writes = {f"{prefix}-{index:03d}": f"value-{index:03d}" for index in range(count)}
    storage.commit_and_prepare([("t-fill", writes, None)], [])
    return writes


def recomputed(storage) -> str:
    entries = storage.range_entries(None, None, 1 << 30)
    return ops.digest_hex(sum(ops.entry_hash(k, v, n) for k, v, n, _ in entries if v is not None))


@pytest.fixture
def closed_database(tmp_path):
    """A database file with 100 entries, closed cleanly (its write-ahead log folded in)."""
    path = tmp_path / "replica.sqlite3"
    storage = Storage(path)
    fill(storage)
    storage.close()
    return path


# --------------------------------------------------------------- start-up check
def test_a_sound_database_passes_with_its_digest_recomputed(closed_database):
    damage, verification = integrity.check_file(str(closed_database))
    assert damage is None
    assert (verification.rows, verification.live) == (100, 100)
    assert verification.computed == verification.stored


def test_a_value_changed_in_place_is_found_by_the_digest(closed_database):
    data = bytearray(closed_database.read_bytes())
    at = data.find(b"value-050")
    data[at:at + 9] = b"value-666"  # same length: every page stays well-formed
    closed_database.write_bytes(bytes(data))
    assert sqlite3.connect(closed_database).execute("PRAGMA quick_check").fetchone() == ("ok",)
    damage, verification = integrity.check_file(str(closed_database))
    assert damage is not None and damage.where == "table kv"
    assert "differs from the stored one" in damage.what
    assert verification.computed != verification.stored


def test_random_bytes_in_every_page_are_found(closed_database):
    scramble_pages(closed_database, seed=7)
    damage, _ = integrity.check_file(str(closed_database))
    assert damage is not None
    assert damage.what and damage.where


def test_a_file_that_is_no_database_is_damage_not_a_crash(tmp_path):
    path = tmp_path / "replica.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    damage, verification = integrity.check_file(str(path))
    assert damage is not None and damage.where == "database file" and verification is None


@pytest.mark.parametrize("table, columns, row", [
    ("prepared", "txid, writes, coordinator, participants, created", ("t1", "{not json", "c0", '["c0", "p1"]', 1.0)),
    ("prepared", "txid, writes, coordinator, participants, created, reads", ("t2", "{}", "c0", '["c0"]', 1.0, "[1]")),
    ("outcomes", "txid, outcome, decided", ("t1", "maybe", 1.0)),
    ("decisions", "txid, participants, created", ("t1", '"not a list"', 1.0)),
])
def test_a_log_record_that_does_not_read_back_is_found(closed_database, table, columns, row):
    change_behind_the_engine(closed_database, f"INSERT INTO {table}({columns}) VALUES ({', '.join('?' * len(row))})",
                             *row)
    damage, _ = integrity.check_file(str(closed_database))
    assert damage is not None and damage.where == f"table {table}"


def test_a_database_from_before_guards_passes_the_check_and_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    storage = Storage(path)
    fill(storage, 5)
    storage.close()
    change_behind_the_engine(path, "ALTER TABLE prepared DROP COLUMN reads")  # as the engine wrote it before guards
    assert integrity.check_file(str(path))[0] is None
    reopened = Storage(path)
    try:
        reopened.commit_and_prepare([], [("t9", {"a": "1"}, "c0", ["c0", "p1"], ["g"])])
        assert reopened.prepared()[0].reads == ("g",)
    finally:
        reopened.close()


def test_a_count_that_does_not_parse_is_found(closed_database):
    change_behind_the_engine(closed_database, "UPDATE meta SET value = 'many' WHERE name = 'committed'")
    damage, _ = integrity.check_file(str(closed_database))
    assert damage is not None and damage.where == "table meta" and "committed" in damage.what


def test_an_ill_formed_entry_is_named(closed_database):
    change_behind_the_engine(closed_database, "UPDATE kv SET version = -3 WHERE key = 'key-007'")
    damage, _ = integrity.check_file(str(closed_database))
    assert damage is not None and "'key-007'" in damage.what and "version" in damage.what


def test_a_large_database_is_read_in_several_processes_with_the_same_result(closed_database, monkeypatch):
    alone = integrity.check_file(str(closed_database))[1]
    monkeypatch.setattr(integrity, "PARALLEL_ROWS", 10)
    shared = integrity.check_file(str(closed_database), workers=3)[1]
    assert (shared.rows, shared.live, shared.computed, shared.damage) == (alone.rows, alone.live, alone.computed, None)


def test_salvage_keeps_the_epoch_state_and_the_members(tmp_path):
    path = tmp_path / "replica.sqlite3"
    storage = Storage(path)
    storage.save_epoch_state({"number": 4, "members": ["a", "b", "c"], "promised": 5})
    storage.save_members({"a": ("PYRO:x@h:1", False), "d": (None, True)})
    storage.close()
    kept = integrity.salvage(str(path))
    assert kept["epoch_state"]["promised"] == 5
    assert kept["members"] == {"a": ("PYRO:x@h:1", False), "d": (None, True)}


# ------------------------------------------------------------ while running
@pytest.fixture
def sqlite_storage(tmp_path):
    """A SQLite engine (these tests change its file behind its back)."""
    storage = Storage(tmp_path / "live.sqlite3")
    yield storage
    storage.close()


def test_verify_finds_a_value_changed_behind_the_engine_and_adopting_makes_the_digest_the_datas(sqlite_storage):
    storage = sqlite_storage
    fill(storage)
    assert storage.verify().damage is None
    before = storage.digest
    # a hostile disk: the row changes, the kept digest does not
    change_behind_the_engine(storage._path, "UPDATE kv SET value = 'value-666' WHERE key = 'key-050'")
    found = storage.verify()
    assert found.damage is not None and found.stored == before and found.computed != before
    assert storage.adopt_data_digest() == (before, found.computed)
    assert storage.digest == found.computed == recomputed(storage)
    assert storage.verify().damage is None


def test_verify_paces_a_long_pass(sqlite_storage, monkeypatch):
    storage = sqlite_storage
    fill(storage, 50)
    monkeypatch.setattr(integrity, "PACE_ROWS", 10)
    calls = []
    assert storage.verify(lambda: calls.append(1)).damage is None
    assert len(calls) >= 5


# ------------------------------------------------- summaries, entries, repairs
def test_split_ranges_cover_the_range_and_add_up(make_storage):
    storage = make_storage()
    fill(storage, 100)
    storage.commit_and_prepare([("t-del", {"key-010": None}, None)], [])  # a tombstone is no live entry
    parts = storage.split_range(None, None, 16)
    assert integrity.consecutive((p.after, p.upto) for p in parts)
    assert parts[0].after is None and parts[-1].upto is None and len(parts) <= 16
    assert sum(p.live for p in parts) == storage.live_keys == 99
    total = sum(int(p.digest, 16) for p in parts) % ops.DIGEST_MODULUS
    assert ops.digest_hex(total) == storage.digest
    assert storage.summarize([(p.after, p.upto) for p in parts]) == parts


def test_a_closed_range_keeps_its_bounds(make_storage):
    storage = make_storage()
    fill(storage, 100)
    parts = storage.split_range("key-019", "key-059", 4)
    assert parts[0].after == "key-019" and parts[-1].upto == "key-059"
    assert sum(p.live for p in parts) == 40
    keys = [entry[0] for entry in storage.range_entries("key-019", "key-059", 1000)]
    assert keys[0] == "key-020" and keys[-1] == "key-059" and len(keys) == 40
    assert len(storage.range_entries("key-019", "key-059", 5)) == 5


def test_an_empty_store_is_one_empty_range(make_storage):
    storage = make_storage()
    assert [(p.after, p.upto, p.live) for p in storage.split_range(None, None, 16)] == [(None, None, 0)]


def test_a_repair_replaces_only_what_still_holds_the_entry_compared(make_storage):
    storage = make_storage()
    fill(storage, 10)
    storage.record_abort("t-lost")  # a commit this replica lost, recorded as aborted
    current = {entry[0]: entry[1:] for entry in storage.range_entries(None, None, 100)}
    done = storage.repair([
        ("key-001", current["key-001"], ("fixed", 9, "t-lost")),    # still as compared: replaced
        ("key-002", ("other", 1, "t-x"), ("ignored", 9, "t-y")),    # changed meanwhile: skipped
        ("key-003", current["key-003"], None),                      # absent at the majority: dropped
        ("key-new", None, ("new", 2, "t-new")),                     # missing here: added
    ])
    assert done == 3
    assert storage.get("key-001") == ("fixed", 9)
    assert storage.get("key-002") == ("value-002", 1)
    assert storage.get("key-003") is None and storage.get("key-new") == ("new", 2)
    assert storage.outcome("t-lost") == COMMIT  # its last writer committed
    assert storage.live_keys == 10 and storage.digest == recomputed(storage)


def test_a_repair_leaves_a_true_abort_alone(make_storage):
    storage = make_storage()
    fill(storage, 3)
    storage.record_abort("t-aborted")
    entry = storage.range_entries(None, None, 10)[0]
    storage.repair([(entry[0], entry[1:], ("v", 5, "t-other"))])
    assert storage.outcome("t-aborted") == ABORT


def test_the_integrity_record_is_kept(make_storage):
    storage = make_storage("kept")
    assert storage.integrity_record() == {}
    storage.save_integrity_record({"damage": [{"found_by": "start-up check"}]})
    assert json.loads(json.dumps(storage.integrity_record()))["damage"][0]["found_by"] == "start-up check"
