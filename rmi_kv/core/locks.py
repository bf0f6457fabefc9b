"""Per-key exclusive locks owned by a transaction id, with deadlines.

A transaction takes all of its keys at once or none of them, and waits only
for a bounded time (and, with wait-die, only for younger transactions):
deadlock cannot happen. A conflict that is not resolved in time makes the
participant vote NO, and the coordinator retries.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional


class LockTable:
    """Which transaction holds which key."""

    def __init__(self) -> None:
        self._owners: dict[str, str] = {}
        self._changed = threading.Condition(threading.Lock())

    def acquire(self, txid: str, keys: Iterable[str], timeout: float,
                may_wait: Optional[Callable[[str], bool]] = None) -> Optional[str]:
        """Lock every key for ``txid``, waiting at most ``timeout`` seconds.

        Returns None on success, else the txid still holding a key (and then
        no key is taken). ``may_wait(holder)`` decides whether waiting for
        that holder is allowed at all (wait-die); without it, always.
        """
        keys = tuple(keys)
        deadline = time.monotonic() + timeout
        owners = self._owners
        with self._changed:
            while True:
                blocker = None
                for key in keys:
                    owner = owners.get(key)
                    if owner is not None and owner != txid:
                        blocker = owner
                        break
                if blocker is None:
                    for key in keys:
                        owners[key] = txid
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (may_wait is not None and not may_wait(blocker)):
                    return blocker
                self._changed.wait(remaining)

    def release(self, txid: str, keys: Iterable[str]) -> None:
        """Free the keys ``txid`` holds (keys held by others stay locked)."""
        owners = self._owners
        with self._changed:
            for key in keys:
                if owners.get(key) == txid:
                    del owners[key]
            self._changed.notify_all()

    def wait_unlocked(self, key: str, timeout: float) -> Optional[str]:
        """Wait until nobody holds ``key``; returns the holder if the deadline passed first."""
        owners = self._owners
        owner = owners.get(key)
        if owner is None:
            return None
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                owner = owners.get(key)
                if owner is None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return owner
                self._changed.wait(remaining)

    def owner(self, key: str) -> Optional[str]:
        return self._owners.get(key)

    def held(self) -> dict[str, str]:
        """A copy of key -> owning txid."""
        with self._changed:
            return dict(self._owners)


class SharedLock:
    """Many holders in shared mode, or one in exclusive mode.

    Commits hold it shared, so they still share one forced write (group
    commit); the end of a catch-up holds it exclusive, so no commit falls
    between applying the buffer and serving normally.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            while self._exclusive:
                self._changed.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._changed:
                self._shared -= 1
                if not self._shared:
                    self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._changed:
            while self._exclusive:
                self._changed.wait()
            self._exclusive = True  # new shared holders wait from now on
            while self._shared:
                self._changed.wait()
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()
