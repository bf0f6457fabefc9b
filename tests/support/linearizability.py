"""Linearizability checking of key-value histories recorded by clients.

A history is linearizable when every operation can be given a single point in
time, between its invocation and its completion, such that the operations,
applied one by one in that order to a plain sequential register per key
(``put`` sets the value, ``delete`` removes it, ``get`` returns it, ``cas``
sets it only where it holds the expected value: a compare that failed is a
``get`` of what it found), return
exactly what the clients observed. This is the strongest single-object
guarantee a replicated store can offer, and checking it catches stale reads,
lost writes and reads of values that were never written, which per-operation
assertions in tests miss. The search is the algorithm of Wing & Gong ("Testing
and verifying concurrent objects", 1993) with the memoisation of Lowe
("Testing for linearizability", 2017), as implemented by Knossos and
Porcupine; a quick scan first names plainly stale or never-written reads.
Keys are independent registers, so each key is checked on its own
(linearizability is compositional). A write whose outcome is unknown may have
taken effect at any time after its invocation, or never: the search may skip
it.
"""
from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

PUT, DELETE, GET, CAS = "put", "delete", "get", "cas"
KINDS = (PUT, DELETE, GET, CAS)

#: how many search steps run between two looks at the clock
_CLOCK_EVERY = 1024


@dataclass
class Operation:
    """One client operation on one key.

    ``value`` is what a put wrote, or what a get returned (None: the key was
    absent); it is None for a delete. ``completed`` is None when the outcome
    is unknown: the operation may or may not have taken effect.
    """

    key: str
    kind: str
    value: Optional[str]
    invoked: float
    completed: Optional[float]
    client: str = ""
    #: a cas: the value the key must hold for it to write ``value`` (None: absent)
    expected: Optional[str] = None


@dataclass(frozen=True)
class CheckResult:
    """Verdict of a check: ``key`` names the first key found not linearizable."""

    ok: bool
    key: Optional[str] = None
    explanation: str = ""


