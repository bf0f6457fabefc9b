"""Linearizability checker: hand-made histories with known verdicts, the
History recorder, and large random histories linearizable by construction."""
import itertools
import math
import random
import threading

import pytest

from support.linearizability import (
    CheckResult,
    History,
    Operation,
    check_history,
    check_key,
)


def put(value, start, end, key="k", client=""):
    return Operation(key, "put", value, start, end, client)


def delete(start, end, key="k", client=""):
    return Operation(key, "delete", None, start, end, client)


def get(value, start, end, key="k", client=""):
    return Operation(key, "get", value, start, end, client)


def assert_ok(result):
    assert isinstance(result, CheckResult)
    assert result.ok, result.explanation


def assert_rejected(result, *mentions):
    assert not result.ok
    for mention in mentions:
        assert mention in result.explanation, result.explanation


# --- sequential and concurrent histories -------------------------------------------

def test_empty_history_is_linearizable():
    assert_ok(check_key([]))
    assert_ok(check_history([]))


def test_sequential_history_is_linearizable():
    ops = [put("a", 0, 1), get("a", 2, 3), put("b", 4, 5), get("b", 6, 7),
           delete(8, 9), get(None, 10, 11), put("a", 12, 13), get("a", 14, 15)]
    assert_ok(check_key(ops))


def test_order_of_the_input_does_not_matter():
    ops = [put("a", 0, 1), get("a", 2, 3), put("b", 4, 5), get("b", 6, 7)]
    assert_ok(check_key(list(reversed(ops))))


def test_stale_read_after_a_completed_write_is_rejected():
    ops = [put("a", 0, 1, client="w"), put("b", 2, 3, client="w"), get("a", 4, 5, client="r")]
    result = check_key(ops)
    assert_rejected(result, "get('k') -> 'a' by r", "overwritten by put('k', 'b') by w")
    assert result.key == "k"


def test_read_of_a_value_never_written_is_rejected():
    assert_rejected(check_key([put("a", 0, 1), get("z", 2, 3, client="r")]),
                    "get('k') -> 'z' by r", "never written")


def test_read_before_the_write_was_invoked_is_rejected():
    assert_rejected(check_key([get("a", 0, 1), put("a", 2, 3)]), "get('k') -> 'a'",
                    "invoked after the get completed")


@pytest.mark.parametrize("seen", [None, "b"])
def test_get_overlapping_a_put_may_see_either_value(seen):
    assert_ok(check_key([put("b", 0, 10), get(seen, 1, 2)]))
    assert_ok(check_key([put("a", 0, 1), put("b", 2, 10), get(seen or "a", 3, 4)]))


def test_calls_and_returns_at_the_same_instant_count_as_concurrent():
    assert_ok(check_key([put("a", 0, 1), get("a", 1, 2)]))
    assert_ok(check_key([put("a", 0, 1), get(None, 1, 2)]))


def test_readers_cannot_see_values_in_an_impossible_order():
    # put("b") is still running when one reader sees 'b': it has taken effect
    # by then, so a later non-overlapping reader cannot see the older 'a'
    ops = [put("a", 0, 1), put("b", 2, 10), get("b", 3, 4, client="r1"),
           get("a", 5, 6, client="r2")]
    assert_rejected(check_key(ops), "get('k') -> 'a' by r2")


def test_overlapping_readers_may_see_the_switch_in_either_order():
    ops = [put("a", 0, 1), put("b", 2, 10), get("b", 3, 6), get("a", 4, 7)]
    assert_ok(check_key(ops))


# --- delete -----------------------------------------------------------------------

def test_delete_makes_the_key_absent():
    assert_ok(check_key([put("a", 0, 1), delete(2, 3), get(None, 4, 5)]))
    assert_rejected(check_key([put("a", 0, 1), delete(2, 3), get("a", 4, 5)]), "get('k') -> 'a'")


def test_absent_read_needs_a_delete_or_an_absent_start():
    assert_ok(check_key([get(None, 0, 1), put("a", 2, 3)]))
    assert_rejected(check_key([get(None, 0, 1)], initial="x"), "absent", "never deleted")


def test_delete_overlapping_a_get_may_or_may_not_be_seen():
    assert_ok(check_key([put("a", 0, 1), delete(2, 10), get("a", 3, 4)]))
    assert_ok(check_key([put("a", 0, 1), delete(2, 10), get(None, 3, 4)]))


