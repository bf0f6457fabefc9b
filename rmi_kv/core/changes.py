"""The change feed of one replica: the last committed changes, for watchers.

A bounded ring in memory (no network, no storage): every key a commit
applied here goes in as one ``Change`` with a sequence number. A watcher
holds a ``Cursor`` (this feed's ``boot`` id and the last sequence number it
saw) and asks ``since`` for what came after it, waiting a bounded time when
nothing did. A cursor of another boot (the replica restarted, or emptied its
data to copy it again) or one older than the ring says ``missed``: changes
may have gone by unseen, and the answer resumes from what the feed holds.

Appending costs O(1) per key and wakes nobody when nobody waits.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Optional

from rmi_kv.errors import InvalidRequest

#: how many changes a feed keeps by default
CAPACITY = 10_000
#: how often a waiting ``since`` asks whether its caller is still there
CHECK_EVERY = 0.25


class Change(NamedTuple):
    """One key's committed change: its new value, or None when it was deleted."""

    seq: int
    key: str
    value: Optional[str]
    txid: str
    committed_at: float

    def as_dict(self) -> dict:
        return {"seq": self.seq, "key": self.key, "value": self.value, "deleted": self.value is None,
                "txid": self.txid, "committed_at": self.committed_at}


@dataclass(frozen=True)
class Cursor:
    """Where a watcher is: the feed's boot id and the last sequence number it saw."""

    boot: str
    seq: int

    def as_dict(self) -> dict:
        return {"boot": self.boot, "seq": self.seq}


@dataclass(frozen=True)
class Batch:
    """What ``since`` found: the matching changes after the cursor, the cursor to ask
    with next, whether changes may have been missed, and where it resumed then."""

    changes: list
    next: Cursor
    missed: bool
    resumed_from: Cursor


def matcher(target: str, is_prefix: bool) -> Callable[[str], bool]:
    """Whether a key is watched: equal to ``target``, or starting with it (``is_prefix``)."""
    if is_prefix:
        return lambda key: key.startswith(target)
    return lambda key: key == target


class ChangeFeed:
    """The last ``capacity`` changes committed at this replica."""

    def __init__(self, capacity: int = CAPACITY, *, clock: Callable[[], float] = time.time,
                 boot: Optional[str] = None) -> None:
        if capacity < 1:
            raise ValueError("a change feed holds at least one change")
        self.capacity = capacity
        self.clock = clock
        self._changed = threading.Condition(threading.Lock())
        self._ring: list = [None] * capacity
        self._last = 0
        self._waiting = 0
        self.boot = boot or secrets.token_hex(8)

    # ------------------------------------------------------------ writing
    def append_commit(self, txid: str, writes: Mapping[str, Optional[str]]) -> None:
        """The writes of ``txid`` were applied here (value None: deleted)."""
        now = self.clock()
        with self._changed:
            ring, capacity = self._ring, self.capacity
            for key, value in writes.items():
                self._last += 1
                ring[self._last % capacity] = Change(self._last, key, value, txid, now)
            if self._waiting:
                self._changed.notify_all()

    def reset(self) -> None:
        """The data was emptied (to be copied again): forget every change, under a new boot id,
        so that every cursor held says changes may have been missed."""
        with self._changed:
            self.boot = secrets.token_hex(8)
            self._ring = [None] * self.capacity
            self._last = 0
            self._changed.notify_all()

    # ------------------------------------------------------------ reading
    def cursor(self) -> Cursor:
        """The cursor of a watcher that starts now."""
        with self._changed:
            return Cursor(self.boot, self._last)

    def describe(self) -> dict:
        """For status: the boot id, the last sequence number, how many changes are kept and
        how many callers wait."""
        with self._changed:
            return {"boot": self.boot, "last_seq": self._last, "kept": min(self._last, self.capacity),
                    "waiting": self._waiting}

    @property
    def waiting(self) -> int:
        """How many callers of ``since`` wait for a change now."""
        return self._waiting

    def since(self, cursor: Optional[Cursor], watched: Callable[[str], bool], *, limit: int = 1000,
              timeout: float = 0.0, gone: Callable[[], bool] = lambda: False) -> Batch:
        """The changes after ``cursor`` (None: from now) whose key is ``watched``, at most
        ``limit``; when there are none, waits up to ``timeout`` seconds for one (and stops
        waiting as soon as ``gone()`` says the caller left)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            start, missed = self._start(cursor)
            resumed_from = Cursor(self.boot, start)
            boot = self.boot
            while True:
                changes, scanned = self._scan(start, watched, limit)
                remaining = deadline - time.monotonic()
                if changes or remaining <= 0 or gone():
                    return Batch(changes, Cursor(boot, scanned), missed, resumed_from)
                start = scanned
                self._waiting += 1
                try:
                    self._changed.wait(min(remaining, CHECK_EVERY))
                finally:
                    self._waiting -= 1
                if self.boot != boot:  # emptied while waiting: start again from the new boot
                    start, missed = 0, True
                    boot = self.boot
                    resumed_from = Cursor(boot, 0)

    def _start(self, cursor: Optional[Cursor]) -> tuple[int, bool]:
        """(sequence number to read after, whether changes may have been missed)."""
        if cursor is None:
            return self._last, False
        if cursor.boot != self.boot:
            return self._last, True
        if cursor.seq > self._last or cursor.seq < 0:
            raise InvalidRequest(f"watch cursor {cursor.seq} is not a position of this replica's change feed "
                                 f"(it is at {self._last})")
        oldest = self._last - min(self._last, self.capacity)  # the ring holds oldest+1 .. last
        if cursor.seq < oldest:
            return oldest, True
        return cursor.seq, False

    def _scan(self, after: int, watched: Callable[[str], bool], limit: int) -> tuple[list, int]:
        """The watched changes after ``after`` (at most ``limit``), and the last sequence number looked at."""
        found: list = []
        ring, capacity, seq = self._ring, self.capacity, after
        while seq < self._last and len(found) < limit:
            seq += 1
            change = ring[seq % capacity]
            if watched(change.key):
                found.append(change)
        return found, seq
