"""What the protocol core and the replica need of a replica's durable state.

Each interface lists exactly the members its users call, so another engine
can implement them; ``rmi_kv.storage.sqlite.Storage`` implements them all.

- ``Data``: the committed entries, as reads and a catching-up peer see them;
- ``ParticipantLog``: the participant's PREPARED records and the outcomes it
  knows (``Participant``);
- ``CatchUp``: copying a peer's data while taking part in every write;
- ``DecisionLog``: the coordinator's COMMIT records (``Coordinator``);
- ``ParticipantStorage``: what one ``Participant`` runs over;
- ``ReplicaStorage``: everything a replica process runs over.

Words used in the contracts: *forced* means durable before the call returns
(a crash right after it loses nothing); *atomic* means all of it is kept or,
when the call raises (or reports an error for it), none of it. What a write
does to a key (versions, tombstones, the digest) is ``rmi_kv.core.ops``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

from rmi_kv.storage.integrity import RangeSummary, Verification


#: key -> new value, or None for a delete
Writes = Mapping[str, Optional[str]]
#: a commit to apply: (txid, writes, decision); a decision (the participants)
#: when this replica coordinates the transaction, else None
Commit = Tuple[str, Writes, Optional[Sequence[str]]]
#: a PREPARED record to force: (txid, writes, coordinator, participants), and optionally the keys its
#: guards read without writing them (locked as long as the transaction is: ``core.guards``)
Prepare = Union[Tuple[str, Writes, str, Sequence[str]], Tuple[str, Writes, str, Sequence[str], Sequence[str]]]
#: an entry as a snapshot copies it: (key, value or None, version, txid of its last writer)
SnapshotEntry = Tuple[str, Optional[str], int, Optional[str]]
#: an entry as a repair compares and replaces it: (value or None, version, txid of its last writer)
RepairEntry = Tuple[Optional[str], int, Optional[str]]
#: a repair of one key: (key, the entry it must still hold or None for no row, the entry to put
#: in its place or None to drop the row)
Repair = Tuple[str, Optional[RepairEntry], Optional[RepairEntry]]
#: the error of each operation of a forced write, or None where it succeeded
Errors = list[Optional[BaseException]]


class AlreadyDecided(Exception):
    """A PREPARED record not forced: its transaction has an outcome here already
    (a late vote gets that outcome, and nothing is written)."""

    def __init__(self, txid: str, outcome: str) -> None:
        super().__init__(f"transaction {txid} ended already: {outcome}")
        self.txid = txid
        self.outcome = outcome


@dataclass(frozen=True)
class PreparedRecord:
    """A participant's PREPARED record: it voted YES and holds the keys."""

    txid: str
    writes: dict
    coordinator: str
    participants: tuple
    #: wall time (epoch seconds) the record was forced
    created: float
    #: keys its guards read and it locked without writing them (forced with the record)
    reads: tuple = ()

    def keys(self) -> list:
        """Every key the transaction holds locked: the written ones and the guarded ones."""
        return [*self.writes, *(key for key in self.reads if key not in self.writes)]


@dataclass(frozen=True)
class DecisionRecord:
    """A coordinator's COMMIT record: the commit point of its transaction."""

    txid: str
    participants: tuple
    created: float


