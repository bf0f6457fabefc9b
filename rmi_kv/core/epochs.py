"""Epochs and read leases: the rules by which writes go on while replicas are down.

Not yet wired into the replica: these are the rules its failover is to
follow, written down first and tested with a fake clock
(``tests/core/test_epochs.py``).

An *epoch* is ``(number, members)``: the replicas that take part in every
write while it lasts. The *configured* replicas are every member of the
member list (``core.members``), up or down; a majority is counted of them,
never of an epoch's members, so two epochs can never both make progress.

Invariants:

- **E1, one epoch at a time.** An epoch is installed only with the votes of a
  majority of the configured replicas, each for that number and above any
  number it voted for before (``EpochVoter.vote``). Two majorities share a
  replica, and that replica votes once per number, so two proposals of one
  number cannot both be installed, and the installed numbers only grow.
- **E2, write-all within an epoch.** A transaction commits only with the YES
  of every member of its epoch, and a participant votes NO on another
  epoch's canCommit (``accepts_transaction``). So every member of an epoch
  holds every write committed in it (applied, or prepared and locked).
- **E3, no write lost across epochs.** Every epoch has a majority of the
  configured replicas as members, and a new epoch's voters are a majority
  too: some voter is a member of the latest installed epoch and reports it.
  ``plan_epoch`` builds the next epoch from the latest one reported and names
  such a member as the source every newcomer copies its data from (replacing
  its own, never merging by version). A proposal that sees no member of the
  latest epoch among its voters cannot be made.
- **L1, no stale read.** A replica serves local reads only while it holds a
  lease (``Lease.valid``): granted by a majority of the configured replicas
  (itself included) to a member of their current epoch, and running from
  the moment the renewal was *sent*, on the replica's own monotonic clock.
- **L2, no epoch behind a live lease.** A replica that granted X a lease
  votes for no epoch that leaves X out until ``lease * (1 + CLOCK_RATE) +
  MARGIN`` has passed on its own clock since it granted it
  (``EpochVoter.vote``). X's lease needed a majority of grants and the new
  epoch a majority of votes: some voter granted X's latest lease and waits
  it out, so X has stopped serving reads before any write goes on without it.

Assumption: between any two replicas, clocks advance at rates that differ by
at most ``CLOCK_RATE`` (1 %). Wall-clock jumps change nothing (only
``time.monotonic()`` is used). A clock running at half speed is outside the
assumption: its lease outlives the grants (tested, to show the bound
matters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

#: how much faster than another any replica's clock may run, at most
CLOCK_RATE = 0.01
#: added to every wait a voter owes a lease it granted, for scheduling delays
MARGIN = 0.05


@dataclass(frozen=True)
class Epoch:
    """The members that take part in every write while this epoch lasts."""

    number: int
    members: frozenset

    @staticmethod
    def of(number: int, members: Iterable[str]) -> "Epoch":
        return Epoch(number, frozenset(members))


def majority(configured: Iterable[str]) -> int:
    """How many of the configured replicas make a majority (3 of 5)."""
    return len(set(configured)) // 2 + 1


def accepts_transaction(current: Epoch, self_name: str, epoch_number: int) -> bool:
    """E2: a participant takes part in a transaction of ``epoch_number`` only
    when that is its current epoch and it is a member of it."""
    return epoch_number == current.number and self_name in current.members


@dataclass
class Lease:
    """A replica's read lease (L1): valid until ``expires`` on its monotonic clock."""

    duration: float
    expires: float = float("-inf")

    def renewed(self, sent_at: float, grants: Iterable[str], configured: Iterable[str]) -> None:
        """A renewal sent at ``sent_at`` came back granted by ``grants``:
        with a majority of ``configured`` it runs until ``sent_at + duration``."""
        if len(set(grants) & set(configured)) >= majority(configured):
            self.expires = max(self.expires, sent_at + self.duration)

    def valid(self, now: float) -> bool:
        return now < self.expires


@dataclass(frozen=True)
class Vote:
    """A voter's yes to a proposal: its current epoch, and whether its data is
    complete (False while it still copies from a member: it cannot be a source)."""

    epoch: Epoch
    complete: bool = True


@dataclass
class Refusal:
    """Why a voter did not vote for a proposal, and when asking again may help."""

    reason: str
    retry_after: Optional[float] = None


@dataclass
class EpochVoter:
    """One replica's side of epoch changes: its current epoch, the highest
    number it voted for, and the leases it granted (all durable but the grants,
    which a restart makes moot: a restarted voter waits one full lease first)."""

    current: Epoch
    lease: float
    promised: int = 0
    #: holder -> when (this replica's monotonic clock) its latest lease was granted
    granted: dict = field(default_factory=dict)

    def owed_until(self, holder: str) -> float:
        """L2: until when this voter must not leave ``holder`` out of an epoch."""
        granted_at = self.granted.get(holder)
        if granted_at is None:
            return float("-inf")
        return granted_at + self.lease * (1 + CLOCK_RATE) + MARGIN

    def grant(self, holder: str, epoch_number: int, now: float) -> bool:
        """Grant ``holder`` a read lease, if it is a member of this voter's
        current epoch (and asks for that epoch)."""
        if not accepts_transaction(self.current, holder, epoch_number) or self.promised > self.current.number:
            return False  # an epoch change is under way: no new lease until it is settled
        self.granted[holder] = now
        return True

    def vote(self, proposal: Epoch, now: float, *, complete: bool = True) -> "Vote | Refusal":
        """E1 and L2: vote for ``proposal``, answering with this voter's current
        epoch and whether its data is complete (for ``plan_epoch``), or say why not."""
        if proposal.number <= max(self.promised, self.current.number):
            return Refusal(f"already voted for epoch {max(self.promised, self.current.number)}")
        waits = [self.owed_until(holder) for holder in self.granted if holder not in proposal.members]
        latest = max(waits, default=float("-inf"))
        if latest > now:
            return Refusal("a replica left out may still hold a read lease", retry_after=latest - now)
        self.promised = proposal.number
        return Vote(self.current, complete)

    def install(self, epoch: Epoch) -> bool:
        """Take ``epoch`` as current (once a majority voted for it); False for an older one."""
        if epoch.number < self.current.number or epoch.number < self.promised:
            return False
        self.current = epoch
        self.granted = {holder: at for holder, at in self.granted.items() if holder in epoch.members}
        return True


@dataclass(frozen=True)
class Plan:
    """The next epoch, and where its newcomers copy their data from."""

    epoch: Epoch
    #: a member of the latest installed epoch: it holds every write committed so far
    source: str
    #: members of the new epoch that were not members of the latest one (they catch up first)
    newcomers: frozenset


def plan_epoch(proposal: Epoch, votes: Mapping[str, Vote], configured: Iterable[str]) -> Optional[Plan]:
    """E1 and E3: what installing ``proposal`` takes, given the ``votes`` it
    got (voter -> its yes), or None when it may not be installed: fewer than a
    majority of ``configured`` voted, its members are not a majority, or none
    of its members is a voter of the latest installed epoch a voter reported
    whose data is complete."""
    configured = set(configured)
    voters = set(votes) & configured
    members = set(proposal.members)
    if len(voters) < majority(configured) or len(members & configured) < majority(configured):
        return None
    latest = max((votes[voter].epoch for voter in voters), key=lambda epoch: epoch.number)
    if proposal.number <= latest.number:
        return None
    sources = sorted(voter for voter in voters & members
                     if voter in latest.members and votes[voter].epoch == latest and votes[voter].complete)
    if not sources:
        return None
    return Plan(proposal, sources[0], frozenset(members - latest.members))
