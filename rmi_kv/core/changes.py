"""The change feed of one replica: the last committed changes, for watchers.

A ``core.feed`` ring: every key a commit applied here goes in as one
``Change`` with a sequence number. A watcher holds a ``Cursor`` and asks
``since`` for the changes after it to the keys it watches, waiting a bounded
time when none came. A cursor of another boot (the replica restarted, or
emptied its data to copy it again) or one older than the ring says
``missed``: changes may have gone by unseen, and the answer resumes from what
the feed holds.

Appending costs O(1) per key and wakes nobody when nobody waits.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, NamedTuple, Optional

from rmi_kv.core.feed import Batch, Cursor, Feed

__all__ = ["CAPACITY", "Batch", "Change", "ChangeFeed", "Cursor", "matcher"]

#: how many changes a feed keeps by default
CAPACITY = 10_000


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


def matcher(target: str, is_prefix: bool) -> Callable[[str], bool]:
    """Whether a key is watched: equal to ``target``, or starting with it (``is_prefix``)."""
    if is_prefix:
        return lambda key: key.startswith(target)
    return lambda key: key == target


class ChangeFeed(Feed):
    """The last ``capacity`` changes committed at this replica."""

    reader, what = "watch", "change feed"

    def __init__(self, capacity: int = CAPACITY, *, clock: Callable[[], float] = time.time,
                 boot: Optional[str] = None) -> None:
        super().__init__(capacity, boot=boot)
        self.clock = clock

    def append_commit(self, txid: str, writes: Mapping[str, Optional[str]]) -> None:
        """The writes of ``txid`` were applied here (value None: deleted)."""
        now = self.clock()
        with self._changed:
            for key, value in writes.items():
                self._add(Change, key, value, txid, now)
            self._wake()

    def since(self, cursor: Optional[Cursor], watched: Callable[[str], bool], *, limit: int = 1000,
              timeout: float = 0.0, gone: Callable[[], bool] = lambda: False) -> Batch:
        """The changes after ``cursor`` (None: from now) whose key is ``watched``, at most
        ``limit``; when there are none, waits up to ``timeout`` seconds for one (and stops
        waiting as soon as ``gone()`` says the caller left)."""
        return self._since(cursor, lambda change: watched(change.key), limit, timeout, gone)
