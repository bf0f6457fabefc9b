"""Settling a lost coordinator's transactions at an epoch change, so no
transaction waits for a dead coordinator (epoch termination).

A new epoch that leaves coordinator C out finishes C's transactions as its
first duty: the proposer gathers, from every voter, the transactions it holds
PREPARED whose coordinator the new epoch leaves out; asks every member of
the new epoch what it holds of each (``settle_state``: commit, abort,
prepared, or nothing); decides each one (``settle``) and carries the
outcomes in the plan, which every member applies before it installs the
epoch. Pure rules, tested with plain values (``tests/core/test_settle.py``).

Invariants:

- **S1, acknowledged means a majority holds COMMIT.** With failover on, a
  coordinator answers a write as committed only once its COMMIT is forced at
  a majority of the configured replicas, itself included (its decision, the
  participants' applies): with the default reply and with early reply.
- **S2, frozen reports.** A replica that voted for an epoch leaving C out
  applies no COMMIT of C's from then on, from C or learned from anyone, but
  the one the epoch change settles (``commit_refusal`` in ``core.failover``);
  aborts it still takes (C never sends both). So what the voters report
  cannot change under the settling.
- **S3, one outcome.** A transaction is settled COMMIT when any replica asked
  holds its COMMIT (then C decided COMMIT: the truth), ABORT otherwise. Every
  member of the new epoch is asked, and they are a majority: by S1 an
  acknowledged write has its COMMIT at one of them, so it is never settled
  ABORT. Two proposers settling at once both ask every member of their epoch
  and meet S2's frozen answers; only one epoch of a number is installed
  (E1), and a later proposal sees the earlier outcomes as commit or abort.
- **S4, the coordinator defers.** A coordinator that was left out of an epoch
  (it learns so when it rejoins as a newcomer, or at its start) does not
  answer getDecision from its own log, nor re-send doCommit, until a
  participant of the transaction told it the outcome (``Coordinator.unconfirmed``).
- **S5, outside the epoch.** A replica that is not a member may hold a COMMIT
  the epoch settled ABORT (it applied C's doCommit, then was cut off). It
  serves no read (no lease), and when it rejoins it replaces its data with a
  member's.
"""
from __future__ import annotations

from typing import Iterable, Mapping

from rmi_kv.core.messages import ABORT, COMMIT

#: what a replica holds of a transaction, as ``settle_state`` reports it
PREPARED, NOTHING = "prepared", "nothing"
STATES = (COMMIT, ABORT, PREPARED, NOTHING)


def settle(reports: Mapping[str, Mapping[str, str]], txids: Iterable[str]) -> dict[str, str]:
    """S3: the outcome of each of ``txids``, from ``reports`` (replica ->
    txid -> its state): COMMIT where any replica holds COMMIT, ABORT elsewhere."""
    outcomes = {}
    for txid in txids:
        held = {report.get(txid, NOTHING) for report in reports.values()}
        outcomes[txid] = COMMIT if COMMIT in held else ABORT
    return outcomes


def conflicting(reports: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Transactions some replica holds as COMMIT and another as ABORT (a bug
    elsewhere: reported in the log, settled COMMIT)."""
    seen: dict[str, set] = {}
    for report in reports.values():
        for txid, state in report.items():
            seen.setdefault(txid, set()).add(state)
    return sorted(txid for txid, states in seen.items() if {COMMIT, ABORT} <= states)
