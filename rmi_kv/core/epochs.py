"""Epochs and read leases: the rules by which writes go on while replicas are down.

Pure rules, tested with a fake clock (``tests/core/test_epochs.py``);
``core.failover`` applies them for one replica.

An *epoch* is ``(number, members)``: the replicas that take part in every
write while it lasts. The *configured* replicas are every member of the
member list (``core.members``), up or down; a majority is counted of them,
never of an epoch's members, so two epochs can never both make progress.

Invariants:

- **E0, the first epoch.** Epoch 0 is today's strict protocol: its members
  are the whole member list. A cluster that never lost a replica stays in it;
  ``--failover off`` never leaves it.
- **E1, one epoch at a time.** An epoch is installed only with the votes of a
  majority of the configured replicas, each for that number and above any
  number it voted for before (``EpochVoter.vote``). Two majorities share a
  replica, and that replica votes once per number, so two proposals of one
  number cannot both be installed, and the installed numbers only grow.
- **F, a vote fences the old epoch.** A replica that voted for a number above
  its current epoch's takes no new transaction of its current epoch
  (``EpochVoter.takes_transaction``). Every epoch's members are a majority, so
  some voter of the next epoch is a member of the current one: once it voted,
  the current epoch commits nothing more, and what it reported is the truth.
- **E2, write-all within an epoch.** A transaction commits only with the YES
  of every member of its epoch, and a participant votes NO on another
  epoch's canCommit (``accepts_transaction``). So every member of an epoch
  holds every write committed in it (applied, or prepared and locked).
- **E3, no write lost across epochs.** Every epoch has a majority of the
  configured replicas as members, and a new epoch's voters are a majority
  too: some voter is a member of the latest epoch that committed anything,
  and installed it (it voted YES to those writes), so the highest number
  reported is at least that epoch's. Every member of the next epoch voted for
  it; ``plan_epoch`` keeps as members with their data the voters that report
  that highest epoch, are members of it and hold complete data; every other
  member is a *newcomer*, which empties its data and copies it from one of
  those (replacing its own, never merging by version) while it takes part in
  every write of the new epoch. A proposal with none of those cannot be made.
- **L1, no stale read.** A replica serves local reads only while it holds a
  lease (``Lease.valid``): granted by a majority of the configured replicas
  (itself included) to a member of their current epoch, and running from
  the moment the renewal was *sent*, on the replica's own monotonic clock.
- **L2, no epoch behind a live lease.** A replica that granted X a lease
  votes for no epoch that leaves X out until ``lease * (1 + CLOCK_RATE) +
  MARGIN`` has passed on its own clock since it granted it
  (``EpochVoter.vote``), and once it voted for one that leaves X out it grants
  X nothing more. X's lease needed a majority of grants and the new epoch a
  majority of votes: some voter granted X's latest lease and waits it out, so
  X has stopped serving reads before any write goes on without it. A voter
  that restarts forgot its grants: it waits one full lease from its start
  (``EpochVoter.restarted``).

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
    number it voted for and that proposal's members (all durable), and the
    leases it granted (in memory: a restart makes them moot, see ``restarted``)."""

    current: Epoch
    lease: float
    promised: int = 0
    #: members of the proposal numbered ``promised`` (None: it promised nothing above ``current``)
    promised_members: Optional[frozenset] = None
    #: holder -> when (this replica's monotonic clock) its latest lease was granted
    granted: dict = field(default_factory=dict)

    def restarted(self, configured: Iterable[str], now: float) -> None:
        """L2 after a restart: any lease granted before it may still run, so
        count one granted to every configured replica now."""
        self.granted = {holder: now for holder in configured}

    @property
    def fenced(self) -> bool:
        """F: it voted for a later epoch that is not installed here yet."""
        return self.promised > self.current.number

    def owed_until(self, holder: str) -> float:
        """L2: until when this voter must not leave ``holder`` out of an epoch."""
        granted_at = self.granted.get(holder)
        if granted_at is None:
            return float("-inf")
        return granted_at + self.lease * (1 + CLOCK_RATE) + MARGIN

    def takes_transaction(self, self_name: str, epoch_number: int) -> bool:
        """E2 and F: may this replica vote YES on a transaction of ``epoch_number``?"""
        return accepts_transaction(self.current, self_name, epoch_number) and not self.fenced

    def grant(self, holder: str, epoch_number: int, now: float) -> bool:
        """Grant ``holder`` a read lease, if it is a member of this voter's
        current epoch (and asks for that epoch) and not left out of a later
        one this voter voted for."""
        if not accepts_transaction(self.current, holder, epoch_number):
            return False
        if self.fenced and holder not in (self.promised_members or ()):
            return False
        self.granted[holder] = now
        return True

    def vote(self, proposal: Epoch, now: float, *, complete: bool = True) -> "Vote | Refusal":
        """E1 and L2: vote for ``proposal``, answering with this voter's current
        epoch and whether its data is complete (for ``plan_epoch``), or say why
        not. The caller forces ``promised`` and ``promised_members`` before it answers."""
        if proposal.number <= max(self.promised, self.current.number):
            return Refusal(f"already voted for epoch {max(self.promised, self.current.number)}")
        waits = [self.owed_until(holder) for holder in self.granted if holder not in proposal.members]
        latest = max(waits, default=float("-inf"))
        if latest > now:
            return Refusal("a replica left out may still hold a read lease", retry_after=latest - now)
        self.promised, self.promised_members = proposal.number, proposal.members
        return Vote(self.current, complete)

    def install(self, epoch: Epoch) -> bool:
        """Take ``epoch`` as current (a majority voted for it); False for one
        not newer than the current one, or below the number this voter voted
        for: it will install that one or a later one (what the skipped epoch
        settled it would apply over what it may have applied since)."""
        if epoch.number <= self.current.number or epoch.number < self.promised:
            return False
        self.current = epoch
        self.promised, self.promised_members = epoch.number, None
        self.granted = {holder: at for holder, at in self.granted.items() if holder in epoch.members}
        return True


@dataclass(frozen=True)
class Plan:
    """The next epoch, and where its newcomers copy their data from."""

    epoch: Epoch
    #: a member of both epochs whose data is complete: it holds every write committed so far
    source: str
    #: members of the new epoch that empty their data and copy it from a complete member first
    newcomers: frozenset


def plan_epoch(proposal: Epoch, votes: Mapping[str, Vote], configured: Iterable[str]) -> Optional[Plan]:
    """E1 and E3: what installing ``proposal`` takes, given the ``votes`` it
    got (voter -> its yes), or None when it may not be installed: fewer than a
    majority of ``configured`` voted, its members are not a majority or did
    not all vote, its number is not above every one reported, or none of its
    members reports the highest epoch, belongs to it and holds complete data."""
    configured = set(configured)
    voters = set(votes) & configured
    members = set(proposal.members)
    if len(voters) < majority(configured) or len(members & configured) < majority(configured):
        return None
    if not members <= voters:
        return None
    latest = max(votes[voter].epoch.number for voter in voters)
    if proposal.number <= latest:
        return None
    current = {voter for voter in voters if votes[voter].epoch.number == latest
               and voter in votes[voter].epoch.members and votes[voter].complete}
    sources = sorted(current & members)
    if not sources:
        return None
    return Plan(proposal, sources[0], frozenset(members - current))
