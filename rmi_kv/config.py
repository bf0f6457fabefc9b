"""Settings with safe defaults (plain values: Pyro5 is configured from them in ``rmi_kv.wire.pyro``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DEFAULT_NS_HOST = "127.0.0.1"
DEFAULT_NS_PORT = 9090
PROJECT_PREFIX = "rmi_kv."
REPLICA_PREFIX = PROJECT_PREFIX + "replica."
#: the name server's marker of a replica an operator removed
REMOVED_PREFIX = PROJECT_PREFIX + "removed."


@dataclass(frozen=True)
class Limits:
    """What a request may carry; checked at the remote boundary."""

    max_key_bytes: int = 1024
    max_value_bytes: int = 1024 * 1024
    max_keys_per_transaction: int = 1000
    #: keys plus values of one transaction, in UTF-8 bytes
    max_transaction_bytes: int = 2 * 1024 * 1024

    def max_message_bytes(self) -> int:
        """Pyro5's message bound: serpent may spell a character in up to four."""
        return 4 * max(self.max_transaction_bytes, self.max_value_bytes + self.max_key_bytes) + 64 * 1024


#: how much longer a protocol message may take per MiB of keys and values it carries: a large
#: transaction takes longer to encode, carry and decode than a lost participant takes to be noticed
SECONDS_PER_MIB = 2.0


def size_allowance(size: int) -> float:
    """The extra seconds a message of ``size`` bytes of keys and values may
    take (none under 64 KiB: the timeouts themselves cover those)."""
    return SECONDS_PER_MIB * size / (1024 * 1024) if size > 64 * 1024 else 0.0


@dataclass(frozen=True)
class Timeouts:
    """How long each step may take, in seconds."""

    #: a participant must vote within this, or it counts as a NO
    vote: float = 2.0
    #: how long a doCommit/doAbort call may take before it is retried later
    decision: float = 2.0
    #: how long canCommit waits for a key locked by another transaction
    lock_wait: float = 0.05
    #: how long a read waits for a key held by an undecided transaction
    read_wait: float = 5.0
    #: how long a client waits for any answer from a replica
    client: float = 10.0
    #: between two rounds of the background recovery task
    recovery_interval: float = 0.3
    #: between two refreshes of the member list from the name server
    membership_refresh: float = 1.0
    #: a new connection must complete its Pyro5 handshake within this
    handshake: float = 5.0
    #: a connection with no request for this long is closed
    idle_connection: float = 300.0


@dataclass(frozen=True)
class Settings:
    """Everything a replica needs to know besides its name and data."""

    limits: Limits = dataclasses.field(default_factory=Limits)
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    #: how many times a coordinator retries a write that lost a lock conflict
    conflict_retries: int = 12
    #: first backoff after a conflict; doubles with jitter on each retry
    conflict_backoff: float = 0.002
    #: answer a write once its COMMIT decision is forced, before every replica applied it
    early_reply: bool = False
    #: writes go on without replicas that are down, in a new epoch of a majority (False: every
    #: member must vote, the textbook's strict protocol)
    failover: bool = True
    #: seconds a read lease lasts; about how long writes wait for a replica that died
    lease: float = 1.0
    #: durable writes really reach the disk (fsync); only tests of speed turn it off
    durable: bool = True
    #: connections a replica holds at most; past it, the one idle the longest is closed
    max_connections: int = 200
    #: seconds between two background passes that recompute the digest from the rows (0: none)
    verify_every: float = 600.0
    #: seconds between two comparisons of the members' digests (anti-entropy; 0: none)
    antientropy_every: float = 5.0

