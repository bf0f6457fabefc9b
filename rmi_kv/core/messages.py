"""The protocol's vocabulary: message names, outcomes, and the records messages carry.

Names keep the textbook's (Coulouris et al., the 2PC operations figure), so
the code reads beside the book. Every layer uses these constants instead of
string literals.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional, Sequence

#: phase 1: coordinator -> participant, "can you commit?"
CAN_COMMIT = "canCommit"
#: phase 2: coordinator -> participant, the decision
DO_COMMIT = "doCommit"
DO_ABORT = "doAbort"
#: participant -> coordinator: applied, the coordinator may forget the transaction
HAVE_COMMITTED = "haveCommitted"
#: participant -> coordinator or peer: what was decided?
GET_DECISION = "getDecision"

#: the messages a coordinator may send in one batch, with how many arguments each may take
#: (canCommit's fifth is the transaction's epoch, with failover on)
BATCHED = {CAN_COMMIT: (4, 5, 6), DO_COMMIT: (1,), DO_ABORT: (1,)}

#: outcomes, as recorded in the log and answered to getDecision
COMMIT = "commit"
ABORT = "abort"
#: getDecision's answer when the one asked does not know (it is in doubt itself)
UNKNOWN = "unknown"


class VoteRequest(NamedTuple):
    """A canCommit: what to vote on, who coordinates it, and who takes part."""

    txid: str
    writes: Mapping[str, Optional[str]]
    coordinator: str
    participants: Sequence[str] = ()
    #: the coordinator's epoch (None: failover off, epoch 0 for ever)
    epoch: Optional[int] = None
    #: what must hold for the writes to be made (``core.guards``)
    guards: Sequence = ()


class Reply(NamedTuple):
    """A participant's answer to one message: its value, or the error it
    raised instead, and how long it took (milliseconds)."""

    value: Any
    error: Optional[BaseException]
    elapsed_ms: float
