"""Backups on SQLite: a read snapshot is stable while writes go on, the snapshot
file round-trips and refuses damage, and a restore installs exactly the file."""
from __future__ import annotations

import json

import pytest

from rmi_kv.core import ops
from rmi_kv.errors import SnapshotDamaged
from rmi_kv.storage import snapshot_file
from rmi_kv.storage.snapshot_file import SnapshotWriter
from rmi_kv.storage.sqlite import Storage

from support.storage_helpers import apply_commit


@pytest.fixture
def storage(tmp_path):
    opened = Storage(tmp_path / "replica.sqlite3", durable=False)
    yield opened
    opened.close()


def digest_of(entries) -> str:
    return ops.digest_hex(sum(ops.entry_hash(key, value, version) for key, value, version in entries))


def every_entry(snapshot, page: int = 2) -> list:
    found, after = [], None
    while True:
        entries, more = snapshot.page(after, page)
        found += entries
        if not more:
            return found
        after = entries[-1][0]


def test_a_snapshot_keeps_its_view_while_writes_go_on(storage):
    apply_commit(storage, "replica1:0000000a:1:1", {"a": "1", "b": "2", "c": "3", "gone": "x"})
    apply_commit(storage, "replica1:0000000a:2:2", {"gone": None})
    snapshot = storage.open_snapshot()
    try:
        apply_commit(storage, "replica1:0000000a:3:3", {"a": "changed", "d": "new", "b": None})
        entries = every_entry(snapshot)
        assert entries == [("a", "1", 1), ("b", "2", 1), ("c", "3", 1)]  # live entries only, as taken
        assert (snapshot.live_keys, snapshot.digest) == (3, digest_of(entries))
        assert storage.digest != snapshot.digest and storage.get("a") == ("changed", 2)
    finally:
        snapshot.close()
    with pytest.raises(ValueError):
        snapshot.page(None, 10)


def test_a_page_stops_near_its_byte_budget_but_holds_one_entry(storage):
    apply_commit(storage, "replica1:0000000a:1:1", {"a": "x" * 100, "b": "y" * 100, "c": "z"})
    snapshot = storage.open_snapshot()
    try:
        assert snapshot.page(None, 10, max_bytes=50) == ([("a", "x" * 100, 1)], True)
        assert snapshot.page(None, 10, max_bytes=203) == ([("a", "x" * 100, 1), ("b", "y" * 100, 1)], True)
        assert snapshot.page("b", 10) == ([("c", "z", 1)], False)
    finally:
        snapshot.close()


def write_file(path, entries, *, digest=None, keys=None):
    with SnapshotWriter(path, replica="replica2", taken_at=1700000000.5, keys=len(entries) if keys is None else keys,
                        digest=digest or digest_of(entries)) as writer:
        for entry in entries:
            writer.add(*entry)
        return writer.finish()


ENTRIES = [("a", "1", 1), ("b", "two words", 3), ("ключ", "значение ✓", 2)]


def test_the_file_round_trips_with_its_digest(tmp_path):
    path = tmp_path / "backup.snap"
    saved = write_file(path, ENTRIES)
    assert saved.ok and not snapshot_file.temporary_path(path).exists()
    header = json.loads(path.read_text("utf-8").splitlines()[0])
    assert header == {"format": "rmi_kv snapshot", "version": 1, "replica": "replica2", "taken_at": 1700000000.5,
                      "keys": 3, "digest": digest_of(ENTRIES)}
    info = snapshot_file.check(path)
    assert (info.keys, info.entries, info.digest, info.size) == (3, 3, digest_of(ENTRIES), path.stat().st_size)
    assert info.as_dict()["digest_ok"] is True
    assert list(snapshot_file.entries(path)) == ENTRIES


def test_a_copy_that_does_not_match_the_header_leaves_no_file(tmp_path):
    path = tmp_path / "backup.snap"
    with pytest.raises(SnapshotDamaged, match="nothing was saved"):
        write_file(path, ENTRIES, digest=digest_of(ENTRIES[:2]))
    assert not path.exists() and not snapshot_file.temporary_path(path).exists()
    path.write_text("an older file\n")
    with pytest.raises(SnapshotDamaged):
        write_file(path, ENTRIES, keys=2)
    assert path.read_text() == "an older file\n"  # a failed save leaves the file under the name as it was


@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines[:1] + ['["a", "1", 2]'] + lines[2:], "digest"),  # a version changed
    (lambda lines: lines[:-1], "digest"),  # cut: an entry lost
    (lambda lines: lines[:-1] + [lines[-1][:7]], "not JSON"),  # cut mid-line
    (lambda lines: lines[:1] + [lines[2], lines[1]] + lines[3:], "not in order"),
    (lambda lines: lines[:1] + ['["a", null, 1]'] + lines[2:], "not an entry"),
    (lambda lines: ['{"format": "something else"}'] + lines[1:], "header"),
    (lambda lines: [lines[0].replace('"version": 1', '"version": 9')] + lines[1:], "format version 9"),
    (lambda lines: [lines[0].replace('"keys": 3, ', "")] + lines[1:], "lacks keys"),
])
def test_a_damaged_or_foreign_file_is_refused(tmp_path, damage, message):
    path = tmp_path / "backup.snap"
    write_file(path, ENTRIES)
    path.write_text("\n".join(damage(path.read_text("utf-8").splitlines())) + "\n", "utf-8")
    with pytest.raises(SnapshotDamaged, match=message):
        snapshot_file.check(path)


def test_a_file_that_is_not_text_or_not_there_is_refused(tmp_path):
    binary = tmp_path / "binary.snap"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SnapshotDamaged, match="not"):
        snapshot_file.check(binary)
    with pytest.raises(SnapshotDamaged, match="cannot read"):
        snapshot_file.check(tmp_path / "missing.snap")


def test_a_restore_installs_the_entries_and_serves(storage, tmp_path):
    assert storage.created_now
    storage.restore(iter(ENTRIES), "restored-from-snapshot", digest_of(ENTRIES))
    assert (storage.digest, storage.live_keys) == (digest_of(ENTRIES), 3)
    assert storage.get("b") == ("two words", 3) and not storage.catching_up and not storage.created_now
    assert storage.verify().damage is None
    with pytest.raises(ValueError, match="not new and empty"):
        storage.restore(iter(ENTRIES), "restored-from-snapshot", digest_of(ENTRIES))


def test_a_restore_that_does_not_reach_the_digest_keeps_nothing(storage):
    with pytest.raises(ValueError, match="digest"):
        storage.restore(iter(ENTRIES), "restored-from-snapshot", digest_of(ENTRIES[:1]))
    assert (storage.live_keys, storage.get("a"), storage.created_now) == (0, None, True)
    assert storage.digest == ops.digest_hex(0)
