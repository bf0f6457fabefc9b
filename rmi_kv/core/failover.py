"""Failover: one replica's epochs and read lease, by the rules of ``core.epochs``.

No network code. The replica's background task calls ``tick`` with a
``Call`` that reaches the other replicas in parallel; the remote methods
``grantLease``, ``voteEpoch`` and ``installEpoch`` call ``grant``, ``vote``
and ``install``; unit tests wire several ``Failover`` objects together with
plain functions and a fake clock (``tests/core/test_failover.py``).

Every ``lease / 4`` seconds a tick

1. **renews** this replica's read lease: it asks every configured replica for
   a grant in its epoch. The answers are the failure detector too (who
   answered: a replica grants leases only to those it hears so, see
   ``_reaches``), and tell of later epochs and of replicas outside the epoch;
2. **learns** a later epoch an answer reports, installing it here;
3. **proposes** a new epoch, when this replica is the first (by name) of the
   members it hears, its data is complete, and a member went unheard for
   ``suspect_after`` (left out) or a configured replica outside the epoch
   answers (taken in, as a newcomer that copies its data). Any replica
   proposes when a vote fenced it for longer than one and a half leases with
   no install (a proposer that died midway; a live one is done by then: its
   rounds take a lease at most): the same members, a higher number.

A replica that shuts down gives up its lease first and says so (``leave``):
the others need not wait it out, and leave it out at once.

An epoch that leaves coordinators out settles their transactions as it is
installed (``core.settle``): the votes name the PREPARED transactions of
coordinators left out, the proposer asks every member what it holds of them,
and the plan carries the outcomes, which each member applies before it
installs the epoch.

A replica serves reads while it is a member of its epoch, holds complete
data and a valid lease (``read_refusal``); it coordinates writes while it is a
member and not fenced (``coordinate_refusal``); it votes YES only on its own
epoch's transactions (``transaction_refusal``). With failover off it stays in
epoch 0, the whole member list, and none of this applies: today's strict
protocol.

Durable (``EpochStore``, forced before the answer it backs): the epoch
installed here with its plan, and the highest number voted for with its
members. In memory: the lease, the grants (a restart waits one lease,
``EpochVoter.restarted``) and who was heard when.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core import txid as txids
from rmi_kv.core.settle import conflicting, settle
from rmi_kv.core.epochs import Epoch, EpochVoter, Lease, Plan, Refusal, Vote, majority, plan_epoch
from rmi_kv.storage.interfaces import EpochStore

log = logging.getLogger(__name__)

#: answers of a parallel call: name -> (value, error); a name that did not answer has an error
Answers = Mapping[str, tuple[Any, Optional[BaseException]]]

#: remote method names (the replica exposes them; the tick calls them on peers)
GRANT_LEASE, VOTE_EPOCH, INSTALL_EPOCH, SETTLE_QUERY, LEAVE_EPOCH = (
    "grantLease", "voteEpoch", "installEpoch", "settleQuery", "leaveEpoch")

#: roles a replica reports
MEMBER, CATCHING_UP, OUTSIDE, REMOVED = "member", "catching up", "outside the epoch", "removed"


class Call(Protocol):
    """Call ``method(*args)`` on each of ``names`` in parallel, within ``timeout`` seconds."""

    def __call__(self, names: Iterable[str], method: str, *args: Any, timeout: float) -> Answers: ...


def plan_as_dict(plan: Plan, settled: Optional[Mapping[str, str]] = None, proposer: Optional[str] = None) -> dict:
    """A plan as plain values, for the wire and the disk, with the outcomes it
    settles and who proposed it (and so settled them)."""
    return {"number": plan.epoch.number, "members": sorted(plan.epoch.members),
            "newcomers": sorted(plan.newcomers), "source": plan.source, "settled": dict(settled or {}),
            "proposer": proposer}


class Settling(Protocol):
    """The participant's side of settling (``core.settle``)."""

    def doubtful(self, members: Iterable[str]) -> list[str]: ...

    def settle_state(self, txids: Iterable[str]) -> dict[str, str]: ...

    def apply_settled(self, outcomes: Mapping[str, str]) -> None: ...