@runtime_checkable
class Data(Protocol):
    """The committed entries. Reads see only what a forced commit applied."""

    def get(self, key: str) -> Optional[tuple[str, int]]:
        """The live (value, version) of ``key``; None when absent or deleted."""

    def keys(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[str]:
        """Live keys starting with ``prefix``, sorted, at most ``limit``; with
        ``after`` (a cursor: the last key of the page before), only later ones."""

    def items(self, prefix: str = "", *, limit: int = 1000, after: Optional[str] = None) -> list[tuple[str, str]]:
        """Like ``keys``, each live key with its value: (key, value) pairs."""

    def count(self, prefix: str = "") -> int:
        """How many live keys start with ``prefix``."""

    def read_chunk(self, after_key: Optional[str], limit: int) -> list[SnapshotEntry]:
        """Up to ``limit`` entries in key order after ``after_key`` (None: from
        the first), tombstones too: the pages a catching-up peer copies."""

    @property
    def digest(self) -> str:
        """``ops.digest_hex`` of the sum of ``ops.entry_hash`` over the live entries."""

    @property
    def live_keys(self) -> int:
        """How many keys hold a value (tombstones do not count)."""


@runtime_checkable
class ParticipantLog(Protocol):
    """The participant's 2PC log: PREPARED records and the outcomes it knows."""

    def prepared(self) -> list[PreparedRecord]:
        """Every PREPARED record without an outcome, oldest first (recovery)."""

    def outcome(self, txid: str) -> Optional[str]:
        """COMMIT or ABORT when this replica knows how ``txid`` ended, else None."""

    def commit_and_prepare(self, commits: Sequence[Commit], records: Sequence[Prepare]) -> tuple[Errors, Errors]:
        """One forced write for several transactions: apply each of ``commits``,
        then force each PREPARED record of ``records``; returns the error of
        each commit and of each record (None: done).

        Each one is atomic on its own: a failing one leaves no trace and does
        not stop the others. Applying a commit writes its keys (``ops.write``),
        records the outcome COMMIT, counts it in ``committed_count``, drops
        its PREPARED record and, with a decision, forces the COMMIT record of
        the ``DecisionLog`` too (the commit point and the local apply at
        once). Idempotent: a transaction with an outcome is not applied again
        (its decision is still recorded), and a PREPARED record forced twice
        keeps the first. A record of a transaction with an outcome here is not
        forced: its error is ``AlreadyDecided`` with that outcome (the check
        and the record are one write, so a vote needs no lookup first).
        """

    def record_abort(self, txid: str, *, prepared: bool = False) -> None:
        """Force the outcome ABORT, dropping any PREPARED record; a later vote
        for ``txid`` is NO. It counts in ``aborted_count`` when it had a record
        or ``prepared`` says it was prepared (a coordinator's own vote has no
        record). Idempotent; a known outcome (even COMMIT) is kept as it is."""

    def forget_outcomes(self, older_than: float) -> int:
        """Force: drop the outcomes decided before ``older_than`` (epoch
        seconds) and move ``forgotten_before_us`` up to it; returns how many."""

    @property
    def forgotten_before_us(self) -> int:
        """Outcomes decided before this time (epoch µs) may have been forgotten."""

    @property
    def knows_nothing_before_us(self) -> int:
        """Transactions started before this time (epoch µs) may have been decided
        here without a record left: the data did not exist yet, or forgot them."""

    @property
    def committed_count(self) -> int:
        """Transactions applied here (durable, kept across restarts)."""

    @property
    def aborted_count(self) -> int:
        """Prepared transactions aborted here (durable, kept across restarts)."""


@runtime_checkable
class CatchUp(Protocol):
    """A new or emptied replica copying a peer's data while it takes part in every write."""

    @property
    def catching_up(self) -> bool:
        """True from ``set_catching_up(True)`` until ``finish_catch_up`` (durable)."""

    @property
    def created_now(self) -> bool:
        """A new database whose replica has not called ``set_catching_up`` yet
        (still true after a crash before that decision)."""

    def set_catching_up(self, value: bool) -> None:
        """Force the decision: copy a peer's data first (True), or serve (False)."""

    def install_entries(self, entries: Iterable[SnapshotEntry]) -> None:
        """Force, atomically: store entries copied from a peer as they are,
        replacing what is here. Idempotent."""

    def buffer_commit(self, txid: str, writes: Writes, *, decision: Optional[Sequence[str]] = None) -> None:
        """Force, atomically: a commit that arrives while catching up, kept (and
        its outcome COMMIT recorded, its PREPARED record dropped, as
        ``commit_and_prepare`` does) until ``finish_catch_up`` applies it;
        with ``decision``, the COMMIT record too. Idempotent."""

    def finish_catch_up(self) -> int:
        """Force, atomically: apply the buffered writes the copied data does not
        hold yet (``ops.missing_from_copy``), empty the buffer, stop catching
        up. Returns how many writes were applied."""


    def reset_for_catch_up(self) -> None:
        """Force, atomically: empty the committed data, the buffer and the
        participant's log (PREPARED records, outcomes: a newcomer to an epoch
        replaces what it held, it never merges), know nothing from before now,
        and start catching up. The coordinator's COMMIT records stay."""


@runtime_checkable
class EpochStore(Protocol):
    """The epoch state of ``rmi_kv.core.failover``, kept durably."""

    def epoch_state(self) -> Optional[dict]:
        """What ``save_epoch_state`` forced last (None: never)."""

    def save_epoch_state(self, state: Mapping) -> None:
        """Force ``state`` (plain JSON values) before the vote or install it records is answered."""


@runtime_checkable
class Integrity(Protocol):
    """Checking the data against its digest, and repairing it from a peer
    (``rmi_kv.storage.integrity``, ``rmi_kv.core.antientropy``)."""

    def verify(self, pace: Callable[[], None] = lambda: None) -> Verification:
        """SQLite's own check, then the digest and live count recomputed from
        the rows and compared with the stored ones, in one read snapshot
        (writes go on meanwhile; ``pace`` is called every few thousand rows)."""

    def adopt_data_digest(self) -> tuple[str, str]:
        """Force, with writes held back: recompute the digest and the live
        count from the rows as the disk holds them (no page a cache kept), and
        keep those; returns (digest before, after)."""

    def split_range(self, after: Optional[str], upto: Optional[str], parts: int) -> list[RangeSummary]:
        """The key range ``after < key <= upto`` cut in up to ``parts`` ranges of
        about as many live entries, each with its live count and digest."""

    def summarize(self, bounds: Sequence[tuple[Optional[str], Optional[str]]]) -> list[RangeSummary]:
        """Live count and digest of each of the consecutive ranges ``bounds``."""

    def range_entries(self, after: Optional[str], upto: Optional[str], limit: int) -> list[SnapshotEntry]:
        """Up to ``limit`` entries of the range in key order, tombstones too."""

    def repair(self, repairs: Sequence[Repair]) -> int:
        """Force, atomically: put each replacement in place of its key's entry,
        where the key still holds the expected entry (skipped otherwise);
        a replacement's last writer committed, so an ABORT outcome recorded
        here for it is set to COMMIT. Returns how many were replaced."""

    def integrity_record(self) -> dict:
        """What ``save_integrity_record`` forced last (empty: never)."""

    def save_integrity_record(self, record: Mapping) -> None:
        """Force the damage found and repaired (plain JSON values), shown in status."""


@runtime_checkable
class DecisionLog(Protocol):
    """The coordinator's COMMIT records, kept until every participant acknowledged."""

    def log_decision(self, txid: str, participants: Iterable[str]) -> None:
        """Force COMMIT(txid, participants): the commit point. Idempotent: a
        second record for ``txid`` keeps the first."""

    def decisions(self) -> list[DecisionRecord]:
        """Every COMMIT record not forgotten, oldest first (recovery)."""

    def has_decision(self, txid: str) -> bool:
        """True while a COMMIT record of ``txid`` is kept (none: presumed abort)."""

    def forget_decisions(self, txids: Iterable[str]) -> None:
        """Force: drop the COMMIT records of ``txids`` (unknown ones are ignored)."""

    @property
    def records_since_us(self) -> int:
        """When this log was created (epoch µs): of a transaction started
        before it, no COMMIT record here says nothing of how it ended."""


@runtime_checkable
class ParticipantStorage(Data, ParticipantLog, CatchUp, Integrity, Protocol):
    """What a ``Participant`` runs over (the replica reads keys through it too)."""


@runtime_checkable
class ReplicaStorage(ParticipantStorage, DecisionLog, EpochStore, Protocol):
    """Everything a replica process runs over; it keeps the member list too
    (``members``/``save_members``: ``rmi_kv.core.members.MemberStore``)."""

    @property
    def forced_commits(self) -> int:
        """Forced writes since opening (each one fsync): group commit shares them."""

    @property
    def forced_operations(self) -> int:
        """Operations those forced writes carried."""

    def close(self) -> None:
        """Wait for the forced write under way, then refuse any more."""
