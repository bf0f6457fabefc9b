"""Anti-entropy: a replica whose data differs from the others' finds the keys
that differ and takes the majority's entries for them.

Pure rules, tested with plain values (``tests/core/test_antientropy.py``);
``rmi_kv.server.integrity`` runs the rounds over the network.

Invariants:

- **A1, never from a minority.** A replica re-syncs only when members that
  are a majority of the configured replicas report one digest that is not
  its own (``verdict``), every one of them and itself with nothing in flight
  (no PREPARED record, no transaction being coordinated or voted on, no copy
  under way) and its own data unchanged from before the reports were asked
  to after. Every write reaches every member of the epoch, so quiet members
  that differ hold different data for the same transactions: one side was
  damaged. A replica alone, or on the smaller side, never overwrites anyone;
  without a majority nothing is repaired and the disagreement is reported.
- **A2, only what differs.** Two replicas compare the digests of key ranges
  (the peer cuts them, of about as many live entries each); only ranges whose
  digests differ are cut again, and at a few hundred entries their entries
  are compared one by one (``repairs``). Equal entries are never touched.
- **A3, never over a newer write.** A key is replaced only while it still
  holds the entry that was compared, under its lock (``Participant.repair``,
  ``ReplicaStorage.repair``): a write that committed meanwhile wins, and
  the next round looks again.
- **A4, the digest is the data's.** A check that finds the rows differ from
  the digest kept by difference (``verify``) keeps the digest recomputed
  from the rows, so the comparison of A1 sees the damage.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

from rmi_kv.core.epochs import majority
from rmi_kv.storage.integrity import RangeSummary
from rmi_kv.storage.interfaces import Repair, SnapshotEntry

#: ranges a peer cuts a differing range into
PARTS = 16
#: a differing range with at most this many live entries (at the peer) is compared entry by entry
LEAF_ENTRIES = 256

IN_STEP = "in step"
DIVERGED = "diverged"
NO_MAJORITY = "no majority"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """How this replica's digest stands against the others'."""

    state: str
    #: the digest a majority holds (None: none does)
    digest: Optional[str] = None
    #: the members that hold it (whom to re-sync from), sorted
    holders: tuple = ()
    #: the members whose digest differs from the majority's, sorted
    differing: tuple = ()


def verdict(self_name: str, own: str, reports: Mapping[str, str], configured: Iterable[str]) -> Verdict:
    """A1: compare ``own`` digest with the quiet members' ``reports`` (name ->
    digest); a majority of ``configured`` must share a digest for any verdict."""
    digests = {**{name: digest for name, digest in reports.items() if name != self_name}, self_name: own}
    needed = majority(configured)
    counts: dict[str, list[str]] = {}
    for name, digest in digests.items():
        counts.setdefault(digest, []).append(name)
    winner = next((digest for digest, names in counts.items() if len(names) >= needed), None)
    if winner is None:
        return Verdict(NO_MAJORITY if len(digests) >= needed else UNKNOWN)
    differing = tuple(sorted(name for name, digest in digests.items() if digest != winner))
    holders = tuple(sorted(name for name in counts[winner] if name != self_name))
    return Verdict(IN_STEP if own == winner else DIVERGED, winner, holders, differing)


def differing_ranges(local: Sequence[RangeSummary], remote: Sequence[RangeSummary]) -> list[RangeSummary]:
    """A2: the peer's ranges (``remote``) whose digest or count differs from
    this replica's over the same bounds (``local``, in the same order)."""
    if [(r.after, r.upto) for r in local] != [(r.after, r.upto) for r in remote]:
        raise ValueError("the summaries cover different ranges")
    return [theirs for ours, theirs in zip(local, remote) if (ours.digest, ours.live) != (theirs.digest, theirs.live)]


def is_leaf(summary: RangeSummary) -> bool:
    """Small enough to compare entry by entry."""
    return summary.live <= LEAF_ENTRIES


def _live(entry: Optional[SnapshotEntry]) -> Optional[tuple]:
    """(value, version) of a live entry; None for a tombstone or no row (the digest does not tell them apart)."""
    if entry is None or entry[1] is None:
        return None
    return entry[1], entry[2]


def repairs(local: Iterable[SnapshotEntry], remote: Iterable[SnapshotEntry]) -> list[Repair]:
    """A2 and A3: for the keys of one range whose live entries differ, the
    repair that puts the peer's entry (or its absence) in place of this
    replica's, expecting this replica's entry to be as it was read."""
    ours = {entry[0]: entry for entry in local}
    theirs = {entry[0]: entry for entry in remote}
    found: list[Repair] = []
    for key in sorted(set(ours) | set(theirs)):
        mine, peer = ours.get(key), theirs.get(key)
        if _live(mine) == _live(peer):
            continue
        expected = None if mine is None else (mine[1], mine[2], mine[3])
        replacement = None if peer is None else (peer[1], peer[2], peer[3])
        found.append((key, expected, replacement))
    return found
