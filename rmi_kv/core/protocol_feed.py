"""The protocol feed of one replica: the recent messages of the rounds it coordinated.

Every two-phase commit round this replica coordinates notes its messages
(``coordinator._Round.note``: canCommit sent, each vote, the forced decision,
each doCommit and its acknowledgement); with a listener attached they go into
this ``core.feed`` ring too, as ``ProtocolEvent``s, and so does the answer the
client got (``answered``). A viewer (the web view) long-polls ``since`` with a
cursor, as a watcher polls the change feed.

Nobody watching costs a write nothing measurable: a note checks one clock
against the time the last viewer asked (``listen_for`` seconds ago at most)
and returns; only while someone looks does it append.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Mapping, NamedTuple, Optional

from rmi_kv.core.feed import Batch, Cursor, Feed

#: how many protocol events a feed keeps
CAPACITY = 2000
#: a feed records for this long after a viewer last asked
LISTEN_FOR = 30.0
#: the longest value an answer event carries (a classroom shows short values; the rest is cut)
VALUE_SHOWN = 64


class ProtocolEvent(NamedTuple):
    """One protocol message of a round (or the client's answer), with its round clock and wall time."""

    seq: int
    txid: str
    message: str
    participant: str
    result: str
    #: milliseconds since the round began (the order of a round's messages; None for an answer)
    at_ms: Optional[float]
    #: the wall clock when it was recorded
    time: float
    #: for an answer: key -> new value (None: deleted), values cut at VALUE_SHOWN
    writes: Optional[dict] = None

    def as_dict(self) -> dict:
        return {"seq": self.seq, "txid": self.txid, "message": self.message, "participant": self.participant,
                "result": self.result, "at_ms": None if self.at_ms is None else round(self.at_ms, 3), "time": self.time, "writes": self.writes}


def shown(value: Optional[str]) -> Optional[str]:
    """``value`` cut to VALUE_SHOWN characters (a page shows short values)."""
    return value if value is None or len(value) <= VALUE_SHOWN else value[:VALUE_SHOWN - 1] + "…"


class ProtocolFeed(Feed):
    """The last ``capacity`` protocol events of the rounds coordinated here, while someone watches."""

    reader, what = "protocol events", "protocol feed"

    def __init__(self, capacity: int = CAPACITY, *, listen_for: float = LISTEN_FOR,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 boot: Optional[str] = None) -> None:
        super().__init__(capacity, boot=boot)
        self.listen_for = listen_for
        self.clock = clock
        self.wall = wall
        #: the clock until which notes are recorded (a viewer asked less than listen_for ago)
        self._until = float("-inf")

    @property
    def listening(self) -> bool:
        """Whether a viewer asked recently enough for notes to be recorded."""
        return self.clock() < self._until

    def note(self, txid: str, event: Any) -> None:
        """A round noted ``event`` (a ``coordinator.TraceEvent``): kept while someone watches."""
        if self.clock() >= self._until:
            return
        wall = self.wall()
        with self._changed:
            self._add(ProtocolEvent, txid, event.message, event.participant, event.result, event.at_ms, wall)
            self._wake()

    def answered(self, txid: Optional[str], coordinator: str, writes: Mapping[str, Optional[str]],
                 error: Optional[BaseException] = None) -> None:
        """The client of ``txid`` was answered: committed (``error`` None) or the error it got."""
        if txid is None or self.clock() >= self._until:
            return
        result = "committed" if error is None else f"{type(error).__name__}: {error}"
        cut = {key: shown(value) for key, value in list(writes.items())[:20]}
        wall = self.wall()
        with self._changed:
            self._add(ProtocolEvent, txid, "answer", coordinator, result, None, wall, cut)
            self._wake()

    def since(self, cursor: Optional[Cursor], *, limit: int = 500, timeout: float = 0.0,
              gone: Callable[[], bool] = lambda: False) -> Batch:
        """The events after ``cursor`` (None: from now), at most ``limit``, waiting up to ``timeout``
        seconds for one; asking keeps the feed recording for ``listen_for`` seconds more."""
        self._until = self.clock() + max(self.listen_for, timeout * 2)
        batch = self._since(cursor, _everything, limit, timeout, gone)
        self._until = self.clock() + max(self.listen_for, timeout * 2)
        return batch

    def describe(self) -> dict:
        return {**super().describe(), "recording": self.listening}


def _everything(_event: Any) -> bool:
    return True
