"""The participant side of two-phase commit, over storage and locks.

No network code: the replica exposes these methods over Pyro5, and unit
tests call them directly.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence

from rmi_kv.errors import EpochChanged, InvalidRequest, KeyInDoubt, MembershipChanged, ReplicaUnavailable
from rmi_kv.core import guards as guard_rules
from rmi_kv.core import txid as txids
from rmi_kv.core.messages import UNKNOWN, VoteRequest
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core.locks import LockTable, SharedLock
from rmi_kv.core.messages import ABORT, COMMIT
from rmi_kv.core.settle import NOTHING as NOTHING_STATE, PREPARED as PREPARED_STATE
from rmi_kv.storage.interfaces import AlreadyDecided, ParticipantStorage, PreparedRecord, Repair

log = logging.getLogger(__name__)
#: who holds a key's lock while anti-entropy replaces its entry (no txid looks like it)
REPAIR_OWNER = "anti-entropy repair"


def _may_wait_for(txid: str, here: str):
    """Whom ``txid``'s vote may wait for, for a key lock.

    Wait-die: only for a younger holder. And never, at a participant, for a
    holder of the same coordinator: that coordinator sends the holder's
    decision to this replica on the one connection the waiting vote now
    occupies (``core.batching`` B1), so it could not arrive before the wait
    ends (the vote says no at once, and the coordinator tries again).
    Asked only on a conflict, so the txids are read only then.
    """
    def may_wait(holder: str) -> bool:
        try:
            coordinator = txids.coordinator_of(txid)
            return (txids.priority(txid) < txids.priority(holder)
                    and (coordinator == here or txids.coordinator_of(holder) != coordinator))
        except ValueError:
            return False

    return may_wait


class Participant:
    """Votes on, applies and aborts transactions for one replica."""

    def __init__(self, name: str, storage: ParticipantStorage, *, locks: LockTable | None = None,
                 failpoints: Failpoints = NO_FAILPOINTS, lock_wait: float = 0.05,
                 read_wait: float = 5.0, members: Optional[Callable[[], Iterable[str]]] = None,
                 admits: Optional[Callable[[Optional[int]], Optional[str]]] = None,
                 commit_gate: Optional[Callable[[str], Optional[str]]] = None,
                 on_commit: Optional[Callable[[str, Mapping[str, Optional[str]]], None]] = None) -> None:
        """``members``: whom every transaction must include; ``admits``: why a
        transaction of an epoch is refused (None: it is not); ``commit_gate``:
        why a COMMIT of a txid may not be applied now (an epoch change is
        settling its coordinator's transactions), with failover on;
        ``on_commit(txid, writes)``: told of every commit once it is durably
        applied here (not of those buffered while catching up)."""
        self.name = name
        self.storage = storage
        self.locks = locks or LockTable()
        self.failpoints = failpoints
        self.lock_wait = lock_wait
        self.read_wait = read_wait
        #: PREPARED transactions, also in the log; their keys are locked
        self._prepared: dict[str, PreparedRecord] = {}
        #: txid -> monotonic time it became PREPARED here, as far as ``in_doubt_ages`` knows
        self._prepared_since: dict[str, float] = {}
        #: why this replica refuses new transactions now (None: it accepts them)
        self.refusal: Optional[str] = None
        self._guards: dict[str, list] = {}
        self._guards_lock = threading.Lock()
        #: the members this replica knows of (None: no membership check)
        self.members = members
        self.admits = admits
        self.commit_gate = commit_gate
        self.on_commit = on_commit
        #: txid -> participants, for canCommit calls still being handled
        self._voting: dict[str, tuple] = {}
        #: txid -> the epoch its canCommit carried, for the PREPARED ones voted on since the start
        self._vote_epochs: dict[str, Optional[int]] = {}
        #: shared by commits; exclusive while the catch-up buffer is applied
        self._catch_up_lock = SharedLock()
        #: notified whenever a vote ends or a prepared transaction is decided here
        self._progress = threading.Condition()
        #: threads waiting on ``_progress`` (nobody to wake, nothing to notify: the common case)
        self._progress_waiters = 0

    # ---------------------------------------------------------------- set-up
    def recover(self) -> list[str]:
        """Reload PREPARED transactions from the log and lock their keys again.

        Returns the txids now in doubt.
        """
        for record in self.storage.prepared():
            self._prepared[record.txid] = record
            blocker = self.locks.acquire(record.txid, record.keys(), 0)
            if blocker is not None:  # two PREPARED records on one key cannot both be live
                log.error("recovery: %s and %s both hold keys; keeping both in doubt", record.txid, blocker)
        return list(self._prepared)

    @contextmanager
    def _exclusive(self, txid: str) -> Iterator[None]:
        """Serialize the messages of one transaction (a doAbort racing its canCommit)."""
        held = self._hold((txid,))
        try:
            yield
        finally:
            self._let_go(held)

    def _hold(self, txids: Iterable[str]) -> list:
        """Take the guard of each of ``txids`` (``_exclusive``), in the order given
        (sorted, where there are several: no deadlock); what ``_let_go`` frees."""
        held: list = []
        for txid in txids:
            with self._guards_lock:
                entry = self._guards.get(txid)
                if entry is None:
                    entry = self._guards[txid] = [threading.Lock(), 0]
                entry[1] += 1
            try:
                entry[0].acquire()
            except BaseException:
                self._let_go(held, unheld=[(txid, entry)])
                raise
            held.append((txid, entry))
        return held

    def _let_go(self, held: list, unheld: list = ()) -> None:
        """Free the guards ``_hold`` took (and forget ``unheld``, counted but not acquired)."""
        for _, entry in reversed(held):
            entry[0].release()
        with self._guards_lock:
            for txid, entry in [*held, *unheld]:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._guards[txid]

    # -------------------------------------------------------------- protocol
    def can_commit(self, txid: str, writes: Mapping[str, Optional[str]], coordinator: str,
                   participants: Sequence[str] = (), epoch: Optional[int] = None, guards: Sequence = (),
                   *, fresh: bool = False) -> bool:
        """Phase 1: lock the keys, force PREPARED, vote YES; NO on a lock conflict.

        A repeated or late canCommit gets the answer the transaction already
        has. A coordinator that left out a member this replica knows of gets
        MembershipChanged (it reloads its member list and tries again); one
        of another epoch, EpochChanged; one whose guards do not hold,
        CompareFailed (``core.guards``). ``fresh``: this replica's own
        coordinator votes on its new txid before any other replica heard of
        it, so no outcome of it exists to look up.
        """
        request = VoteRequest(txid, writes, coordinator, participants, epoch, tuple(guards))
        return _raise_or_return(self.commit_and_vote((), [request], fresh=fresh)[1][0])

    def can_commit_many(self, requests: Sequence[VoteRequest]) -> list:
        """Phase 1 for several transactions (txid, writes, coordinator,
        participants), their PREPARED records forced in one write.

        Each transaction is voted on its own: the answer for each is True,
        False or the exception it raised. The vote of this replica's own
        coordinator needs no PREPARED record: until its COMMIT decision is
        forced (with the local apply, in one write) the transaction is
        presumed aborted, so a crash before it leaves nothing to recover.
        """
        return self.commit_and_vote((), requests)[1]

    def commit_and_vote(self, commits: Sequence[str], votes: Sequence[VoteRequest],
                        decision: Optional[Sequence[str]] = None, *, settled: bool = False,
                        fresh: bool = False) -> tuple[list, list]:
        """Phase 2 for ``commits`` (txids), then phase 1 for ``votes`` (txid,
        writes, coordinator, participants): one forced write for the applies
        and the PREPARED records together, unless a vote needs a key one of
        the commits still holds (then the commits are written, and their keys
        freed, first). Returns the answers to the commits and to the votes.
        ``settled``: the commits are outcomes an epoch change settled (no gate);
        ``fresh``: the votes are of txids nobody else has heard of (``can_commit``).
        """
        votes = [VoteRequest(*vote) for vote in votes]
        commit_answers: list = [None] * len(commits)
        vote_answers: list = [None] * len(votes)
        held = self._hold(sorted({*commits, *(vote.txid for vote in votes)}))  # one order: no deadlock
        try:
            applying = self._stage_commits(commits, decision, commit_answers, gated=not settled)
            committing_keys = {key for _, record in applying for key in record.keys()}
            applied: list[str] = []
            prepared: list[str] = []
            if any(key in committing_keys for vote in votes
                   for key in [*vote.writes, *guard_rules.keys_of(vote.guards)]):
                applied += self._write_staged(applying, decision, commit_answers, [], vote_answers)[0]
                applying = []
            voting: list[str] = []
            try:
                staged = self._stage_votes(votes, vote_answers, voting, fresh)
                now_applied, prepared = self._write_staged(applying, decision, commit_answers, staged, vote_answers)
                applied += now_applied
            finally:
                for txid in voting:
                    self._voting.pop(txid, None)
                    if txid not in self._prepared:  # voted NO, or decided already
                        self._vote_epochs.pop(txid, None)
                self._finished()
        finally:
            self._let_go(held)
        self._finished()
        for txid in applied:
            self.failpoints.hit("participant.before_ack")
            log.debug("haveCommitted %s (applied)", txid)
        for txid in prepared:
            self.failpoints.hit("participant.after_prepare")
            log.debug("vote YES %s", txid)
        return commit_answers, vote_answers

    def _stage_votes(self, votes: Sequence[VoteRequest], answers: list, voting: list, fresh: bool = False) -> list:
        """Check and lock each vote's keys; the (index, record) of those to prepare."""
        staged: list[tuple[int, PreparedRecord]] = []
        seen: set[str] = set()
        for index, (txid, writes, coordinator, participants, epoch, guards) in enumerate(votes):
            if txid in seen:
                answers[index] = InvalidRequest(f"transaction {txid} appears twice in one batch")
                continue
            seen.add(txid)
            participants = tuple(participants)
            self._voting[txid] = participants  # visible to a catching-up peer's drain
            self._vote_epochs[txid] = epoch
            voting.append(txid)
            reads = tuple(key for key in guard_rules.keys_of(guards) if key not in writes)
            try:
                answers[index] = self._lock_for_vote(txid, writes, coordinator, participants, epoch, guards, reads,
                                                     fresh)
            except Exception as error:
                answers[index] = error
            if answers[index] is None:
                staged.append((index, PreparedRecord(txid, dict(writes), coordinator, participants, time.time(),
                                                     reads)))
        return staged

    def _stage_commits(self, txids: Sequence[str], decision: Optional[Sequence[str]], answers: list,
                       gated: bool = True) -> list:
        """The (index, record) of each prepared transaction to apply; the
        others get their answer now."""
        applying: list[tuple[int, PreparedRecord]] = []
        seen: set[str] = set()
        for index, txid in enumerate(txids):
            log.debug("doCommit %s", txid)
            if txid in seen:
                answers[index] = InvalidRequest(f"transaction {txid} appears twice in one batch")
                continue
            seen.add(txid)
            record = self._prepared.get(txid)
            try:
                if record is None:
                    answers[index] = self._commit_without_record(txid, decision)
                    continue
                refusal = self.commit_gate(txid) if gated and decision is None and self.commit_gate else None
                if refusal is not None:
                    raise EpochChanged(f"{self.name} does not apply {txid} now: {refusal}", replica=self.name)
                self.failpoints.hit("participant.before_commit")
            except Exception as error:
                answers[index] = error
                continue
            applying.append((index, record))
        return applying

    def _write_staged(self, applying: list, decision: Optional[Sequence[str]], commit_answers: list,
                      staged: list, vote_answers: list) -> tuple[list[str], list[str]]:
        """Force the staged applies and PREPARED records (one write), then
        free the committed keys and keep the prepared transactions; returns
        the txids applied and those prepared."""
        forced = [record for _, record in staged if record.coordinator != self.name]
        prepares = [(r.txid, r.writes, r.coordinator, r.participants, r.reads) for r in forced]
        try:
            with self._catch_up_lock.shared():
                applied_now = not self.storage.catching_up
                if not applied_now:
                    commit_errors = [self._buffer(record, decision) for _, record in applying]
                    prepare_errors = self.storage.commit_and_prepare([], prepares)[1] if prepares else []
                elif applying or prepares:
                    commit_errors, prepare_errors = self.storage.commit_and_prepare(
                        [(record.txid, record.writes, decision) for _, record in applying], prepares)
                else:
                    commit_errors, prepare_errors = [], []
        except Exception as error:  # nothing was written: the commits stay prepared, the votes free their keys
            commit_errors, prepare_errors = [error] * len(applying), [error] * len(prepares)
            applied_now = False
        for (index, record), error in zip(applying, commit_errors):
            if error is not None:
                commit_answers[index] = error
                continue
            del self._prepared[record.txid]
            self._vote_epochs.pop(record.txid, None)
            if applied_now and self.on_commit is not None:  # before the keys are free: in each key's order
                self._tell_commit(record)
            self.locks.release(record.txid, record.keys())
            commit_answers[index] = True
        errors = dict(zip((record.txid for record in forced), prepare_errors))
        for index, record in staged:
            error = errors.get(record.txid)
            if error is not None:
                self.locks.release(record.txid, record.keys())
                if isinstance(error, AlreadyDecided):  # a late vote gets the outcome it has
                    log.debug("canCommit %s already decided: %s", record.txid, error.outcome)
                    error = error.outcome == COMMIT
                vote_answers[index] = error
            else:
                self._prepared[record.txid] = record
                vote_answers[index] = True
        return ([record.txid for index, record in applying if commit_answers[index] is True],
                [record.txid for index, record in staged if vote_answers[index] is True])

    def _tell_commit(self, record: PreparedRecord) -> None:
        """``on_commit`` for an applied commit; its failure never undoes the commit."""
        try:
            self.on_commit(record.txid, record.writes)
        except Exception:
            log.exception("telling of the commit of %s failed", record.txid)

    def _lock_for_vote(self, txid: str, writes: Mapping[str, Optional[str]], coordinator: str,
                       participants: tuple, epoch: Optional[int] = None, guards: Sequence = (),
                       reads: tuple = (), fresh: bool = False) -> Optional[bool]:
        """The checks of phase 1 and the key locks: the vote when it is already
        decided, or None when the transaction may be prepared."""
        log.debug("canCommit %s from %s keys=%d", txid, coordinator, len(writes))
        if txid in self._prepared:
            return True
        # another coordinator's vote forces a PREPARED record, which is refused for a transaction with an
        # outcome (``AlreadyDecided``): no lookup first. Its own coordinator's vote writes nothing: it
        # looks, unless the txid is fresh (nobody else has heard of it, ``can_commit``)
        known = self.storage.outcome(txid) if coordinator == self.name and not fresh else None
        if known is not None:
            log.debug("canCommit %s already decided: %s", txid, known)
            return known == COMMIT
        if self.refusal is not None:
            raise ReplicaUnavailable(f"{self.name} takes no new transactions: {self.refusal}", replica=self.name)
        if self.admits is not None:
            refusal = self.admits(epoch)
            if refusal is not None:
                raise EpochChanged(f"{self.name} votes no: {refusal}", replica=self.name)
        if participants and self.members is not None:
            left_out = set(self.members()) - set(participants)
            if left_out:
                raise MembershipChanged(f"{self.name} votes no: the coordinator left out member(s) "
                                        f"{', '.join(sorted(left_out))}", replica=self.name)
        self.failpoints.hit("participant.before_prepare")
        keys = [*writes, *reads]
        blocker = self.locks.acquire(txid, keys, self.lock_wait, may_wait=_may_wait_for(txid, self.name))
        if blocker is not None:
            log.debug("vote NO %s: keys held by %s", txid, blocker)
            return False
        failed = guard_rules.first_failed(guards, self.read_own)
        if failed is not None:
            self.locks.release(txid, keys)
            log.debug("vote NO %s: guard %s does not hold", txid, failed[0])
            raise guard_rules.compare_failed(*failed, where=self.name)
        return None

    def do_commit(self, txid: str, decision: Optional[Sequence[str]] = None) -> bool:
        """Phase 2: apply the prepared writes durably, release the keys.

        Returns True: this is the haveCommitted acknowledgement (the COMMIT
        record is forced before it is returned). ``decision``: this replica
        coordinates the transaction, and its COMMIT decision (naming these
        participants) is forced in the same write.
        """
        return _raise_or_return(self.do_commit_many([txid], decision)[0])

    def do_commit_many(self, txids: Sequence[str], decision: Optional[Sequence[str]] = None) -> list:
        """Phase 2 for several transactions, applied in one forced write; the
        answer for each is True (haveCommitted) or the exception it raised."""
        return self.commit_and_vote(txids, (), decision)[0]

    def _commit_without_record(self, txid: str, decision: Optional[Sequence[str]]) -> bool:
        """doCommit for a transaction not prepared here: repeated, or a mistake."""
        if decision is not None:
            raise InvalidRequest(f"{self.name} has no prepared transaction {txid} to decide")
        known = self.storage.outcome(txid)
        if known == COMMIT:
            return True
        if known == ABORT:
            log.error("doCommit %s for a transaction this replica aborted", txid)
            raise InvalidRequest(f"{self.name} aborted transaction {txid}; it cannot commit")
        if 0 < txids.started_us(txid) <= self.storage.forgotten_before_us:
            return True  # it voted YES once (records of PREPARED are never dropped): committed long ago
        raise InvalidRequest(f"{self.name} has no prepared transaction {txid}")

    def _buffer(self, record: PreparedRecord, decision: Optional[Sequence[str]]) -> Optional[BaseException]:
        """Keep a commit that arrives while catching up; the error, or None."""
        try:
            self.storage.buffer_commit(record.txid, record.writes, decision=decision)
        except Exception as error:
            return error
        return None

    def do_abort(self, txid: str) -> bool:
        """Phase 2: drop the prepared writes, release the keys; harmless if repeated."""
        log.debug("doAbort %s", txid)
        with self._exclusive(txid):
            record = self._prepared.pop(txid, None)
            self._vote_epochs.pop(txid, None)
            if record is None:
                known = self.storage.outcome(txid)
                if known == COMMIT:
                    log.error("doAbort %s for a transaction this replica committed", txid)
                    return False
                if known is None:
                    self.storage.record_abort(txid)  # a late canCommit must now vote NO
                return True
            try:
                self.storage.record_abort(txid, prepared=True)
            except BaseException:
                self._prepared[txid] = record
                raise
            self.locks.release(txid, record.keys())
        self._finished()
        return True

    def decision_as_peer(self, txid: str) -> str:
        """Cooperative termination: what this participant knows of ``txid``.

        "unknown" while it is PREPARED itself. A participant that never voted
        records ABORT and will never vote YES, so "abort" is then the truth.
        """
        with self._exclusive(txid):
            if txid in self._prepared:
                return UNKNOWN
            known = self.storage.outcome(txid)
            if known is not None:
                return known
            if txids.started_us(txid) <= self.storage.knows_nothing_before_us:
                return UNKNOWN  # from before this replica's data existed, or long forgotten: it cannot vouch
            self.storage.record_abort(txid)
            return ABORT

    # -------------------------------------------------------------- catch-up
    def unfinished_without(self, member: str, epoch: Optional[int] = None) -> list[str]:
        """Transactions being voted on or prepared here that leave ``member``
        out, or (with ``epoch``) that are of an earlier epoch, or from before
        this replica's start: a newcomer to ``epoch`` emptied what it held of them."""
        voting = [txid for txid, names in list(self._voting.items())
                  if names and member not in names or self._older(txid, epoch)]
        prepared = [txid for txid, record in list(self._prepared.items())
                    if record.participants and member not in record.participants or self._older(txid, epoch)]
        return voting + prepared

    def _older(self, txid: str, epoch: Optional[int]) -> bool:
        if epoch is None:
            return False
        voted_in = self._vote_epochs.get(txid)
        return voted_in is None or voted_in < epoch

    def wait_unfinished_without(self, member: str, timeout: float, epoch: Optional[int] = None) -> list[str]:
        """Wait until nothing here leaves ``member`` out, nor (with ``epoch``)
        is of an earlier epoch (so a copy of the data taken now misses no
        transaction the copier does not hold); what still does after
        ``timeout`` seconds (empty: nothing)."""
        deadline = time.monotonic() + timeout
        with self._progress:
            # counted before the state is read: a change made after that read sees the count and wakes us
            self._progress_waiters += 1
            try:
                while True:
                    left = self.unfinished_without(member, epoch)
                    remaining = deadline - time.monotonic()
                    if not left or remaining <= 0:
                        return left
                    self._progress.wait(remaining)
            finally:
                self._progress_waiters -= 1

    def _finished(self) -> None:
        """Wake whoever waits for transactions here to end (called after the change it announces)."""
        if self._progress_waiters:
            with self._progress:
                self._progress.notify_all()

    def finish_catch_up(self, still: Callable[[], bool] = lambda: True) -> Optional[int]:
        """Apply the commits buffered while catching up; serve normally from
        now on. None, and nothing done, when ``still()`` says the copy is stale."""
        with self._catch_up_lock.exclusive():
            if not still():
                return None
            return self.storage.finish_catch_up()

    def start_catch_up(self) -> None:
        """Empty the data and the participant's log, and catch up from now on
        (a newcomer to an epoch: the copy brings the outcome of every
        transaction it held, so its PREPARED ones free their keys)."""
        with self._catch_up_lock.exclusive():
            self.storage.reset_for_catch_up()
            for txid, record in list(self._prepared.items()):
                self.locks.release(txid, record.keys())
            self._prepared.clear()
            self._vote_epochs.clear()
        self._finished()

    # ---------------------------------------------------------- anti-entropy
    def quiet(self) -> bool:
        """Nothing in flight here: no vote under way, nothing PREPARED, no copy (``core.antientropy`` A1)."""
        return not self._voting and not self._prepared and not self.storage.catching_up

    def repair(self, repairs: Sequence[Repair]) -> int:
        """A3: put the majority's entries in place, each only while its key is
        free and still holds the entry compared; returns how many were."""
        free = []
        for repair in repairs:
            if self.locks.acquire(REPAIR_OWNER, (repair[0],), 0) is None:
                free.append(repair)
        try:
            with self._catch_up_lock.shared():
                if self.storage.catching_up or not free:
                    return 0
                return self.storage.repair(free)
        finally:
            self.locks.release(REPAIR_OWNER, [repair[0] for repair in free])

    # -------------------------------------------------------------- settling
    def settle_state(self, txids: Iterable[str]) -> dict[str, str]:
        """What this replica holds of each of ``txids`` (``core.settle``): commit, abort, prepared or nothing."""
        states = {}
        for txid in txids:
            if txid in self._prepared:
                states[txid] = PREPARED_STATE
            else:
                states[txid] = self.storage.outcome(txid) or NOTHING_STATE
        return states

    def doubtful(self, members: Iterable[str]) -> list[str]:
        """PREPARED transactions whose coordinator is not among ``members``
        (an epoch of those members settles them)."""
        members = set(members)
        return sorted(txid for txid, record in list(self._prepared.items()) if record.coordinator not in members)

    def apply_settled(self, outcomes: Mapping[str, str]) -> None:
        """Apply the outcomes an epoch change settled (``core.settle``)."""
        commits = [txid for txid, outcome in outcomes.items() if outcome == COMMIT and txid in self._prepared]
        if commits:
            for txid, answer in zip(commits, self.commit_and_vote(commits, (), settled=True)[0]):
                if answer is not True:
                    log.error("settled COMMIT %s could not be applied: %s", txid, answer)
        for txid, outcome in outcomes.items():
            if outcome == ABORT:
                if self.storage.outcome(txid) == COMMIT:
                    log.error("settled ABORT %s, which this replica committed", txid)
                    continue
                self.do_abort(txid)
        if outcomes:
            log.info("settled %d transaction(s) of coordinators left out: %s", len(outcomes),
                     ", ".join(f"{txid} {outcome}" for txid, outcome in sorted(outcomes.items())))

    # ---------------------------------------------------------------- reads
    def read(self, key: str) -> Optional[str]:
        """The committed value, waiting (bounded) while an undecided transaction holds the key."""
        if self.locks.owner(key) is not None:
            blocker = self.locks.wait_unlocked(key, self.read_wait)
            if blocker is not None:
                raise KeyInDoubt(
                    f"key {key!r} on {self.name} is held by transaction {blocker}, whose outcome is not "
                    f"known yet (its coordinator may be down); try again when it is back",
                    replica=self.name, txid=blocker)
        entry = self.storage.get(key)
        return None if entry is None else entry[0]

    def read_prefix(self, prefix: str, limit: int, after: Optional[str] = None) -> list[tuple[str, str]]:
        """The committed (key, value) pairs of live keys starting with ``prefix``
        (a page, as ``keys`` gives them), once no undecided transaction holds a
        key with that prefix (waiting, bounded, as ``read`` does)."""
        self._wait_for_prefix(prefix, after)
        return self.storage.items(prefix, limit=limit, after=after)

    def count(self, prefix: str) -> int:
        """How many live keys start with ``prefix``, once no undecided transaction holds one."""
        self._wait_for_prefix(prefix)
        return self.storage.count(prefix)

    def _wait_for_prefix(self, prefix: str, after: Optional[str] = None) -> None:
        for key in sorted(self.locks.held()):
            if key.startswith(prefix) and (after is None or key > after):
                self.read(key)  # waits for its transaction, or raises KeyInDoubt

    def read_own(self, key: str) -> Optional[str]:
        """The committed value of a key the caller's transaction has locked."""
        entry = self.storage.get(key)
        return None if entry is None else entry[0]

    # -------------------------------------------------------------- queries
    def prepared(self) -> dict[str, PreparedRecord]:
        return dict(self._prepared)

    def in_doubt(self) -> list[str]:
        return sorted(self._prepared)

    def in_doubt_ages(self) -> dict[str, float]:
        """Seconds each PREPARED transaction has waited here for its decision.

        The first time a transaction is seen, its age comes from the record's
        wall time (it may predate a restart); from then on it is measured on
        the monotonic clock, so a step of the wall clock cannot make a
        transaction look older or younger than it is.
        """
        now, wall = time.monotonic(), time.time()
        since, ages = self._prepared_since, {}
        for txid, record in list(self._prepared.items()):
            if txid not in since:
                since[txid] = now - max(0.0, wall - record.created)
            ages[txid] = round(now - since[txid], 3)
        for txid in [txid for txid in list(since) if txid not in ages]:
            since.pop(txid, None)
        return ages


def _raise_or_return(answer):
    """A single message's answer: raise the error it holds, or return it."""
    if isinstance(answer, BaseException):
        raise answer
    return answer