# --- unknown outcomes ---------------------------------------------------------------

def test_unknown_write_that_took_effect():
    assert_ok(check_key([put("a", 0, None), get("a", 5, 6)]))
    assert_ok(check_key([put("a", 0, None), get(None, 1, 2), get("a", 5, 6)]))


def test_unknown_write_that_did_not_take_effect():
    assert_ok(check_key([put("a", 0, None), get(None, 5, 6)]))
    assert_ok(check_key([put("a", 0, 1), delete(2, None), get("a", 5, 6), get("a", 7, 8)]))


def test_unknown_write_may_take_effect_long_after_its_invocation():
    assert_ok(check_key([put("a", 0, None), put("b", 1, 2), get("b", 3, 4), get("a", 5, 6)]))
    assert_ok(check_key([put("a", 0, 1), delete(2, None), get(None, 5, 6)]))


def test_unknown_write_takes_effect_at_most_once():
    ops = [put("a", 0, None), get("a", 1, 2), put("b", 3, 4), get("a", 5, 6, client="r")]
    assert_rejected(check_key(ops), "get('k') -> 'a' by r")


def test_unknown_write_cannot_be_unseen():
    ops = [put("a", 0, None), get("a", 1, 2), get(None, 3, 4, client="r")]
    assert_rejected(check_key(ops), "get('k') -> absent by r")


def test_unknown_write_cannot_be_seen_before_it_was_invoked():
    assert_rejected(check_key([get("a", 0, 1), put("a", 2, None)]), "get('k') -> 'a'")


def test_get_of_unknown_outcome_is_ignored():
    assert_ok(check_key([put("a", 0, 1), get("zzz", 2, None)]))


# --- keys and initial values --------------------------------------------------------

def test_one_bad_key_is_named():
    ops = [put("1", 0, 1, key="x"), get("1", 2, 3, key="x"),
           put("1", 0, 1, key="y"), put("2", 2, 3, key="y"), get("1", 4, 5, key="y"),
           put("1", 0, 1, key="z"), get("1", 2, 3, key="z")]
    result = check_history(ops)
    assert_rejected(result, "key 'y'", "get('y') -> '1'")
    assert result.key == "y"


def test_keys_are_independent_registers():
    ops = [put("1", 0, 1, key="x"), put("2", 2, 3, key="y"), get("1", 4, 5, key="x")]
    assert_ok(check_history(ops))


def test_initial_values():
    ops = [get("old", 0, 1, key="x"), put("new", 2, 3, key="x"), get(None, 0, 1, key="y")]
    assert_ok(check_history(ops, initial={"x": "old"}))
    assert_rejected(check_history(ops), "key 'x'", "never written")
    assert_ok(check_key([get("old", 0, 1)], initial="old"))
    assert_rejected(check_key([put("a", 0, 1), get("old", 2, 3)], initial="old"), "'a'")


def test_malformed_operations_are_refused():
    with pytest.raises(ValueError):
        check_key([put("a", 0, 1, key="x"), put("a", 0, 1, key="y")])
    with pytest.raises(ValueError):
        check_key([Operation("k", "increment", "1", 0, 1)])
    with pytest.raises(ValueError):
        check_key([put("a", 2, 1)])
    with pytest.raises(ValueError):
        check_key([put(None, 0, 1)])


# --- History recorder ---------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


def test_history_records_invocation_and_completion_times():
    history = History(clock=FakeClock())
    write = history.invoke("k", "put", "a", client="c1")
    read = history.invoke("k", "get", client="c2")
    history.complete(write)
    history.complete(read, "a")
    assert history.operations() == [Operation("k", "put", "a", 1.0, 3.0, "c1"),
                                    Operation("k", "get", "a", 2.0, 4.0, "c2")]


def test_history_fail_drops_and_unknown_leaves_the_outcome_open():
    history = History(clock=FakeClock())
    history.fail(history.invoke("k", "put", "aborted"))
    history.unknown(history.invoke("k", "put", "maybe"))
    history.unknown(history.invoke("k", "get"))
    history.unknown(history.invoke("k", "delete"))
    ops = history.operations()
    assert [(op.kind, op.value, op.completed) for op in ops] == [
        ("put", "maybe", None), ("delete", None, None)]


