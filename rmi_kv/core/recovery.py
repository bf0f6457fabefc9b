"""Recovery: finishing what a crash left undone.

- An in-doubt participant (PREPARED, no outcome) asks the coordinator for
  the decision and, unless it answers COMMIT, the other participants too
  (cooperative termination, and a check of a presumed ABORT). It never
  decides alone.
- A coordinator re-sends doCommit for every COMMIT record that some
  participant has not acknowledged.
- With failover on, a coordinator that may have been left out of an epoch
  first asks the participants still waiting how each such transaction ended
  (an epoch change may have settled it ABORT: ``core.settle`` S4).

The functions take plain objects, so unit tests drive them without a network.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from rmi_kv.core.coordinator import Coordinator
from rmi_kv.core.failpoints import NO_FAILPOINTS, Failpoints
from rmi_kv.core.handles import DecisionSource
from rmi_kv.core.messages import ABORT, COMMIT, UNKNOWN
from rmi_kv.core.participant import Participant
from rmi_kv.errors import RmiKvError
from rmi_kv.storage.interfaces import PreparedRecord

log = logging.getLogger(__name__)

#: name -> whom to ask about a transaction (None when not a member now)
HandleFor = Callable[[str], Optional[DecisionSource]]


def ask_for_decision(record: PreparedRecord, self_name: str, coordinator: Coordinator,
                     handle_for: HandleFor) -> str:
    """The outcome of ``record``'s transaction as the cluster knows it, or "unknown".

    The coordinator is asked first. Its ABORT may be presumed (it keeps no
    record of a transaction every participant acknowledged), which is only
    true while no participant lost a forced write; and it may not know at all
    (its data was rebuilt). So unless it answers COMMIT, the other
    participants are asked too: any COMMIT among them wins (the transaction
    committed), then any ABORT.
    """
    txid = record.txid
    answer = UNKNOWN
    if record.coordinator == self_name:
        answer = coordinator.decision(txid)
    else:
        handle = handle_for(record.coordinator)
        if handle is not None:
            try:
                answer = handle.getDecision(txid)
                log.debug("getDecision %s from coordinator %s: %s", txid, record.coordinator, answer)
            except (RmiKvError, OSError) as error:
                log.debug("getDecision %s: coordinator %s unreachable: %s", txid, record.coordinator, error)
    if answer == COMMIT:
        return COMMIT
    # cooperative termination, and a check of a presumed ABORT
    peers = _peer_answers(record, self_name, handle_for)
    if COMMIT in peers:
        if answer == ABORT:
            log.warning("%s: its coordinator %s answers abort, but a participant holds it committed: committing "
                        "(a forced write was lost somewhere)", txid, record.coordinator)
        return COMMIT
    if answer == ABORT or ABORT in peers:
        return ABORT
    return UNKNOWN


def _peer_answers(record: PreparedRecord, self_name: str, handle_for: HandleFor) -> list[str]:
    """What the other participants answer to getDecision (the ones that answer)."""
    answers = []
    for peer in record.participants:
        if peer in (self_name, record.coordinator):
            continue
        handle = handle_for(peer)
        if handle is None:
            continue
        try:
            answer = handle.getDecision(record.txid)
        except (RmiKvError, OSError) as error:
            log.debug("getDecision %s from peer %s failed: %s", record.txid, peer, error)
            continue
        log.debug("getDecision %s from peer %s: %s", record.txid, peer, answer)
        if answer in (COMMIT, ABORT):
            answers.append(answer)
            if answer == COMMIT:
                break
    return answers


def resolve_in_doubt(participant: Participant, coordinator: Coordinator, handle_for: HandleFor,
                     txids: Iterable[str], failpoints: Failpoints = NO_FAILPOINTS) -> list[str]:
    """Try to decide each in-doubt txid; returns the ones still in doubt."""
    still_in_doubt = []
    for txid in txids:
        record = participant.prepared().get(txid)
        if record is None:
            continue  # decided meanwhile by a doCommit/doAbort
        decision = ask_for_decision(record, participant.name, coordinator, handle_for)
        if decision == COMMIT:
            participant.do_commit(txid)
            _acknowledge(record, participant.name, coordinator, handle_for)
            log.info("recovered %s: committed", txid)
        elif decision == ABORT:
            participant.do_abort(txid)
            log.info("recovered %s: aborted", txid)
        else:
            still_in_doubt.append(txid)
            continue
        failpoints.hit("recovery.mid_recovery")
    return still_in_doubt


def confirm_decisions(coordinator: Coordinator, handle_for: HandleFor, *, in_epoch: bool) -> list[str]:
    """S4: confirm or drop each COMMIT record held back; returns the ones still held.

    A waiting participant's COMMIT or ABORT is final. When every waiting
    participant that answers still holds the transaction PREPARED, no epoch
    settled it, and ``in_epoch`` (this coordinator is a member of the
    current epoch, with a valid lease: no epoch without it can be installed
    meanwhile) makes its own COMMIT record the answer again.
    """
    still = []
    for txid, waiting in coordinator.unconfirmed().items():
        answers = []
        for peer in sorted(waiting - {coordinator.name}):
            handle = handle_for(peer)
            if handle is None:
                continue
            try:
                answers.append(handle.getDecision(txid))
            except (RmiKvError, OSError) as error:
                log.debug("confirming %s: %s did not answer: %s", txid, peer, error)
        final = next((answer for answer in answers if answer in (COMMIT, ABORT)), None)
        if final is None and answers and in_epoch:
            final = COMMIT
        if final is None:
            still.append(txid)
            continue
        coordinator.confirm(txid, final)
        log.info("COMMIT record of %s %s by its participants", txid, "confirmed" if final == COMMIT else "overruled")
    return still


def _acknowledge(record: PreparedRecord, self_name: str, coordinator: Coordinator, handle_for: HandleFor) -> None:
    """haveCommitted to the coordinator, so it can forget the transaction."""
    if record.coordinator == self_name:
        coordinator.acknowledge(record.txid, self_name)
        return
    handle = handle_for(record.coordinator)
    if handle is None:
        return
    try:
        handle.haveCommitted(record.txid, self_name)
        log.debug("haveCommitted %s sent to %s", record.txid, record.coordinator)
    except (RmiKvError, OSError) as error:  # it will re-send doCommit, and we answer that
        log.debug("haveCommitted %s to %s failed: %s", record.txid, record.coordinator, error)
