"""The coordinator side of two-phase commit (presumed abort).

It runs one transaction over a set of participant handles (``handles``):
the coordinator's own participant, called directly, and the others reached by
message. In production those are Pyro5 peer links; in unit tests, plain
objects.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Optional, Sequence, Union

from rmi_kv.config import size_allowance
from rmi_kv.core import txid as txids
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core.handles import LocalParticipant, ParticipantHandle, timed
from rmi_kv.core.messages import ABORT, CAN_COMMIT, COMMIT, DO_ABORT, DO_COMMIT, HAVE_COMMITTED, UNKNOWN, Reply
from rmi_kv.core.replies import wait_all
from rmi_kv.errors import (CompareFailed, MembershipChanged, OutcomeUnknown, ReplicaUnavailable, RmiKvError,
                           TransactionAborted)
from rmi_kv.storage.interfaces import DecisionLog

log = logging.getLogger(__name__)

#: the handles of one transaction: the coordinator's own participant (under its
#: name, when it takes part) and the others
Handles = Mapping[str, Union[LocalParticipant, ParticipantHandle]]



@dataclass
class TraceEvent:
    """One message of a 2PC round, for people reading the protocol at work."""

    at_ms: float
    message: str
    participant: str
    result: str

    def as_dict(self) -> dict:
        return {"at_ms": round(self.at_ms, 3), "message": self.message,
                "participant": self.participant, "result": self.result}


@dataclass
class Outcome:
    """What happened to one transaction (the last attempt, after conflict retries)."""

    txid: str
    committed: bool
    attempts: int = 1
    #: participant -> reason, for the ones that voted NO or could not vote
    refusals: dict = field(default_factory=dict)
    #: participants that have not acknowledged doCommit yet (they hold the keys)
    unacknowledged: list = field(default_factory=list)
    trace: list = field(default_factory=list)
    observed: Any = None
    #: every refusal was a lost lock conflict or a stale member list: worth another try
    retryable: bool = False
    #: some participant knew of a member this coordinator left out
    membership_changed: bool = False
    #: a guard did not hold (``core.guards``): the answer, not a failure to retry
    compare_failed: Optional[CompareFailed] = None


#: called with (txid, event) for every event a round notes (the web view's protocol feed)
Listener = Callable[[str, TraceEvent], None]


class _Round:
    """Bookkeeping of one attempt: its trace clock and events.

    Events are noted only for someone: kept for the client's trace
    (``keep``), or told to a ``listener``. Otherwise ``note`` does nothing,
    so a round nobody reads costs nothing to describe.
    """

    def __init__(self, txid: str, listener: Optional[Listener] = None, keep: bool = True) -> None:
        self.txid = txid
        self.started = time.perf_counter()
        self.trace: list[TraceEvent] = []
        self.listener = listener
        self.keep = keep
        #: whether events are noted at all (call sites skip formatting a result nobody reads)
        self.noting = keep or listener is not None
        #: how long each YES vote took (ms): the fastest voters are the likeliest to acknowledge first
        self.vote_ms: dict[str, float] = {}

    def now_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def note(self, message: str, participant: str, result: str, at_ms: Optional[float] = None) -> None:
        """Record one event, now or at ``at_ms`` (events stay in time order)."""
        if not self.noting:
            return
        event = TraceEvent(self.now_ms() if at_ms is None else at_ms, message, participant, result)
        if self.keep:
            bisect.insort(self.trace, event, key=_noted_at)
        if self.listener is not None:
            self.listener(self.txid, event)


def _noted_at(event: TraceEvent) -> float:
    return event.at_ms


def describe_failure(error: BaseException) -> str:
    """A short reason for a participant that raised instead of voting."""
    if isinstance(error, RmiKvError):
        return str(error)
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


class Coordinator:
    """Runs transactions for the clients of one replica."""

    VOTING = "voting"

    def __init__(self, name: str, storage: DecisionLog, *, failpoints: Failpoints = NO_FAILPOINTS,
                 vote_timeout: float = 2.0, decision_timeout: float = 2.0,
                 conflict_retries: int = 12, conflict_backoff: float = 0.002,
                 early_reply: bool = False, epoch: Callable[[], Optional[int]] = lambda: None,
                 quorum: Callable[[], Optional[int]] = lambda: None, defer_to_epoch: bool = False,
                 company_left: Callable[[], None] = lambda: None) -> None:
        """``epoch``: the epoch every canCommit carries (None: failover off, no
        epoch); ``quorum``: how many replicas must hold a COMMIT before the
        client hears of it (``core.settle`` S1; None: no such rule);
        ``defer_to_epoch``: the COMMIT records found at start wait for a
        participant's word before they are answered or re-sent (S4);
        ``company_left``: told when a transaction ends (the batchers waiting
        for its company look again, ``core.batching`` B3)."""
        self.name = name
        self.storage = storage
        self.failpoints = failpoints
        self.vote_timeout = vote_timeout
        self.decision_timeout = decision_timeout
        self.conflict_retries = conflict_retries
        self.conflict_backoff = conflict_backoff
        #: answer the client once the decision is forced; phase 2 finishes in the background
        self.early_reply = early_reply
        self.epoch = epoch
        self.quorum = quorum
        self.defer_to_epoch = defer_to_epoch
        self.company_left = company_left
        #: COMMIT records an epoch change may have settled otherwise: not answered nor re-sent (S4)
        self._unconfirmed: set[str] = set()
        #: decided txids whose client is not answered yet -> True once their record was
        #: dropped as settled ABORT (the reply must not count it as acknowledged by all)
        self._awaited: dict[str, bool] = {}
        self._boot = os.urandom(4).hex()
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        #: notified on every acknowledgement (a reply waiting for its quorum)
        self._acknowledged = threading.Condition(self._lock)
        #: txid -> VOTING, for transactions not decided yet
        self._active: dict[str, str] = {}
        #: transactions in execute() now, retries and waits for a majority included
        self._in_progress = 0
        #: txid -> participants that have not acknowledged the COMMIT yet
        self._pending: dict[str, set[str]] = {}
        #: txid -> when it was decided (time.monotonic(); 0 for decisions found at start-up)
        self._decided_at: dict[str, float] = {}
        #: fully acknowledged COMMIT records, to drop from the log lazily
        self._forgettable: list[str] = []
        #: told of every message of every round from now on (None: nobody; set it to listen)
        self.listener: Optional[Listener] = None
        self.committed = 0
        self.aborted = 0
        #: attempts repeated after a lost lock conflict or a stale member list
        self.retries = 0

    # ----------------------------------------------------------------- txids
    def new_txid(self, started_us: Optional[int] = None) -> str:
        """A txid unique across restarts: coordinator name, boot id, counter, and
        the start time of the write (kept across retries: older writes win conflicts)."""
        if started_us is None:
            started_us = time.time_ns() // 1000
        return txids.make(self.name, self._boot, next(self._counter), started_us)

    # -------------------------------------------------------------- recovery
    def recover(self) -> list[str]:
        """Reload COMMIT records not yet acknowledged by everyone; returns their txids."""
        for record in self.storage.decisions():
            self._pending[record.txid] = set(record.participants)
        if self.defer_to_epoch:
            self.defer()
        return list(self._pending)

    # ------------------------------------------------- deferring to an epoch
    def defer(self) -> None:
        """S4: this coordinator was (or may have been) left out of an epoch,
        which settled its transactions: hold its COMMIT records until confirmed."""
        with self._lock:
            self._unconfirmed |= set(self._pending)

    def unconfirmed(self) -> dict[str, set[str]]:
        """COMMIT records waiting for a participant's word: txid -> its participants."""
        with self._lock:
            return {txid: set(self._pending.get(txid, ())) for txid in self._unconfirmed}

    def confirm(self, txid: str, outcome: str) -> None:
        """A participant said how ``txid`` ended: COMMIT keeps the record (and
        re-sending resumes), ABORT drops it (an epoch change settled it so)."""
        with self._lock:
            self._unconfirmed.discard(txid)
            if outcome != ABORT:
                return
            self._pending.pop(txid, None)
            self._decided_at.pop(txid, None)
            if txid in self._awaited:  # its reply must not take the dropped record for an acknowledged one
                self._awaited[txid] = True
                self._acknowledged.notify_all()
        self.storage.forget_decisions([txid])
        log.warning("%s: transaction %s, decided COMMIT here, was settled ABORT by an epoch without %s; "
                    "its record is dropped", self.name, txid, self.name)

    def decision(self, txid: str) -> str:
        """getDecision: "commit", "abort" (presumed when nothing is recorded) or "unknown"."""
        with self._lock:
            if self._active.get(txid) == self.VOTING or txid in self._unconfirmed:
                return UNKNOWN
            if txid in self._pending:
                return COMMIT
        if self.storage.has_decision(txid):
            return COMMIT
        if txids.started_us(txid) <= self.storage.records_since_us:
            return UNKNOWN  # decided, if at all, in data this replica no longer holds (set aside, rebuilt)
        return ABORT

    def acknowledge(self, txid: str, participant: str) -> None:
        """haveCommitted: ``participant`` applied ``txid``; forget it once all have."""
        with self._lock:
            waiting = self._pending.get(txid)
            if waiting is None:
                return
            waiting.discard(participant)
            self._acknowledged.notify_all()
            if not waiting:
                del self._pending[txid]
                self._decided_at.pop(txid, None)
                self._forgettable.append(txid)

    def drop_participant(self, name: str) -> None:
        """A member left for good: its acknowledgements are no longer awaited."""
        for txid in list(self.pending()):
            self.acknowledge(txid, name)

    def quiet(self) -> bool:
        """Nothing in flight: no transaction being decided, no COMMIT unacknowledged or held back."""
        with self._lock:
            return not self._active and not self._pending and not self._unconfirmed

    def pending(self) -> dict[str, set[str]]:
        with self._lock:
            return {txid: set(names) for txid, names in self._pending.items()}

    def forget_acknowledged(self) -> int:
        """Drop fully acknowledged COMMIT records from the log (one write for all)."""
        with self._lock:
            batch, self._forgettable = self._forgettable, []
        if batch:
            self.storage.forget_decisions(batch)
        return len(batch)

    def resend_commits(self, handles: Handles, min_age: float = 0.0) -> None:
        """Re-send doCommit for every COMMIT not acknowledged by all (recovery),
        decided at least ``min_age`` seconds ago (younger ones are still on their way)."""
        now = time.monotonic()
        for txid, waiting in self.pending().items():
            with self._lock:
                if now - self._decided_at.get(txid, 0.0) < min_age or txid in self._unconfirmed:
                    continue
            targets = {name: handles[name] for name in waiting if name in handles}
            if targets:
                round_ = _Round(txid, self.listener, keep=False)
                self._send_decision(round_, DO_COMMIT, targets, self.decision_timeout)

    # ------------------------------------------------------------- execution
    def execute(self, writes: Mapping[str, Optional[str]],
                handles: Handles | Callable[[bool], Handles],
                observe: Callable[[Mapping[str, Optional[str]]], Any] | None = None,
                guards: Sequence = (), *, trace: bool = True) -> Outcome:
        """Commit ``writes`` on every participant, or raise TransactionAborted
        (CompareFailed when one of ``guards`` does not hold: ``core.guards``).

        ``handles`` maps participant names to handles, or is a function
        returning them (called with True when the member list must be
        reloaded). Lost lock conflicts and stale member lists are retried with
        a new txid after a jittered, growing backoff; anything else aborts at
        once. ``observe`` runs after every vote was YES and before the
        decision, while the keys are locked. ``trace``: keep the round's
        messages in ``Outcome.trace`` (a listener hears them either way).
        """
        with self._lock:
            self._in_progress += 1
        try:
            return self._execute(writes, handles, observe, tuple(guards), trace)
        finally:
            with self._lock:
                self._in_progress -= 1
            self.company_left()

    def in_progress(self) -> int:
        """Transactions this coordinator is running now (the batchers' company)."""
        return self._in_progress

    def _execute(self, writes: Mapping[str, Optional[str]], handles: Handles | Callable[[bool], Handles],
                 observe: Callable[[Mapping[str, Optional[str]]], Any] | None, guards: tuple,
                 trace: bool = True) -> Outcome:
        backoff = self.conflict_backoff
        reload_members = False
        started_us = time.time_ns() // 1000
        for attempt in itertools.count(1):
            current = handles(reload_members) if callable(handles) else handles
            outcome = self._attempt(self.new_txid(started_us), writes, current, observe, guards, trace)
            outcome.attempts = attempt
            if outcome.committed:
                return outcome
            if outcome.compare_failed is not None:
                failed = outcome.compare_failed
                raise CompareFailed(failed.message, txid=outcome.txid,
                                    **{name: getattr(failed, name, None) for name in ("key", "op", "expected", "actual")})
            if not outcome.retryable or attempt > self.conflict_retries:
                raise TransactionAborted(_abort_message(outcome), replicas=outcome.refusals,
                                         txid=outcome.txid, attempts=attempt)
            reload_members = outcome.membership_changed
            self.retries += 1
            time.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, txid: str, writes: Mapping[str, Optional[str]],
                 handles: Handles, observe, guards: tuple = (), trace: bool = True) -> Outcome:
        participants = sorted(handles)
        round_ = _Round(txid, self.listener, keep=trace)
        with self._lock:
            self._active[txid] = self.VOTING
        try:
            refusals, voted_yes, retryable, membership_changed, compare_failed = self._collect_votes(
                round_, txid, dict(writes), handles, participants, guards)
            if refusals:
                outcome = self._abort(round_, txid, handles, refusals, voted_yes)
                outcome.retryable, outcome.membership_changed = retryable, membership_changed
                outcome.compare_failed = compare_failed
                return outcome
            self.failpoints.hit("coordinator.after_prepare")  # every participant voted YES; nothing decided
            # the replica's own participant can apply in the very write that forces the decision
            local = handles.get(self.name)
            commit_with_decision = local.commitWithDecision if local is not None else None
            try:
                observed = observe(writes) if observe is not None else None
                self.failpoints.hit("coordinator.before_decision")
                if commit_with_decision is not None:
                    commit_with_decision(txid, participants)  # the commit point, and the local apply
                else:
                    self.storage.log_decision(txid, participants)  # the commit point
            except Exception as error:
                log.error("%s: could not decide %s: %s", self.name, txid, describe_failure(error))
                reason = f"coordinator failed before its decision: {describe_failure(error)}"
                return self._abort(round_, txid, handles, {self.name: reason}, voted_yes)
            remaining = set(participants) - ({self.name} if commit_with_decision is not None else set())
            with self._lock:
                del self._active[txid]
                if remaining:
                    self._pending[txid] = remaining
                    self._decided_at[txid] = time.monotonic()
                    self._awaited[txid] = False  # until the client is answered (see confirm)
                else:
                    self._forgettable.append(txid)
            if commit_with_decision is not None:
                round_.note("decision", self.name, "COMMIT forced to the log, applied here in the same write")
            else:
                round_.note("decision", self.name, "COMMIT forced to the log")
            log.debug("decision %s COMMIT", txid)
        finally:
            with self._lock:
                self._active.pop(txid, None)
        try:
            self.failpoints.hit("coordinator.after_decision")
            targets = {name: handles[name] for name in remaining}
            if self.early_reply:  # safe while reads of PREPARED keys wait: no replica shows the old value
                round_.note("reply", self.name, "client answered at the commit point; phase 2 goes on")
            needed = self.quorum()
            lazy_to = self._may_wait_for_company(round_, participants, remaining, needed) if self.early_reply else ()
            unacknowledged = self._send_decision(round_, DO_COMMIT, targets, self.decision_timeout,
                                                 wait=not self.early_reply, lazy_to=lazy_to)
            self.committed += 1
            if needed is not None:
                holding = self._await_quorum(txid, participants, needed, time.monotonic() + self.decision_timeout)
                if holding is None:
                    raise OutcomeUnknown(
                        f"transaction {txid} committed at {self.name}, but an epoch without {self.name} settled "
                        f"it ABORT before {needed} replicas held it: read the key to find out",
                        replica=self.name, txid=txid)
                if holding < needed:
                    raise OutcomeUnknown(
                        f"transaction {txid} committed at {self.name}, but only {holding} of the {needed} replicas "
                        f"that must hold it applied it within {self.decision_timeout:g} s; it stands unless "
                        f"{self.name} fails first: read the key to find out", replica=self.name, txid=txid)
                round_.note("reply", self.name,
                            f"COMMIT held by {holding} replicas, a majority: the client is answered")
                unacknowledged = self.pending().get(txid, set())
        finally:
            with self._lock:
                self._awaited.pop(txid, None)
        return Outcome(txid, True, unacknowledged=sorted(unacknowledged), trace=round_.trace, observed=observed)

    def _may_wait_for_company(self, round_: _Round, participants: list[str], remaining: set[str],
                              needed: Optional[int]) -> set[str]:
        """With an early reply, the doCommits the client's answer does not wait
        for (they may wait for company, ``core.batching`` B4): every one without
        a quorum rule; with one (S1), all but those to the fastest voters that
        make up the majority the answer waits for. Either way each is sent
        within the batcher's short wait, and the answer waits for ``needed``
        holders whoever they are, so a slow chosen one costs that wait at most."""
        if needed is None:
            return set(remaining)
        holding = len(({self.name} | set(participants)) - remaining)
        by_speed = sorted(remaining, key=lambda name: (round_.vote_ms.get(name, float("inf")), name))
        return set(by_speed[max(0, needed - holding):])

    def _await_quorum(self, txid: str, participants: list[str], needed: int, deadline: float) -> Optional[int]:
        """S1: wait until ``needed`` replicas (this one's decision included)
        hold ``txid``'s COMMIT, or ``deadline``; how many do (None: an epoch
        change settled it ABORT and its record was dropped, ``confirm``: a
        record gone from ``_pending`` is not one every participant acknowledged)."""
        def holding() -> int:
            waiting = self._pending.get(txid, set())
            return len(({self.name} | set(participants)) - waiting)

        with self._acknowledged:
            while holding() < needed and not self._awaited.get(txid):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._acknowledged.wait(remaining)
            return None if self._awaited.get(txid) else holding()

    def vote_allowance(self, writes: Mapping[str, Optional[str]]) -> float:
        """How long the votes on ``writes`` may take: the vote timeout, and
        more for a large transaction, whose messages take longer to encode,
        carry and decode than a lost participant takes to be noticed."""
        return self.vote_timeout + size_allowance(sum(len(key) + len(value or "") for key, value in writes.items()))

    def _collect_votes(self, round_: _Round, txid: str, writes: dict,
                       handles: Handles, participants: list[str], guards: tuple = ()):
        allowance = self.vote_allowance(writes)
        deadline = time.monotonic() + allowance
        awaited = {}
        sent_at: dict[str, float] = {}
        epoch = self.epoch()
        arguments = (txid, writes, self.name, participants) + (() if epoch is None and not guards else (epoch,))
        if guards:
            arguments += ([list(guard) for guard in guards],)
        refusals: dict[str, str] = {}
        voted_yes: list[str] = []
        state: dict[str, Any] = {"retryable": True, "membership_changed": False, "compare_failed": None}

        def count(name: str, result: tuple) -> None:
            value, error, elapsed_ms = result
            at_ms = sent_at[name] + elapsed_ms if name in sent_at else None  # when the vote arrived
            if error is not None:
                # a participant out of reach past the vote's deadline did not vote in time, whichever
                # timer (the round's, or its call's, started a moment later) the coordinator saw first
                late = isinstance(error, ReplicaUnavailable) and elapsed_ms >= allowance * 1000.0
                refusals[name] = f"did not vote within {allowance:g} s" if late else describe_failure(error)
                if isinstance(error, MembershipChanged):
                    state["membership_changed"] = True
                else:
                    state["retryable"] = False
                if isinstance(error, CompareFailed):
                    state["compare_failed"] = state["compare_failed"] or error
                round_.note("vote", name, f"failed after {elapsed_ms:.2f} ms: {refusals[name]}", at_ms)
            elif value is True:
                voted_yes.append(name)
                round_.vote_ms[name] = elapsed_ms
                if round_.noting:
                    round_.note("vote", name, f"YES after {elapsed_ms:.2f} ms", at_ms)
            else:
                refusals[name] = CONFLICT
                round_.note("vote", name, f"NO after {elapsed_ms:.2f} ms (keys locked by another transaction)", at_ms)

        # the own vote comes first: no other replica has heard of the txid yet, so it has no outcome
        # anywhere and the vote looks none up (``LocalParticipant.canCommit``); and a NO here sends nothing
        if self.name in handles:
            round_.note(CAN_COMMIT, self.name, "local")
            count(self.name, timed(handles[self.name].canCommit, *arguments))
        if not refusals:
            for name in participants:
                if name != self.name:
                    round_.note(CAN_COMMIT, name, "sent")
                    sent_at[name] = round_.now_ms()
                    awaited[handles[name].send(CAN_COMMIT, *arguments, expires=deadline)] = name
        # one wake-up when every vote is in (not one per vote); each is noted at the time it arrived
        done, _ = wait_all(awaited, timeout=max(0.0, deadline - time.monotonic()))
        for reply in done:
            count(awaited.pop(reply), reply.result())
        for name in sorted(awaited.values()):
            refusals[name] = f"did not vote within {allowance:g} s"
            round_.note("vote", name, "timeout")
            state["retryable"] = False
        retryable, membership_changed = state["retryable"], state["membership_changed"]
        log.debug("votes %s yes=%s no=%s", txid, voted_yes, refusals)
        # a participant that timed out or failed may have prepared anyway: it must hear the abort too
        may_have_prepared = [name for name in refusals if refusals[name] != CONFLICT]
        return refusals, voted_yes + may_have_prepared, retryable, membership_changed, state["compare_failed"]

    def _abort(self, round_: _Round, txid: str, handles: Handles,
               refusals: dict[str, str], prepared: list[str]) -> Outcome:
        with self._lock:
            self._active.pop(txid, None)  # from now on getDecision answers abort (presumed)
        round_.note("decision", self.name, "ABORT (not logged: presumed abort)")
        log.debug("decision %s ABORT: %s", txid, refusals)
        targets = {name: handles[name] for name in prepared}
        if targets:
            self._send_decision(round_, DO_ABORT, targets, self.decision_timeout, wait=False)
        self.aborted += 1
        return Outcome(txid, False, refusals=refusals, trace=round_.trace)

    def _send_decision(self, round_: _Round, message: str, handles: Handles,
                       timeout: float, wait: bool = True, lazy_to: Collection[str] = ()) -> set[str]:
        """Send doCommit/doAbort to every handle in parallel; returns who did not
        acknowledge. The messages to ``lazy_to`` nobody waits for: they may wait a
        moment for company."""
        txid = round_.txid
        names = sorted(handles)
        awaited = {}
        if message == DO_COMMIT and self.failpoints.armed("coordinator.mid_commit"):
            first = next((name for name in names if name != self.name), None)
            if first is not None:
                self._deliver(round_, message, first, handles[first].send(DO_COMMIT, txid).result())
                names.remove(first)
            self.failpoints.hit("coordinator.mid_commit")
        #: when each message went (round clock): an answer is recorded when it arrived, sent + its elapsed time,
        #: not when the coordinator got round to it (after its own apply, after the slowest answer)
        sent_at: dict[str, float] = {}
        for name in names:
            if name != self.name:
                sent_at[name] = round_.now_ms()
                round_.note(message, name, "sent", sent_at[name])
                awaited[handles[name].send(message, txid, lazy=name in lazy_to)] = name
        unacknowledged: set[str] = set()
        if self.name in names:
            local = handles[self.name]
            apply = local.doCommit if message == DO_COMMIT else local.doAbort
            sent_at[self.name] = round_.now_ms()
            if not self._deliver(round_, message, self.name, timed(apply, txid), sent_at[self.name]):
                unacknowledged.add(self.name)
        if not wait:  # answers are recorded as they come
            for reply, name in awaited.items():
                reply.add_done_callback(
                    lambda done, name=name: self._deliver(round_, message, name, done.result(), sent_at[name]))
            return unacknowledged | set(awaited.values())
        done, not_done = wait_all(awaited, timeout=timeout)
        for reply in done:
            if not self._deliver(round_, message, awaited[reply], reply.result(), sent_at[awaited[reply]]):
                unacknowledged.add(awaited[reply])
        for reply in not_done:
            round_.note(message, awaited[reply], f"no answer within {timeout:g} s; will retry")
            unacknowledged.add(awaited[reply])
        return unacknowledged

    def _deliver(self, round_: _Round, message: str, name: str, result: Reply,
                 sent_at: Optional[float] = None) -> bool:
        """Record one participant's answer to doCommit/doAbort; True when acknowledged. With ``sent_at``
        (round clock, ms) the answer is noted when it arrived: ``sent_at`` + its elapsed time."""
        value, error, elapsed_ms = result
        at_ms = None if sent_at is None else sent_at + elapsed_ms
        if error is not None:
            round_.note(message, name, f"failed after {elapsed_ms:.2f} ms: {describe_failure(error)}; will retry",
                        at_ms)
            log.debug("%s %s to %s failed: %s", message, round_.txid, name, describe_failure(error))
            return False
        if message == DO_COMMIT:
            if round_.noting:
                round_.note(HAVE_COMMITTED, name, f"acknowledged after {elapsed_ms:.2f} ms", at_ms)
            self.acknowledge(round_.txid, name)
        else:
            round_.note(message, name, f"done after {elapsed_ms:.2f} ms", at_ms)
        return True

    def close(self) -> None:
        """Nothing to release: messages travel on the handles' own threads."""


CONFLICT = "voted NO: keys locked by a concurrent transaction"


def _abort_message(outcome: Outcome) -> str:
    parts = [f"{name}: {reason}" for name, reason in sorted(outcome.refusals.items())]
    return ("transaction aborted on every replica, nothing was written (" + "; ".join(parts) + ")")