def test_history_counts_operations_in_progress_as_unknown():
    history = History(clock=FakeClock())
    history.invoke("k", "put", "a")
    history.invoke("k", "get")
    assert [(op.kind, op.completed) for op in history.operations()] == [("put", None)]


def test_history_returns_copies_and_refuses_a_second_outcome():
    history = History(clock=FakeClock())
    token = history.invoke("k", "put", "a")
    before = history.operations()
    history.complete(token)
    assert before[0].completed is None
    with pytest.raises(KeyError, match="already finished"):
        history.complete(token)
    with pytest.raises(KeyError, match="unknown"):
        history.fail(12345)
    with pytest.raises(ValueError):
        history.invoke("k", "swap", "a")  # not a kind it knows


def test_history_recorded_by_threads_against_a_linearizable_store():
    store, store_lock = {}, threading.Lock()
    history = History()
    values = itertools.count()

    def client(name, seed):
        rng = random.Random(seed)
        for _ in range(150):
            key = rng.choice("xyz")
            kind = rng.choice(("put", "put", "delete", "get", "get"))
            value = f"{name}-{next(values)}" if kind == "put" else None
            token = history.invoke(key, kind, value, client=name)
            with store_lock:
                if kind == "put":
                    store[key] = value
                elif kind == "delete":
                    store.pop(key, None)
                else:
                    value = store.get(key)
            history.complete(token, value)

    threads = [threading.Thread(target=client, args=(f"c{i}", i)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ops = history.operations()
    assert len(ops) == 8 * 150
    assert_ok(check_history(ops, timeout=5))


# --- small random histories, against brute force ------------------------------------

def linearizable_by_brute_force(ops, initial):
    """Try every order of the completed ops plus every subset of the unknown writes."""
    unknown = [op for op in ops if op.completed is None and op.kind != "get"]
    known = [op for op in ops if op.completed is not None]

    def end(op):
        return math.inf if op.completed is None else op.completed

    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            for order in itertools.permutations(known + list(chosen)):
                if any(end(later) < op.invoked
                       for n, op in enumerate(order) for later in order[n + 1:]):
                    continue
                state = initial
                for op in order:
                    if op.kind == "get" and op.value != state:
                        break
                    if op.kind != "get":
                        state = op.value
                else:
                    return True
    return False


def test_small_random_histories_agree_with_brute_force():
    rng = random.Random(5)
    verdicts = set()
    for _ in range(400):
        ops = []
        for _ in range(rng.randint(1, 5)):
            kind = rng.choice(("put", "delete", "get", "get"))
            value = rng.choice(("a", "b", None) if kind == "get" else ("a", "b"))
            start = rng.randint(0, 6)
            end = None if rng.random() < 0.2 else start + rng.randint(0, 3)
            ops.append(Operation("k", kind, None if kind == "delete" else value, start, end))
        initial = rng.choice((None, "a"))
        expected = linearizable_by_brute_force(ops, initial)
        assert check_key(ops, initial).ok == expected, (ops, initial)
        verdicts.add(expected)
    assert verdicts == {True, False}


# --- large random histories ---------------------------------------------------------

def simulate(rng, count=2000, clients=8, key="k", unknown_rate=0.02):
    """A history linearizable by construction: each operation takes effect on a
    sequential register at a random point between its invocation and completion;
    the clients' operations overlap freely. Some writes have unknown outcomes,
    half of which took effect."""
    timings = []
    for client in range(clients):
        now = rng.uniform(0.0, 0.002)
        for _ in range(count // clients):
            point = now + rng.expovariate(1000.0)
            completed = point + rng.expovariate(1000.0)
            timings.append((point, now, completed, f"c{client}"))
            now = completed + rng.expovariate(2000.0)
    timings.sort()
    register, ops = None, []
    for n, (_, invoked, completed, client) in enumerate(timings):
        kind = rng.choices(("put", "delete", "get"), weights=(45, 10, 45))[0]
        value = f"v{n}" if kind == "put" else None
        if kind == "get":
            value = register
        elif rng.random() < unknown_rate:
            completed = None
            if rng.random() < 0.5:
                register = value
        else:
            register = value
        ops.append(Operation(key, kind, value, invoked, completed, client))
    rng.shuffle(ops)
    return ops


@pytest.fixture
def large_history():
    return simulate(random.Random(20240601))


def test_large_linearizable_history_is_accepted(large_history):
    assert sum(op.completed is None for op in large_history) > 5
    assert_ok(check_key(large_history, timeout=5))


def test_large_history_with_a_read_of_a_never_written_value_is_rejected(large_history):
    reads = [op for op in large_history if op.kind == "get"]
    reads[len(reads) // 2].value = "never-written"
    assert_rejected(check_key(large_history, timeout=5), "-> 'never-written'", "never written")


def test_large_history_with_a_read_of_an_overwritten_value_is_rejected(large_history):
    # a read returning the value of a put that was overwritten (by a completed
    # write invoked after the put completed) before the read was invoked
    done = sorted((op for op in large_history if op.completed is not None and op.kind != "get"),
                  key=lambda op: op.invoked)
    reads = sorted((op for op in large_history if op.kind == "get"), key=lambda op: op.invoked)
    read = reads[len(reads) // 2]
    stale = next(old for old in reversed(done) if old.kind == "put" and any(
        old.completed < newer.invoked and newer.completed < read.invoked for newer in done))
    read.value, read.client = stale.value, "stale-reader"
    assert_rejected(check_key(large_history, timeout=5), f"-> {stale.value!r} by stale-reader")


def test_large_history_followed_by_a_new_old_inversion_is_rejected(large_history):
    # only the search finds this one: no write of 'x' ended before the last get
    end = max(op.completed for op in large_history if op.completed is not None) + 1.0
    large_history += [put("marker", end, end + 1), put("x", end + 2, end + 10),
                      get("x", end + 3, end + 4), get("marker", end + 5, end + 6, client="late")]
    assert_rejected(check_key(large_history, timeout=5),
                    "no linearization lets get('k') -> 'marker' by late", "hold 'x'")


def test_large_multi_key_history_names_the_bad_key():
    rng = random.Random(7)
    ops = [op for key in "abc" for op in simulate(rng, count=600, key=key)]
    assert_ok(check_history(ops, timeout=5))
    next(op for op in ops if op.key == "b" and op.kind == "get").value = "bogus"
    result = check_history(ops, timeout=5)
    assert_rejected(result, "key 'b'")
    assert result.key == "b"


def test_timeout_is_never_reported_as_success(large_history):
    result = check_key(large_history, timeout=0)
    assert_rejected(result, "timed out")


# --- compare-and-set -------------------------------------------------------------------

def cas(expected, value, start, end, key="k", client=""):
    return Operation(key, "cas", value, start, end, client, expected)


def test_a_cas_takes_effect_only_where_the_register_holds_what_it_expects():
    assert_ok(check_key([put("1", 0, 1), cas("1", "2", 2, 3), get("2", 4, 5)]))
    assert_ok(check_key([cas(None, "1", 0, 1), get("1", 2, 3)]))  # absent at the start
    assert_rejected(check_key([put("3", 0, 1), cas("1", "2", 2, 3)]), "cas('k', '1' -> '2')")


def test_two_concurrent_cas_of_the_same_value_cannot_both_succeed():
    assert_rejected(check_key([put("0", 0, 1), cas("0", "1", 2, 5), cas("0", "2", 3, 6)]))
    # one after the other, each expecting what the other wrote: fine
    assert_ok(check_key([put("0", 0, 1), cas("0", "1", 2, 5), cas("1", "2", 3, 6), get("2", 7, 8)]))


def test_a_failed_compare_is_a_read_of_what_it_found():
    history = History(clock=iter(range(100)).__next__)
    history.complete(history.invoke("k", "put", "1"))
    token = history.invoke("k", "cas", "3", expected="2")
    history.compare_failed(token, "1")
    assert_ok(check_history(history.operations()))
    stale = History(clock=iter(range(100)).__next__)
    stale.complete(stale.invoke("k", "put", "1"))
    stale.compare_failed(stale.invoke("k", "cas", "3", expected="2"), "0")  # found a value never written
    assert_rejected(check_history(stale.operations()), "never written")


def test_a_cas_of_unknown_outcome_may_have_taken_effect_or_not():
    assert_ok(check_key([put("0", 0, 1), cas("0", "1", 2, None), get("1", 5, 6)]))
    assert_ok(check_key([put("0", 0, 1), cas("0", "1", 2, None), get("0", 5, 6)]))
