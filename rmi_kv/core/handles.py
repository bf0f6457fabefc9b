"""How a coordinator reaches its participants: the one handle interface.

A coordinator runs a transaction over a mapping of participant names to
handles. Its own participant (when the coordinator is a replica that takes
part, as in production) is a ``LocalParticipant``, called in the
coordinator's own thread; every other participant is a ``ParticipantHandle``
that carries messages in the background: in production a Pyro5 peer link
that batches them, in unit tests a plain object.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Protocol, Sequence

from rmi_kv.core.messages import Reply
from rmi_kv.core.replies import PendingReply


class ParticipantHandle(Protocol):
    """A participant the coordinator reaches by message."""

    def send(self, message: str, *args: Any, expires: Optional[float] = None,
             lazy: bool = False) -> PendingReply:
        """Carry ``message`` (a name of ``messages.BATCHED``) with ``args``; the
        pending reply (``core.replies``; a ``concurrent.futures.Future`` does
        too) resolves to a ``Reply`` and never raises. A message still unsent
        at ``expires`` (a time.monotonic() value) is dropped with an error; a
        ``lazy`` one may wait a moment to share a call with others."""


class LocalParticipant(Protocol):
    """The coordinator's own participant, called directly."""

    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: list,
                  epoch: Optional[int] = None, guards: Sequence = ()) -> bool:
        """The coordinator's own vote on its new ``txid``, before any other
        replica has heard of it (so it has no outcome anywhere yet)."""

    def doCommit(self, txid: str) -> bool: ...

    def doAbort(self, txid: str) -> bool: ...

    def commitWithDecision(self, txid: str, participants: Sequence[str]) -> bool:
        """Force the coordinator's COMMIT record and apply the writes here, in one write."""


class DecisionSource(Protocol):
    """Whom an in-doubt participant asks for an outcome (its coordinator, or a peer)."""

    def getDecision(self, txid: str) -> str: ...


def timed(function: Callable, *args: Any) -> Reply:
    """Call ``function``; its value or error and how long it took, never raising
    (a participant's failure is a vote or an unacknowledged decision, not the caller's crash)."""
    started = time.perf_counter()
    try:
        value = function(*args)
        return Reply(value, None, (time.perf_counter() - started) * 1000.0)
    except Exception as error:
        return Reply(None, error, (time.perf_counter() - started) * 1000.0)


class LocalHandle:
    """A replica's own participant behind ``LocalParticipant``."""

    def __init__(self, participant: Any) -> None:
        self.participant = participant

    def canCommit(self, txid: str, writes: dict, coordinator: str, participants: list,
                  epoch: Optional[int] = None, guards: Sequence = ()) -> bool:
        return self.participant.can_commit(txid, writes, coordinator, participants, epoch, guards, fresh=True)

    def doCommit(self, txid: str) -> bool:
        return self.participant.do_commit(txid)

    def commitWithDecision(self, txid: str, participants: Sequence[str]) -> bool:
        return self.participant.do_commit(txid, decision=participants)

    def doAbort(self, txid: str) -> bool:
        return self.participant.do_abort(txid)
