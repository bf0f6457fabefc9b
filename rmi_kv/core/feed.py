"""A numbered feed of recent events, long-polled with a cursor (no network, no storage).

A bounded ring in memory: every item appended gets the next sequence number.
A reader holds a ``Cursor`` (this feed's ``boot`` id and the last sequence
number it saw) and asks ``since`` for what came after it, waiting a bounded
time when nothing did. A cursor of another boot (the process restarted, or the
feed was reset) or one older than the ring says ``missed``: items may have gone
by unseen, and the answer resumes from what the feed holds.

Appending costs O(1) and wakes nobody when nobody waits. The change feed
(``core.changes``) and the protocol feed (``core.protocol_feed``) are two kinds.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rmi_kv.errors import InvalidRequest

#: how often a waiting ``since`` asks whether its caller is still there
CHECK_EVERY = 0.25


@dataclass(frozen=True)
class Cursor:
    """Where a reader is: the feed's boot id and the last sequence number it saw."""

    boot: str
    seq: int

    def as_dict(self) -> dict:
        return {"boot": self.boot, "seq": self.seq}


@dataclass(frozen=True)
class Batch:
    """What ``since`` found: the matching items after the cursor, the cursor to ask
    with next, whether items may have been missed, and where it resumed then."""

    changes: list
    next: Cursor
    missed: bool
    resumed_from: Cursor


class Feed:
    """The last ``capacity`` items appended; subclasses say what an item is."""

    #: who reads it and what it is called, for the error a bad cursor gets
    reader, what = "feed", "feed"

    def __init__(self, capacity: int, *, boot: Optional[str] = None) -> None:
        if capacity < 1:
            raise ValueError("a feed holds at least one item")
        self.capacity = capacity
        self._changed = threading.Condition(threading.Lock())
        self._ring: list = [None] * capacity
        self._last = 0
        self._waiting = 0
        self.boot = boot or secrets.token_hex(8)

    # ------------------------------------------------------------ writing
    def _add(self, make: Callable[..., Any], *fields: Any) -> None:
        """Append ``make(seq, *fields)``; the caller holds ``self._changed`` and calls ``_wake`` after."""
        self._last += 1
        self._ring[self._last % self.capacity] = make(self._last, *fields)

    def _wake(self) -> None:
        if self._waiting:
            self._changed.notify_all()

    def reset(self) -> None:
        """Forget every item, under a new boot id, so that every cursor held says items may have been missed."""
        with self._changed:
            self.boot = secrets.token_hex(8)
            self._ring = [None] * self.capacity
            self._last = 0
            self._changed.notify_all()

    # ------------------------------------------------------------ reading
    def cursor(self) -> Cursor:
        """The cursor of a reader that starts now."""
        with self._changed:
            return Cursor(self.boot, self._last)

    def describe(self) -> dict:
        """For status: the boot id, the last sequence number, how many items are kept and how many callers wait."""
        with self._changed:
            return {"boot": self.boot, "last_seq": self._last, "kept": min(self._last, self.capacity),
                    "waiting": self._waiting}

    @property
    def waiting(self) -> int:
        """How many callers of ``since`` wait for an item now."""
        return self._waiting

    def _since(self, cursor: Optional[Cursor], wanted: Callable[[Any], bool], limit: int, timeout: float,
               gone: Callable[[], bool]) -> Batch:
        """The ``wanted`` items after ``cursor`` (None: from now), at most ``limit``; when there are
        none, waits up to ``timeout`` seconds for one (and stops as soon as ``gone()`` says the caller left)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            start, missed = self._start(cursor)
            resumed_from = Cursor(self.boot, start)
            boot = self.boot
            while True:
                found, scanned = self._scan(start, wanted, limit)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0 or gone():
                    return Batch(found, Cursor(boot, scanned), missed, resumed_from)
                start = scanned
                self._waiting += 1
                try:
                    self._changed.wait(min(remaining, CHECK_EVERY))
                finally:
                    self._waiting -= 1
                if self.boot != boot:  # reset while waiting: start again from the new boot
                    start, missed = 0, True
                    boot = self.boot
                    resumed_from = Cursor(boot, 0)

    def _start(self, cursor: Optional[Cursor]) -> tuple[int, bool]:
        """(sequence number to read after, whether items may have been missed)."""
        if cursor is None:
            return self._last, False
        if cursor.boot != self.boot:
            return self._last, True
        if cursor.seq > self._last or cursor.seq < 0:
            raise InvalidRequest(f"{self.reader} cursor {cursor.seq} is not a position of this replica's {self.what} "
                                 f"(it is at {self._last})")
        oldest = self._last - min(self._last, self.capacity)  # the ring holds oldest+1 .. last
        if cursor.seq < oldest:
            return oldest, True
        return cursor.seq, False

    def _scan(self, after: int, wanted: Callable[[Any], bool], limit: int) -> tuple[list, int]:
        """The wanted items after ``after`` (at most ``limit``), and the last sequence number looked at."""
        found: list = []
        ring, capacity, seq = self._ring, self.capacity, after
        while seq < self._last and len(found) < limit:
            seq += 1
            item = ring[seq % capacity]
            if wanted(item):
                found.append(item)
        return found, seq
