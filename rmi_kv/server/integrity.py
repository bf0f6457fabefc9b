"""Keeping a replica's data sound: the start-up check, the background
verification pass, and the anti-entropy rounds (``rmi_kv.core.antientropy``).

- **At start**, before the replica serves, votes or reports a digest, its
  database is checked (``rmi_kv.storage.integrity.check_file``). Damage is
  logged in one line; the files are set aside (renamed, never deleted), what
  is still readable of the epoch state and the member list is kept, and the
  replica starts from an empty database, which catch-up fills from a member.
- **While it runs**, a pass recomputes the digest from the rows when the
  replica has been idle a moment (and every ``verify_every`` seconds; the
  ``verify`` command runs one at once). A difference is logged; the digest
  recomputed from the rows is kept, and reads are refused until the keys
  that differ are re-synced.
- **Anti-entropy**: every few seconds, when nothing is in flight, the
  members' digests are compared; a replica whose digest differs from a
  majority's re-syncs the keys that differ, comparing range digests with one
  of the majority, and says so in its log and status.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from rmi_kv.core import antientropy
from rmi_kv.core.antientropy import DIVERGED, IN_STEP, NO_MAJORITY, Verdict
from rmi_kv.core.coordinator import Coordinator
from rmi_kv.core.failover import MEMBER, Failover
from rmi_kv.core.participant import Participant
from rmi_kv.errors import RmiKvError
from rmi_kv.server.datadir import set_aside
from rmi_kv.storage import integrity
from rmi_kv.storage.integrity import Damage, RangeSummary, Verification
from rmi_kv.storage.sqlite import Storage
from rmi_kv.wire.peers import Membership, PeerCalls, PeerHandle

log = logging.getLogger(__name__)

#: the replica counts as idle once nothing changed here for this long
IDLE_AFTER = 1.0
#: while writes go on, a verification pass sleeps this many times as long as each slice of rows took
#: (a twentieth of a core)
BUSY_PAUSE_FACTOR = 19.0
#: entries one rangeEntries call carries at most
ENTRIES_PER_CALL = 1000
#: why reads are refused while the data differs from the majority's
RESYNC_REFUSAL = "its data differs from the other members': re-syncing the keys that differ"
#: why reads and transactions are refused once the database file itself is damaged
BROKEN_REFUSAL = "its database is damaged: restart it, and its start-up check sets the files aside and rebuilds them"
#: damage records kept in status
KEEP_RECORDS = 5


def open_checked(database: Path, *, durable: bool = True) -> Storage:
    """The storage of ``database``, checked first; a damaged one is set aside
    and replaced by an empty one, which keeps the record of the damage."""
    if not database.exists():
        return Storage(database, durable=durable)
    started = time.monotonic()
    damage, verification = integrity.check_file(str(database), workers=min(os.cpu_count() or 1, 4))
    if damage is None:
        storage = Storage(database, durable=durable)
        assert verification is not None
        log.info("start-up check: %d entries, digest %s… recomputed from the data and equal to the stored one "
                 "(%.2f s)", verification.rows, verification.computed[:16], time.monotonic() - started)
        return storage
    kept = integrity.salvage(str(database))
    target = set_aside(database, "damaged")
    log.error("data damaged: %s, found by the start-up check; the files are set aside as %s and the data is "
              "rebuilt from a member", damage.line(), target)
    storage = Storage(database, durable=durable)
    if kept.get("epoch_state") is not None:
        storage.save_epoch_state(kept["epoch_state"])
    if kept.get("members"):
        storage.save_members(kept["members"])
    record = {"damage": damage.as_dict(), "found_by": "start-up check", "found_at": time.time(),
              "set_aside": str(target), "repair": "rebuilt from a member by catch-up", "repaired_at": None}
    _remember(storage, record)
    return storage


def _remember(storage: Storage, record: dict) -> None:
    """Keep ``record`` as the latest damage (durably: status shows it after a restart)."""
    kept = storage.integrity_record()
    history = [record, *kept.get("damage", [])][:KEEP_RECORDS]
    storage.save_integrity_record({**kept, "damage": history})


class IntegrityKeeper:
    """The verification pass and the anti-entropy rounds of one replica (one thread)."""

    def __init__(self, name: str, storage: Storage, participant: Participant, coordinator: Coordinator,
                 membership: Membership, failover: Failover, peer_calls: PeerCalls, *,
                 verify_every: float, antientropy_every: float, refuse: Callable[[Optional[str], bool], None],
                 peer_for: Optional[Callable[[str], Any]] = None,
                 restart: Optional[Callable[[], None]] = None) -> None:
        """``refuse(reason, transactions_too)`` refuses clients (and with the
        flag, transactions too) for ``reason``; ``refuse(None, False)`` lifts it.
        ``peer_for(name)``: whom to re-sync from (default a ``PeerHandle``).
        ``restart()`` stops the replica and starts it again, so that its
        start-up check sets a damaged file aside (None: it waits for an operator)."""
        self.name = name
        self.storage = storage
        self.participant = participant
        self.coordinator = coordinator
        self.membership = membership
        self.failover = failover
        self.peer_calls = peer_calls
        self.verify_every = verify_every
        self.antientropy_every = antientropy_every
        self._refuse = refuse
        self._peer_for = peer_for or (lambda peer: PeerHandle(peer, membership))
        self._restart = restart
        self._refusing: Optional[str] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._verify_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"{name}-integrity", daemon=True)
        self._last_marker: tuple = ()
        self._changed_at = time.monotonic()
        self.last_verification: Optional[dict] = None
        self.verdict = Verdict(antientropy.UNKNOWN)
        self.compared_at: Optional[float] = None
        self.last_resync: Optional[dict] = None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.verify_every > 0 or self.antientropy_every > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def rebuilt(self, source: Optional[str]) -> None:
        """The catch-up after a start-up rebuild is done: record where the data
        came from (None: nowhere, every member was new and empty)."""
        kept = self.storage.integrity_record()
        history = kept.get("damage", [])
        if history and history[0].get("repaired_at") is None:
            history[0] = {**history[0], "repaired_at": time.time(),
                          "repaired_from": source or "nobody: every member was new and held nothing"}
            self.storage.save_integrity_record({**kept, "damage": history})
            log.info("data rebuilt from %s after the damage found by the %s", source, history[0].get("found_by"))

    # ---------------------------------------------------------------- views
    def quiet(self) -> bool:
        """Nothing in flight here (A1)."""
        return self.participant.quiet() and self.coordinator.quiet()

    def _marker(self) -> tuple:
        return (self.storage.committed_count, self.storage.aborted_count, self.storage.digest)

    def report(self) -> dict:
        """digestReport: what a peer's anti-entropy round compares."""
        return {"digest": self.storage.digest, "quiet": self.quiet() and not self.storage.catching_up,
                "epoch": self.failover.epoch.number if self.failover.enabled else None,
                "member": not self.failover.enabled or self.failover.role() == MEMBER}

    def describe(self) -> dict:
        """The ``integrity`` field of status."""
        kept = self.storage.integrity_record()
        return {"last_verification": self.last_verification, "damage": kept.get("damage", []),
                "antientropy": {"state": self.verdict.state, "majority_digest": self.verdict.digest,
                                "differing": list(self.verdict.differing), "compared_at": self.compared_at,
                                "last_resync": self.last_resync},
                "verify_every": self.verify_every, "antientropy_every": self.antientropy_every}

    # --------------------------------------------------------- verification
    def verify_now(self) -> dict:
        """The verify command: a full pass now (one at a time), its findings acted on."""
        with self._verify_lock:
            return self._verify("verify command", pace=lambda: None)

    def _verify(self, found_by: str, pace: Callable[[], None]) -> dict:
        started = time.monotonic()
        verification = self.storage.verify(pace)
        seconds = time.monotonic() - started
        result = {**Verification(verification.damage, verification.rows, verification.live, verification.computed,
                                 verification.stored, seconds).as_dict(), "at": time.time(), "found_by": found_by}
        self.last_verification = result
        if verification.damage is None:
            log.info("verified: %d entries, digest %s… recomputed from the data (%.2f s)", verification.rows,
                     verification.computed[:16], seconds)
        else:
            self._damaged(verification.damage, found_by)
        return result

    def _damaged(self, damage: Damage, found_by: str) -> None:
        adopted = None
        if damage.where != "database file":
            try:
                adopted = self.storage.adopt_data_digest()
            except Exception as error:  # the rows cannot even be read back: the file is what is damaged
                damage = Damage(f"{damage.what}; reading the rows again failed: {error}", "database file")
        if adopted is None:
            self._set_refusal(BROKEN_REFUSAL, transactions_too=True)
            if self._restart is not None:
                log.error("data damaged: %s, found by the %s; the replica restarts, and its start-up check sets "
                          "the files aside and rebuilds them from a member", damage.line(), found_by)
            else:
                log.error("data damaged: %s, found by the %s; %s", damage.line(), found_by, BROKEN_REFUSAL)
        else:
            before, after = adopted
            log.error("data damaged: %s, found by the %s; the digest is now the data's (%s…, was %s…), and the "
                      "keys that differ are re-synced from the other members", damage.line(), found_by,
                      after[:16], before[:16])
            self._set_refusal(RESYNC_REFUSAL)
            self._wake.set()
        record: dict[str, Any] = {"damage": damage.as_dict(), "found_by": found_by, "found_at": time.time(),
                                  "set_aside": None, "repaired_at": None,
                                  "repair": "restart the replica" if adopted is None
                                  else "anti-entropy: the keys that differ, from a majority"}
        try:
            _remember(self.storage, record)
        except Exception as error:  # the storage itself may be what is broken
            log.warning("could not record the damage: %s", error)
        if adopted is None and self._restart is not None:
            self._restart()

    def _set_refusal(self, reason: Optional[str], transactions_too: bool = False) -> None:
        if reason is None and self._refusing is None:
            return
        if reason is None and self._refusing == BROKEN_REFUSAL:
            return  # only a restart lifts it
        self._refusing = reason
        self._refuse(reason, transactions_too)

    def _pace(self) -> Callable[[], None]:
        """Between slices of a background pass: pause while the replica is busy."""
        state = {"marker": self._marker(), "at": time.monotonic()}

        def pace() -> None:
            now = time.monotonic()
            marker = self._marker()
            if marker != state["marker"] or not self.quiet():
                self._stop.wait((now - state["at"]) * BUSY_PAUSE_FACTOR)
            state["marker"], state["at"] = self._marker(), time.monotonic()

        return pace

    # ----------------------------------------------------------------- loop
    def _run(self) -> None:
        now = time.monotonic()
        next_verify = now + self.verify_every if self.verify_every > 0 else float("inf")
        next_round = now + self._jittered(self.antientropy_every) if self.antientropy_every > 0 else float("inf")
        while not self._stop.is_set():
            now = time.monotonic()
            self._wake.wait(max(0.05, min(next_verify, next_round, now + IDLE_AFTER) - now))
            woken = self._wake.is_set()
            self._wake.clear()
            if self._stop.is_set():
                return
            now = time.monotonic()
            marker = self._marker()
            if marker != self._last_marker:
                self._last_marker, self._changed_at = marker, now
            idle = now - self._changed_at >= IDLE_AFTER and self.quiet()
            try:
                if now >= next_verify and idle and not self.storage.catching_up:
                    next_verify = now + self.verify_every
                    with self._verify_lock:
                        self._verify("background pass", self._pace())
                if (woken or now >= next_round) and self.antientropy_every > 0:
                    next_round = now + self._jittered(self.antientropy_every)
                    self.compare_round()
            except Exception:  # keep going; the next round tries again
                log.exception("integrity round failed")

    @staticmethod
    def _jittered(period: float) -> float:
        return period * random.uniform(0.75, 1.25)

    # --------------------------------------------------------- anti-entropy
    def compare_round(self) -> Verdict:
        """A1: compare digests with the quiet members; re-sync when this one differs from a majority."""
        if self._refusing == BROKEN_REFUSAL or self.storage.catching_up or not self.quiet():
            return self.verdict
        if self.failover.enabled and self.failover.role() != MEMBER:
            return self.verdict
        before, own = self._marker(), self.storage.digest
        members = set(self.failover.members()) if self.failover.enabled else set(self.membership.names())
        answers = self.peer_calls(sorted(members - {self.name}), "digestReport", timeout=2.0)
        epoch = self.failover.epoch.number if self.failover.enabled else None
        reports = {peer: answer["digest"] for peer, (answer, error) in answers.items()
                   if error is None and isinstance(answer, dict) and answer.get("quiet") is True
                   and answer.get("member") is True and answer.get("epoch") == epoch
                   and isinstance(answer.get("digest"), str)}
        if self._marker() != before or not self.quiet():
            return self.verdict  # something happened meanwhile: the next round looks again
        verdict = antientropy.verdict(self.name, own, reports, self.membership.names())
        self.compared_at = time.time()
        if verdict.state != self.verdict.state or verdict.differing != self.verdict.differing:
            self._say(verdict)
        self.verdict = verdict
        if verdict.state == DIVERGED:
            self._set_refusal(RESYNC_REFUSAL)
            self._resync_from(verdict)
        elif verdict.state == IN_STEP and self._refusing == RESYNC_REFUSAL:
            self._set_refusal(None)
        return self.verdict

    def _say(self, verdict: Verdict) -> None:
        if verdict.state == DIVERGED:
            log.warning("anti-entropy: the digest here (%s…) differs from the one %s hold (%s…): re-syncing the keys "
                        "that differ", self.storage.digest[:16], ", ".join(verdict.holders), verdict.digest[:16])
        elif verdict.state == NO_MAJORITY:
            log.warning("anti-entropy: the members' digests differ and no majority shares one; nothing is repaired")
        elif verdict.state == IN_STEP and verdict.differing:
            log.warning("anti-entropy: %s differ%s from the majority's digest; %s re-sync%s", ", ".join(
                verdict.differing), "s" if len(verdict.differing) == 1 else "",
                "it will" if len(verdict.differing) == 1 else "they will", "" if len(verdict.differing) == 1 else "")
        elif verdict.state == IN_STEP:
            log.info("anti-entropy: every member that answered holds the same data")

    def _resync_from(self, verdict: Verdict) -> None:
        for peer in random.sample(verdict.holders, len(verdict.holders)):
            started = time.monotonic()
            try:
                compared, repaired = self.resync(self._peer_for(peer))
            except (RmiKvError, ValueError, TypeError, KeyError) as error:
                log.info("anti-entropy: re-sync from %s failed: %s", peer, error)
                continue
            seconds = time.monotonic() - started
            in_step = self.storage.digest == verdict.digest
            self.last_resync = {"source": peer, "at": time.time(), "ranges_compared": compared,
                                "keys_repaired": repaired, "seconds": round(seconds, 3), "in_step": in_step}
            log.warning("anti-entropy: re-synced %d key%s from %s (%d ranges compared, %.2f s); the digest %s",
                        repaired, "" if repaired == 1 else "s", peer, compared, seconds,
                        "now equals the majority's" if in_step else "still differs: the next round looks again")
            self._repaired(peer, repaired)
            if in_step:
                self.verdict = Verdict(IN_STEP, verdict.digest, verdict.holders, ())
                self._set_refusal(None)
            return

    def _repaired(self, source: str, keys: int) -> None:
        kept = self.storage.integrity_record()
        history = kept.get("damage", [])
        if history and history[0].get("repaired_at") is None and history[0].get("set_aside") is None:
            history[0] = {**history[0], "repaired_at": time.time(), "repaired_from": source, "keys_repaired": keys}
        else:
            history = [{"damage": {"what": "the data differed from the majority's", "where": "table kv"},
                        "found_by": "anti-entropy round", "found_at": time.time(), "set_aside": None,
                        "repair": "anti-entropy", "repaired_at": time.time(), "repaired_from": source,
                        "keys_repaired": keys}, *history][:KEEP_RECORDS]
        self.storage.save_integrity_record({**kept, "damage": history})

    def resync(self, peer: Any) -> tuple[int, int]:
        """A2: compare range digests with ``peer`` and repair the keys that
        differ; returns (ranges compared, keys repaired)."""
        compared = repaired = 0
        pending: list[tuple[Optional[str], Optional[str]]] = [(None, None)]
        while pending and not self._stop.is_set():
            after, upto = pending.pop(0)
            answer = peer.call("rangeDigests", after, upto, antientropy.PARTS, timeout=30.0)
            remote = [RangeSummary(*_summary_fields(item)) for item in answer]
            if not integrity.consecutive((r.after, r.upto) for r in remote) or not remote \
                    or remote[0].after != after or remote[-1].upto != upto:
                raise ValueError(f"{peer.name} answered ranges that do not cover the one asked")
            local = self.storage.summarize([(r.after, r.upto) for r in remote])
            compared += len(remote)
            for summary in antientropy.differing_ranges(local, remote):
                if antientropy.is_leaf(summary) or len(remote) == 1:
                    repaired += self._repair_range(peer, summary.after, summary.upto)
                else:
                    pending.append((summary.after, summary.upto))
        return compared, repaired

    def _repair_range(self, peer: Any, after: Optional[str], upto: Optional[str]) -> int:
        theirs: list[tuple] = []
        cursor = after
        while True:
            answer = peer.call("rangeEntries", cursor, upto, ENTRIES_PER_CALL, timeout=30.0)
            entries = [_entry_fields(item) for item in answer["entries"]]
            theirs.extend(entries)
            if not answer.get("more") or not entries:
                break
            cursor = entries[-1][0]
        ours = self.storage.range_entries(after, upto, 1 << 62)
        repairs = antientropy.repairs(ours, theirs)
        if not repairs:
            return 0
        done = self.participant.repair(repairs)
        for key, expected, replacement in repairs:
            log.debug("anti-entropy: %r: %s here, %s at %s", key, _shown(expected), _shown(replacement), peer.name)
        shown = ", ".join(f"{key!r} ({_shown(expected)} here, {_shown(replacement)} at {peer.name})"
                          for key, expected, replacement in repairs[:3])
        log.info("anti-entropy: %d of %d differing keys replaced: %s%s", done, len(repairs), shown,
                 ", ..." if len(repairs) > 3 else "")
        return done


def _shown(entry: Optional[tuple]) -> str:
    if entry is None or entry[0] is None:
        return "absent"
    return f"version {entry[1]}"


def _summary_fields(item: Any) -> tuple:
    after, upto, live, digest = item
    for bound in (after, upto):
        if bound is not None and not isinstance(bound, str):
            raise ValueError("a range bound is not a key")
    if not isinstance(live, int) or not isinstance(digest, str):
        raise ValueError("a range summary is not (after, upto, live, digest)")
    return after, upto, live, digest


def _entry_fields(item: Any) -> tuple:
    key, value, version, txid = item
    if not isinstance(key, str) or not (value is None or isinstance(value, str)) or not isinstance(version, int) \
            or not (txid is None or isinstance(txid, str)):
        raise ValueError("an entry is not (key, value, version, txid)")
    return key, value, version, txid