class NothingToSettle:
    """A replica with no transactions (unit tests of the epoch rules alone)."""

    def doubtful(self, members: Iterable[str]) -> list[str]:
        return []

    def settle_state(self, txids: Iterable[str]) -> dict[str, str]:
        return {}

    def apply_settled(self, outcomes: Mapping[str, str]) -> None:
        pass


class Failover:
    """One replica's epoch, promise, lease and failure detector."""

    def __init__(self, name: str, *, store: EpochStore, configured: Callable[[], Iterable[str]],
                 complete: Callable[[], bool], lease: float = 1.0, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic,
                 reset_data: Callable[[], None] = lambda: None,
                 catch_up: Callable[[], None] = lambda: None, left_out: Callable[[], None] = lambda: None,
                 settling: Settling = NothingToSettle(), failpoints: Failpoints = NO_FAILPOINTS) -> None:
        """``configured``: the member list (majorities are counted of it);
        ``complete``: False while this replica's data is being copied;
        ``reset_data`` empties the data before this replica installs an epoch
        as a newcomer, ``catch_up`` starts the copy once it did; ``left_out``
        runs when it installs an epoch it is not a member of, or is new to
        (its own transactions may have been settled: ``core.settle`` S4)."""
        self.name = name
        self.enabled = enabled
        self.lease_seconds = lease
        self.suspect_after = lease / 2
        self._store = store
        self._configured = configured
        self._complete = complete
        self._clock = clock
        self._reset_data = reset_data
        self._catch_up = catch_up
        self._left_out = left_out
        self.settling = settling
        self.failpoints = failpoints
        state = store.epoch_state() or {}
        number = int(state.get("number", 0))
        self._plan = {"number": number, "members": list(state.get("members", [])),
                      "newcomers": list(state.get("newcomers", [])), "source": state.get("source"),
                      "settled": dict(state.get("settled") or {}), "proposer": state.get("proposer")}
        promised_members = state.get("promised_members")
        self.voter = EpochVoter(Epoch.of(number, self._plan["members"]), lease,
                                promised=int(state.get("promised", number)),
                                promised_members=None if promised_members is None else frozenset(promised_members))
        self.started = clock()
        self.voter.restarted(self._configured_set(), self.started)
        self.lease = Lease(lease)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        #: peer -> when (this clock) it last answered a renewal
        self.heard: dict[str, float] = {}
        self._answered: set[str] = set()
        #: peer -> when it said it leaves (``left``), until it answers a renewal sent later
        self._left: dict[str, float] = {}
        self._fenced_since: Optional[float] = now_if(self.voter.fenced, self.started)
        self._retry_at = 0.0
        #: the highest epoch number any answer mentioned (a proposal goes above it)
        self._highest_seen = 0
        #: bumped each time the data is emptied for a copy (a read that spans one is refused)
        self.generation = 0
        #: why the last proposal could not be made (for status), or None
        self.stalled: Optional[str] = None

    # ---------------------------------------------------------------- views
    def _configured_set(self) -> frozenset:
        return frozenset(self._configured())

    def _sync(self) -> None:
        """Epoch 0's members are the member list as it is now (E0)."""
        if self.voter.current.number == 0:
            self.voter.current = Epoch(0, self._configured_set())

    @property
    def epoch(self) -> Epoch:
        with self._lock:
            self._sync()
            return self.voter.current

    def members(self) -> frozenset:
        """The members every write of this replica's epoch must reach."""
        return self.epoch.members

    def plan(self) -> dict:
        """The epoch installed here, with its newcomers and source (plain values)."""
        with self._lock:
            epoch = self.epoch
            return {**self._plan, "number": epoch.number, "members": sorted(epoch.members)}

    def role(self) -> str:
        epoch = self.epoch
        if self.name not in self._configured_set():
            return REMOVED
        if self.name not in epoch.members:
            return OUTSIDE
        return MEMBER if self._complete() else CATCHING_UP

    def describe(self) -> dict:
        """Status fields: epoch, promise, lease, role, who is heard."""
        now = self._clock()
        with self._lock:
            plan = self.plan()
            return {"failover": self.enabled, "epoch": plan, "role": self.role(),
                    "promised": self.voter.promised, "fenced": self.voter.fenced,
                    "lease": {"seconds": self.lease_seconds, "valid": self.lease.valid(now) if self.enabled else None,
                              "remaining": round(max(0.0, self.lease.expires - now), 3) if self.enabled else None},
                    "heard": {peer: round(now - at, 3) for peer, at in sorted(self.heard.items())},
                    "stalled": self.stalled}

    # ------------------------------------------------------------- refusals
    def read_refusal(self) -> Optional[str]:
        """Why this replica may not serve a read now (None: it may)."""
        if not self.enabled:
            return None
        epoch = self.voter.current  # no lock, no member list: this is on every read
        if epoch.number and self.name not in epoch.members:
            return (f"{self.name} is not a member of epoch {epoch.number} (members: {', '.join(sorted(epoch.members))}) "
                    f"and may have missed writes; it rejoins by itself")
        if not self._complete():
            return f"{self.name} is copying the data of epoch {epoch.number} from a member"
        if not self.lease.valid(self._clock()):
            return (f"{self.name} holds no read lease: no majority of the replicas renewed it within "
                    f"{self.lease_seconds:g} s")
        return None

    def coordinate_refusal(self) -> Optional[str]:
        """Why this replica may not coordinate a write now (None: it may)."""
        if not self.enabled:
            return None
        epoch = self.epoch
        if self.name not in epoch.members:
            return f"{self.name} is not a member of epoch {epoch.number}; it rejoins by itself"
        if not self._complete():
            return f"{self.name} is copying the data of epoch {epoch.number} from a member"
        members = self._configured_set()
        if len(epoch.members & members) < majority(members):
            return f"epoch {epoch.number} holds no majority of the {len(members)} replicas"
        answering = self._answered & members
        if self.lacks_majority():
            return (f"no majority: {len(answering)} of the {len(members)} replicas answer "
                    f"({', '.join(sorted(answering))}); writes wait until {majority(members)} do")
        return None

    def soon(self) -> bool:
        """Will a refusal of this replica pass by itself within about a lease? A
        member copying its data or renewing its lease, or a replica that just
        started and rejoins: yes; one left outside the epoch for long (cut off,
        say), or without a majority: no."""
        if self.lacks_majority():
            return False
        if self.name in self.voter.current.members or self.voter.current.number == 0:
            return True
        return self._clock() - self.started < 5 * self.lease_seconds

    def lacks_majority(self) -> bool:
        """Too few replicas answer for any epoch to write: no other replica can take a write either."""
        members = self._configured_set()
        return bool(self._answered) and len(self._answered & members) < majority(members)

    def transaction_refusal(self, epoch_number: Optional[int]) -> Optional[str]:
        """E2 and F: why this replica votes NO on a transaction of ``epoch_number`` (None: it may vote YES)."""
        if not self.enabled:
            return None
        with self._lock:
            self._sync()
            if epoch_number is not None and self.voter.takes_transaction(self.name, epoch_number):
                return None
            current = self.voter.current
            if self.voter.fenced:
                return f"{self.name} voted for epoch {self.voter.promised}: epoch {current.number} takes no more writes"
            if epoch_number is None:
                return f"{self.name} runs with failover on and the coordinator without: every write needs an epoch"
            if epoch_number != current.number:
                return f"the transaction is of epoch {epoch_number} and {self.name} is in epoch {current.number}"
            return f"{self.name} is not a member of epoch {current.number}"

    def commit_refusal(self, txid: str) -> Optional[str]:
        """S2: why a COMMIT of ``txid`` may not be applied here now: this
        replica voted for an epoch that leaves its coordinator out, and that
        epoch's change settles it (None: it may be applied)."""
        if not self.enabled or not self.voter.fenced:
            return None
        try:
            coordinator = txids.coordinator_of(txid)
        except ValueError:
            return None
        with self._lock:
            members = self.voter.promised_members
            if not self.voter.fenced or members is None or coordinator in members:
                return None
            return (f"{self.name} voted for epoch {self.voter.promised} without {coordinator}, which settles "
                    f"{coordinator}'s transactions")

    def wait_for_change(self, number: int, timeout: float) -> bool:
        """Wait until the epoch installed here is not ``number`` any more; True when it changed."""
        deadline = self._clock() + timeout
        with self._changed:
            while self.voter.current.number == number:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    # ------------------------------------------------------ remote handlers
    def grant(self, holder: str, epoch_number: int) -> dict:
        """grantLease: grant ``holder`` a read lease if the rules allow and this
        replica reaches it; always answer with this replica's epoch (a lagging
        holder learns it so)."""
        with self._lock:
            self._sync()
            granted = self.enabled and self._reaches(holder) and self.voter.grant(holder, epoch_number, self._clock())
            return {"granted": granted, "epoch": self.plan(), "complete": self._complete(),
                    "member": self.name in self.voter.current.members, "promised": self.voter.promised}

    def left(self, holder: str) -> None:
        """leaveEpoch: ``holder`` shut down after it gave up its lease: no grant
        to wait out, and no need to wait for it to go unheard."""
        with self._lock:
            self.voter.granted.pop(holder, None)
            self._left[holder] = self._clock()
        log.info("%s left: it holds no lease", holder)

    def leave(self, call: Call) -> None:
        """Shutting down: stop serving reads, then tell the others (``left``)."""
        if not self.enabled:
            return
        with self._lock:
            self.lease.expires = float("-inf")
        call(sorted(self._configured_set() - {self.name}), LEAVE_EPOCH, self.name, timeout=self.lease_seconds / 4)

    def _reaches(self, holder: str) -> bool:
        """Does this replica reach ``holder``: it answered the latest renewal
        round, or one within the last lease?

        Cut off one way (it calls the others, nothing gets through to it), a
        replica would go on renewing its lease with grants from replicas that
        cannot reach it; they could then never vote for an epoch without it
        (L2), and no write would go on. So a lease goes only to a replica the
        granter reaches itself (granting less is always safe)."""
        if holder == self.name or holder in self._answered:
            return True
        return self._clock() - self.heard.get(holder, self.started) <= self.lease_seconds

    def vote(self, number: int, members: Iterable[str], proposer: str) -> dict:
        """voteEpoch: vote for epoch ``number`` with ``members`` (the promise is
        forced first), or say why not."""
        proposal = Epoch.of(number, members)
        with self._lock:
            self._sync()
            answer = self.voter.vote(proposal, self._clock(), complete=self._complete())
            if isinstance(answer, Refusal):
                log.debug("voteEpoch %d from %s refused: %s", number, proposer, answer.reason)
                return {"vote": False, "reason": answer.reason, "retry_after": answer.retry_after,
                        "promised": max(self.voter.promised, self.voter.current.number)}
            self._save()
            if self._fenced_since is None:
                self._fenced_since = self._clock()
            log.debug("voteEpoch %d from %s: yes (members %s)", number, proposer, ", ".join(sorted(proposal.members)))
            return {"vote": True, "epoch": {"number": answer.epoch.number, "members": sorted(answer.epoch.members)},
                    "complete": answer.complete, "doubtful": self.settling.doubtful(proposal.members)}

    def install(self, plan: Mapping) -> bool:
        """installEpoch: take the epoch a majority voted for; a newcomer to it
        empties its data first, and starts copying once it is installed."""
        epoch = Epoch.of(int(plan["number"]), plan["members"])
        newcomer = self.name in set(plan.get("newcomers", ()))
        settled = dict(plan.get("settled") or {})
        with self._lock:
            if epoch.number <= self.voter.current.number or epoch.number < self.voter.promised:
                return False
            if newcomer:
                self.generation += 1  # first: a copy finishing now must see it is stale
                self._reset_data()
            else:
                self.settling.apply_settled(settled)
            if newcomer or self.name not in epoch.members:
                self._left_out()
            self.voter.install(epoch)
            self._plan = {"number": epoch.number, "members": sorted(epoch.members),
                          "newcomers": sorted(plan.get("newcomers", ())), "source": plan.get("source"),
                          "settled": settled, "proposer": plan.get("proposer")}
            self._save()
            self._fenced_since = now_if(self.voter.fenced, self._clock())
            self._changed.notify_all()
        log.info("installed epoch %d: members %s%s", epoch.number, ", ".join(sorted(epoch.members)),
                 f"; {self.name} copies its data from {plan.get('source')}" if newcomer else "")
        if newcomer:
            self._catch_up()
        return True

    def _save(self) -> None:
        self._store.save_epoch_state({**self._plan, "promised": self.voter.promised,
                                      "promised_members": None if self.voter.promised_members is None
                                      else sorted(self.voter.promised_members)})

    # ----------------------------------------------------------------- tick
    def tick(self, call: Call) -> None:
        """One round: renew the lease, learn a later epoch, propose one if needed."""
        if not self.enabled:
            return
        sent_at = self._clock()
        epoch = self.epoch
        configured = self._configured_set()
        others = sorted(configured - {self.name})
        answers = dict(call(others, GRANT_LEASE, self.name, epoch.number, timeout=self.lease_seconds / 4))
        answers[self.name] = (self.grant(self.name, epoch.number), None)
        grants, later, answered = set(), None, set()
        for peer, (answer, error) in answers.items():
            if error is not None or not isinstance(answer, dict):
                continue
            answered.add(peer)
            if answer.get("granted"):
                grants.add(peer)
            reported = answer.get("epoch") or {}
            number = int(reported.get("number", 0))
            if number > epoch.number and (later is None or number > int(later["number"])):
                later = reported
            self._highest_seen = max(self._highest_seen, int(answer.get("promised", 0)))
        with self._lock:
            for peer in answered - {self.name}:
                self.heard[peer] = sent_at
                if self._left.get(peer, sent_at) < sent_at:  # asked after it left, and it answered: back
                    del self._left[peer]
            self._answered = answered
            if self.name in epoch.members and self._complete():
                self.lease.renewed(sent_at, grants, configured)
        if later is not None and int(later["number"]) > epoch.number:
            self.install(later)
            return
        self._maybe_propose(call, epoch, configured, answered)

    def _maybe_propose(self, call: Call, epoch: Epoch, configured: frozenset, answered: set) -> None:
        now = self._clock()
        if now < self._retry_at:
            return
        alive = answered | {self.name}
        suspects = {member for member in epoch.members - {self.name}
                    if now - self.heard.get(member, self.started) > self.suspect_after or member in self._left}
        joiners = (alive & configured) - epoch.members
        with self._lock:
            stale_fence = self._fenced_since is not None and now - self._fenced_since > 1.5 * self.lease_seconds
        if stale_fence:
            if random.random() < 0.5:  # two replicas finishing a dead proposer's change rarely collide twice
                self._retry_at = now + random.uniform(0, self.lease_seconds / 4)
                return
        elif not (suspects or joiners):
            self.stalled = None
            return
        elif not (self.name in epoch.members and self._complete()):
            return
        else:
            heard_members = (epoch.members - suspects) & alive
            if min(heard_members) != self.name:
                return  # the first of the members heard proposes
        members = ((epoch.members - suspects) | joiners) & alive
        if len(members & configured) < majority(configured):
            self.stalled = (f"no majority: {len(members)} of {len(configured)} replicas answer "
                            f"({', '.join(sorted(members))}); writes wait for {majority(configured)}")
            self._retry_at = now + self.lease_seconds / 4
            return
        self._propose(call, members, configured)

    def _propose(self, call: Call, members: frozenset, configured: frozenset) -> Optional[Plan]:
        """Ask for votes on a new epoch of ``members``; install it everywhere when a majority agrees."""
        with self._lock:
            number = max(self.voter.promised, self.voter.current.number, self._highest_seen) + 1
        others = sorted(configured - {self.name})
        answers = dict(call(others, VOTE_EPOCH, number, sorted(members), self.name, timeout=self.lease_seconds / 2))
        answers[self.name] = (self.vote(number, sorted(members), self.name), None)
        votes: dict[str, Vote] = {}
        waits, refusals, doubtful = [], {}, set()
        for peer, (answer, error) in answers.items():
            if error is not None or not isinstance(answer, dict):
                refusals[peer] = str(error) if error is not None else "no answer"
            elif answer.get("vote"):
                reported = answer.get("epoch") or {}
                votes[peer] = Vote(Epoch.of(int(reported.get("number", 0)), reported.get("members", ())),
                                   bool(answer.get("complete")))
                doubtful.update(txid for txid in answer.get("doubtful") or () if isinstance(txid, str))
            else:
                refusals[peer] = str(answer.get("reason"))
                self._highest_seen = max(self._highest_seen, int(answer.get("promised", 0)))
                if answer.get("retry_after"):
                    waits.append(float(answer["retry_after"]))
        plan = plan_epoch(Epoch.of(number, members), votes, configured)
        if plan is None:
            self.stalled = (f"epoch {number} of {', '.join(sorted(members))} not installed: "
                            + ("; ".join(f"{peer}: {reason}" for peer, reason in sorted(refusals.items()))
                               or "no member of the latest epoch holds complete data"))
            log.info("%s", self.stalled)
            self._retry_at = self._clock() + (max(waits) if waits else self.lease_seconds / 4) * random.uniform(1.0, 1.3)
            return None
        settled = self._settle(call, plan, sorted(votes), sorted(doubtful)) if doubtful else {}
        if settled is None:
            self._retry_at = self._clock() + self.lease_seconds / 4
            return None
        self.stalled = None
        self.failpoints.hit("failover.after_votes")  # the votes are in; no member has installed it
        as_dict = plan_as_dict(plan, settled, self.name)
        log.info("epoch %d agreed by %s: members %s, newcomers %s", number, ", ".join(sorted(votes)),
                 ", ".join(as_dict["members"]), ", ".join(as_dict["newcomers"]) or "none")
        self.install(as_dict)
        call(sorted(set(others)), INSTALL_EPOCH, as_dict, timeout=self.lease_seconds / 2)
        return plan


    def _settle(self, call: Call, plan: Plan, voters: list[str], txids: list[str]) -> Optional[dict]:
        """S3: the outcomes of the transactions the voters hold in doubt for
        coordinators left out, asked of every member and voter; None when a
        member did not answer (the proposal is tried again)."""
        asked = sorted(set(voters) | set(plan.epoch.members))
        answers = dict(call([name for name in asked if name != self.name], SETTLE_QUERY, txids,
                            timeout=self.lease_seconds / 2))
        if self.name in asked:
            answers[self.name] = (self.settling.settle_state(txids), None)
        reports = {name: answer for name, (answer, error) in answers.items()
                   if error is None and isinstance(answer, dict)}
        silent = sorted(set(plan.epoch.members) - set(reports))
        if silent:
            self.stalled = (f"epoch {plan.epoch.number}: {', '.join(silent)} did not say what it holds of "
                            f"{len(txids)} transaction(s) in doubt")
            log.info("%s", self.stalled)
            return None
        for txid in conflicting(reports):
            log.error("transaction %s is held as COMMIT by one replica and ABORT by another", txid)
        outcomes = settle(reports, txids)
        log.info("epoch %d settles %d transaction(s) of coordinators left out: %s", plan.epoch.number, len(outcomes),
                 ", ".join(f"{txid} {outcome}" for txid, outcome in sorted(outcomes.items())))
        return outcomes


def now_if(condition: bool, now: float) -> Optional[float]:
    """``now`` when ``condition`` holds, else None."""
    return now if condition else None
