"""ops: what a committed write does to a key, and which buffered writes a copy lacks."""
from rmi_kv.core import ops


def test_a_put_bumps_the_version_and_adds_its_hash():
    first = ops.write("a", None, "1")
    assert first == ops.Change(("1", 1), ops.entry_hash("a", "1", 1), 1)
    second = ops.write("a", first.entry, "2")
    assert second.entry == ("2", 2)
    assert second.digest_delta == ops.entry_hash("a", "2", 2) - ops.entry_hash("a", "1", 1)
    assert second.live_delta == 0


def test_a_delete_leaves_a_tombstone_and_takes_the_hash_out():
    change = ops.write("a", ("1", 3), None)
    assert change == ops.Change((None, 4), -ops.entry_hash("a", "1", 3), -1)
    assert ops.write("a", (None, 4), "back").entry == ("back", 5)  # versions keep growing


def test_deleting_an_absent_or_deleted_key_changes_nothing():
    assert ops.write("a", None, None) is None
    assert ops.write("a", (None, 4), None) is None


def test_replace_stores_a_copied_entry_as_it_is():
    assert ops.replace("a", None, ("x", 7)) == ops.Change(("x", 7), ops.entry_hash("a", "x", 7), 1)
    assert ops.replace("a", ("x", 7), (None, 8)) == ops.Change((None, 8), -ops.entry_hash("a", "x", 7), -1)
    assert ops.replace("a", (None, 8), (None, 8)).digest_delta == 0


def test_the_digest_sums_the_changes_whatever_the_order():
    one = [ops.write("a", None, "1"), ops.write("b", None, "2")]
    total = sum(change.digest_delta for change in one)
    assert ops.digest_hex(total) == ops.digest_hex(sum(change.digest_delta for change in reversed(one)))
    assert ops.digest_hex(total - total) == "0" * 64
    assert len(ops.digest_hex(-1)) == 64  # negative sums wrap modulo 2**256


def test_entry_hash_is_unambiguous():
    assert ops.entry_hash("ab", "c", 1) != ops.entry_hash("a", "bc", 1)
    assert ops.entry_hash("a", "1", 2) != ops.entry_hash("a", "12", 0)


def test_missing_from_copy_skips_what_the_copy_holds():
    buffered = [("t1", {"a": "1", "b": "1"}), ("t2", {"a": "2"}), ("t3", {"a": "3", "c": "3"})]
    # the copy holds a as t2 left it, b and c as no buffered transaction left them
    writers = {"a": "t2", "b": "old", "c": None}
    assert ops.missing_from_copy(buffered, writers.get) == [("t1", "b", "1"), ("t3", "a", "3"), ("t3", "c", "3")]


def test_missing_from_copy_of_a_copy_holding_every_buffered_write():
    buffered = [("t1", {"a": "1"}), ("t2", {"a": "2", "b": "2"})]
    assert ops.missing_from_copy(buffered, {"a": "t2", "b": "t2"}.get) == []
    assert ops.missing_from_copy([], {}.get) == []