class History:
    """Thread-safe recorder of the operations clients run, for :func:`check_history`.

    Call :meth:`invoke` just before sending a request, then exactly one of
    :meth:`complete`, :meth:`unknown` or :meth:`fail` once its fate is known.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._ops: Dict[int, Operation] = {}
        self._pending: Set[int] = set()

    def invoke(self, key: str, kind: str, value: Optional[str] = None, client: str = "",
               expected: Optional[str] = None) -> int:
        """Record the start of an operation; returns the token for its outcome."""
        _check_kind(kind)
        if kind == PUT and value is None:
            raise ValueError("a put needs the value it writes")
        with self._lock:
            token = next(self._tokens)
            self._ops[token] = Operation(key, kind, value if kind in (PUT, CAS) else None,
                                         self._clock(), None, client, expected)
            self._pending.add(token)
        return token

    def complete(self, token: int, result_value: Optional[str] = None) -> None:
        """The operation succeeded; for a get, ``result_value`` is what it read."""
        with self._lock:
            op = self._ops[self._finish(token)]
            op.completed = self._clock()
            if op.kind == GET:
                op.value = result_value

    def compare_failed(self, token: int, actual: Optional[str]) -> None:
        """A cas whose compare failed: it wrote nothing and read ``actual``, as a get does."""
        with self._lock:
            op = self._ops[self._finish(token)]
            op.kind, op.value, op.expected, op.completed = GET, actual, None, self._clock()

    def unknown(self, token: int) -> None:
        """The outcome is unknown (e.g. OutcomeUnknown): a write may or may not have happened.

        A get of unknown outcome has no effect on the store, so it is dropped.
        """
        with self._lock:
            if self._ops[self._finish(token)].kind == GET:
                del self._ops[token]

    def fail(self, token: int) -> None:
        """The operation definitely did not happen (e.g. TransactionAborted): drop it."""
        with self._lock:
            del self._ops[self._finish(token)]

    def operations(self) -> List[Operation]:
        """Copies of the recorded operations, in invocation order.

        An operation still in progress counts as one of unknown outcome (its
        client may have crashed): a write is kept with ``completed=None``, a
        get is left out.
        """
        with self._lock:
            return [replace(op) for token, op in self._ops.items()
                    if not (token in self._pending and op.kind == GET)]

    def _finish(self, token: int) -> int:
        try:
            self._pending.remove(token)
        except KeyError:
            state = "already finished" if token in self._ops else "unknown"
            raise KeyError(f"operation token {token!r} is {state}") from None
        return token


def check_history(ops: Iterable[Operation], initial: Optional[Dict[str, Optional[str]]] = None,
                  timeout: float = 30.0) -> CheckResult:
    """Check a multi-key history, one key at a time (in sorted order).

    ``initial`` maps keys to their value before the history (absent keys
    start absent). Stops at the first key that is not linearizable; a check
    that runs out of ``timeout`` seconds (for the whole history) fails too.
    """
    deadline = time.monotonic() + timeout
    initial = initial or {}
    by_key: Dict[str, List[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key in sorted(by_key):
        result = _check_key(key, by_key[key], initial.get(key), deadline, timeout)
        if not result.ok:
            return result
    count = sum(len(key_ops) for key_ops in by_key.values())
    return CheckResult(True, None, f"linearizable: {count} operations on {len(by_key)} keys")


def check_key(ops: Sequence[Operation], initial: Optional[str] = None,
              timeout: float = 30.0) -> CheckResult:
    """Check the history of a single key, whose value is ``initial`` before it."""
    keys = {op.key for op in ops}
    if len(keys) > 1:
        raise ValueError(f"check_key needs the operations of one key, got {sorted(keys)}")
    key = keys.pop() if keys else None
    return _check_key(key, ops, initial, time.monotonic() + timeout, timeout)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"operation kind must be one of {KINDS}, got {kind!r}")


def _validated(ops: Iterable[Operation]) -> List[Operation]:
    """Check that ``ops`` are well formed; leave out gets of unknown outcome (no effect)."""
    kept = []
    for op in ops:
        _check_kind(op.kind)
        if op.kind == PUT and op.value is None:
            raise ValueError(f"a put needs the value it writes: {op}")
        if op.completed is not None and op.completed < op.invoked:
            raise ValueError(f"operation completed before it was invoked: {op}")
        if op.completed is not None or op.kind != GET:
            kept.append(op)
    return kept


def _deadlines(ops: Sequence[Operation]) -> Dict[int, float]:
    """The latest useful linearization time of each operation, by index.

    A completed operation must take effect by its completion. A write of
    unknown outcome may also never take effect; and if it does, but after
    every get that returned its value, dropping it leaves a valid
    linearization (no get can sit between it and the next write). So it
    either happens before the last of those gets completes, or never. One
    whose value no get returned after its invocation is left out altogether.
    """
    last_read: Dict[Optional[str], float] = {}
    for op in ops:
        seen = _observed(op)
        if seen is not _NOTHING and op.completed is not None:  # a completed cas read its expected value too
            last_read[seen] = max(op.completed, last_read.get(seen, -math.inf))
    deadlines = {}
    for i, op in enumerate(ops):
        if op.completed is not None:
            deadlines[i] = op.completed
        elif last_read.get(_written(op), -math.inf) >= op.invoked:
            deadlines[i] = last_read[_written(op)]
    return deadlines


#: ``_observed`` of an operation that reads nothing
_NOTHING = object()


def _observed(op: Operation) -> object:
    """The value an operation saw in the register: a get's result, a cas's expected value."""
    if op.kind == GET:
        return op.value
    if op.kind == CAS:
        return op.expected
    return _NOTHING


def _check_key(key: Optional[str], ops: Iterable[Operation], initial: Optional[str],
               deadline: float, timeout: float) -> CheckResult:
    ops = _validated(ops)
    origin = min((op.invoked for op in ops), default=0.0)
    impossible = _impossible_read(ops, initial, origin)
    if impossible:
        return CheckResult(False, key, f"key {key!r} is not linearizable: {impossible}")
    deadlines = _deadlines(ops)
    searched = [ops[i] for i in deadlines]
    try:
        failure = _search(searched, list(deadlines.values()), initial, deadline)
    except TimeoutError:
        return CheckResult(False, key, f"key {key!r}: the linearizability check timed out after "
                                       f"{timeout:g} s ({len(ops)} operations); result unknown")
    if failure is None:
        return CheckResult(True, key, f"linearizable: {len(ops)} operations on key {key!r}")
    return CheckResult(False, key, f"key {key!r} is not linearizable: "
                                   f"{failure.explain(searched, origin)}")


def _impossible_read(ops: Sequence[Operation], initial: Optional[str], origin: float) -> str:
    """Explain why a get cannot be linearized, for gets that plainly cannot be.

    A get needs a write of the value it returned (or the initial value) that
    was invoked before the get completed, and not surely overwritten before
    the get was invoked: by a completed write of another value, invoked after
    that write completed. This finds stale and never-written reads at once,
    with a precise reason; the search finds the subtler violations.
    """
    writes = [op for op in ops if op.kind != GET]
    sources: Dict[Optional[str], List[Optional[Operation]]] = {initial: [None]}
    for op in writes:
        sources.setdefault(_written(op), []).append(op)
    overwrites = _Overwrites(writes)
    for get in ops:
        if get.kind != GET or get.completed is None:
            continue
        reasons = []
        for source in sources.get(get.value, ()):
            if source is not None and source.invoked > get.completed:
                reasons.append(f"{_describe(source, origin)} was invoked after the get completed")
                continue
            after = -math.inf if source is None else \
                math.inf if source.completed is None else source.completed
            overwrite = overwrites.first(after, get.invoked, get.value)
            if overwrite is None:
                break
            what = "the initial value" if source is None else _describe(source, origin)
            reasons.append(f"{what} was overwritten by {_describe(overwrite, origin)} "
                           f"before the get was invoked")
        else:
            if not reasons:
                reasons.append("that value was never written to the key" if get.value is not None
                               else "the key was never deleted")
            if len(reasons) > 3:
                reasons[3:] = [f"and {len(reasons) - 3} more"]
            return f"{_describe(get, origin)} cannot have read {_show(get.value)}: {'; '.join(reasons)}"
    return ""


def _written(op: Operation) -> Optional[str]:
    return op.value if op.kind in (PUT, CAS) else None


class _Overwrites:
    """Finds the completed write that completes first among those invoked after a time."""

    def __init__(self, writes: Iterable[Operation]) -> None:
        done = sorted((op for op in writes if op.completed is not None), key=lambda op: op.invoked)
        self._invoked = [op.invoked for op in done]
        # _firsts[i]: of done[i:], the first to complete and the first of another value
        self._firsts: List[tuple] = [()] * (len(done) + 1)
        for i in range(len(done) - 1, -1, -1):
            merged = sorted((done[i], *self._firsts[i + 1]), key=lambda op: op.completed)
            other = next((op for op in merged if _written(op) != _written(merged[0])), None)
            self._firsts[i] = (merged[0],) if other is None else (merged[0], other)

    def first(self, after: float, before: float, value: Optional[str]) -> Optional[Operation]:
        """A completed write of another value than ``value``, within (after, before), if any."""
        for op in self._firsts[bisect.bisect_right(self._invoked, after)]:
            if _written(op) != value:
                return op if op.completed < before else None
        return None


@dataclass
class _Failure:
    """Where the search got stuck furthest in time, to explain a rejection."""

    op: int = -1
    position: int = -1
    states: Set[Optional[str]] = field(default_factory=set)
    before: Sequence[int] = ()

    def explain(self, ops: Sequence[Operation], origin: float) -> str:
        if self.op < 0:
            return "no linearization exists"
        held = " or ".join(sorted(_show(state) for state in self.states))
        text = (f"no linearization lets {_describe(ops[self.op], origin)} take effect before "
                f"it completed; the register could only hold {held} by then")
        if self.before:
            text += " (the longest partial linearization ends with " + \
                ", then ".join(_describe(ops[i], origin) for i in self.before) + ")"
        return text


#: how an operation was lifted: a choice among others, a get that could read the
#: register (never worth undoing alone), an unknown write skipped at its deadline
_CHOSEN, _READ, _SKIPPED = 0, 1, 2
#: stands for every value that no get returned, in the search cache
_UNREAD = object()


def _search(ops: Sequence[Operation], deadlines: Sequence[float], initial: Optional[str],
            timeout_at: float) -> Optional[_Failure]:
    """Wing & Gong's search with Lowe's cache; returns None when linearizable.

    The call and return events of all operations (a return at the op's
    deadline) form a doubly linked list in time order (arrays ``nxt``/``prv``;
    entry 0 is the head, the last one the tail). The calls before the first
    return are the operations that may take effect next; linearizing one
    "lifts" both of its events out of the list. Reaching a return means its
    operation was not linearized in time: a write of unknown outcome is then
    skipped (lifted without effect), anything else undoes the last choice.

    A configuration (set of lifted ops, register value) already explored is
    not explored again (Lowe's cache); in it, all values that no get returned
    count as one, as nothing can tell them apart. And a pending get that
    returned the current value is linearized at once, without trying the
    alternatives: any linearization of the rest can be reordered to put that
    get first (nothing pending had to precede it), so if this fails, so does
    everything else.
    """
    n = len(ops)
    events = sorted([(op.invoked, 0, i) for i, op in enumerate(ops)]
                    + [(at, 1, i) for i, at in enumerate(deadlines)])
    head, tail = 0, 2 * n + 1
    op_of = [-1] * (tail + 1)
    match = [0] * (tail + 1)  # call entry -> its return entry; 0 for returns
    call_entry = [0] * n
    for entry, (_, is_return, i) in enumerate(events, start=1):
        op_of[entry] = i
        if is_return:
            match[call_entry[i]] = entry
        else:
            call_entry[i] = entry
    nxt = list(range(1, tail + 2))
    prv = list(range(-1, tail))
    kinds = [op.kind for op in ops]
    values = [op.value for op in ops]
    expected = [op.expected for op in ops]
    optional = [op.completed is None for op in ops]
    read = {_observed(op) for op in ops if _observed(op) is not _NOTHING}

    failure = _Failure()
    cache = set()
    stack = []  # (call entry, register value before it, how it was lifted)
    lifted = 0  # bitmask of the ops linearized or skipped
    state = initial
    entry, fresh = head, True  # fresh: a new configuration, look for a readable get
    steps = 0
    while nxt[head] != tail:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and time.monotonic() > timeout_at:
            raise TimeoutError
        if fresh:
            fresh, call, entry = False, 0, nxt[head]
            while match[entry]:
                i = op_of[entry]
                if kinds[i] == GET and values[i] == state:
                    call, new_state, how = entry, state, _READ
                    break
                entry = nxt[entry]
            if not call:
                entry = nxt[head]
                continue
        else:
            i = op_of[entry]
            if match[entry]:  # a call; only writes are left to try here
                if kinds[i] == GET or (kinds[i] == CAS and state != expected[i]):
                    entry = nxt[entry]
                    continue
                call, new_state, how = entry, _written(ops[i]), _CHOSEN
            elif optional[i]:  # an unknown write at its deadline: it may never have happened
                call, new_state, how = call_entry[i], state, _SKIPPED
            else:  # a return whose operation is not linearized: stuck
                call = 0
                if entry > failure.position:
                    failure = _Failure(i, entry, {state}, _last_linearized(stack, op_of))
                elif entry == failure.position and len(failure.states) < 5:
                    failure.states.add(state)
        if call:
            seen = (lifted | (1 << i), new_state if new_state in read else _UNREAD)
            if seen not in cache:
                cache.add(seen)
                stack.append((call, state, how))
                state, lifted, fresh = new_state, seen[0], True
                ret = match[call]  # lift
                nxt[prv[call]], prv[nxt[call]] = nxt[call], prv[call]
                nxt[prv[ret]], prv[nxt[ret]] = nxt[ret], prv[ret]
                continue
            if how == _CHOSEN:
                entry = nxt[call]
                continue
        while True:  # backtrack: undo everything up to the last choice
            if not stack:
                return failure
            call, state, how = stack.pop()
            lifted ^= 1 << op_of[call]
            ret = match[call]  # unlift
            nxt[prv[ret]] = prv[nxt[ret]] = ret
            nxt[prv[call]] = prv[nxt[call]] = call
            if how == _CHOSEN:
                break
        entry = nxt[call]
    return None


def _last_linearized(stack: Sequence[tuple], op_of: Sequence[int], count: int = 3) -> List[int]:
    """The last ``count`` operations linearized (not skipped) on the search stack."""
    last = []
    for call, _, how in reversed(stack):
        if how != _SKIPPED:
            last.append(op_of[call])
            if len(last) == count:
                break
    return last[::-1]


def _show(value: Optional[str]) -> str:
    return "absent" if value is None else repr(value)


def _describe(op: Operation, origin: float) -> str:
    if op.kind == PUT:
        what = f"put({op.key!r}, {op.value!r})"
    elif op.kind == CAS:
        what = f"cas({op.key!r}, {_show(op.expected)} -> {_show(op.value)})"
    elif op.kind == DELETE:
        what = f"delete({op.key!r})"
    else:
        what = f"get({op.key!r}) -> {_show(op.value)}"
    by = f" by {op.client}" if op.client else ""
    end = "outcome unknown" if op.completed is None else f"+{op.completed - origin:.6f}s"
    return f"{what}{by} [+{op.invoked - origin:.6f}s .. {end}]"
